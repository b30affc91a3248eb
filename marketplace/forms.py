from django import forms

from .errors import ApplicationError


def add_service_errors(form: forms.Form, error: ApplicationError) -> None:
    """Show a service's refusal on the form: field errors on their fields, the rest on top."""
    placed = False
    for field, messages in (error.fields or {}).items():
        target = field if field in form.fields else None
        for message in messages:
            form.add_error(target, message)
            placed = True
    if not placed:
        form.add_error(None, error.detail)
