from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError

from .errors import ApplicationError, ErrorCode
from .models import InstanceType, Region
from .money import PRICE_PLACES, parse_money


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


class RegionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Region) -> str:
        return f"{obj.code} — {obj.name}"


class AvailabilityAlertForm(forms.Form):
    """Subscribe to an instance type's supply (`marketplace.alerts.availability_alert_create`)."""

    instance_type = forms.ModelChoiceField(
        queryset=InstanceType.objects.active().order_by("name"), to_field_name="name", empty_label="Choose a type"
    )
    region = RegionChoiceField(
        queryset=Region.objects.order_by("code"), to_field_name="code", required=False, empty_label="Any region"
    )
    max_price_per_hour = forms.CharField(
        required=False,
        label="Max. $ per hour",
        widget=forms.TextInput(attrs={"inputmode": "decimal", "autocomplete": "off", "placeholder": "any"}),
        help_text="Per instance. Empty: any price.",
    )
    standing = forms.BooleanField(
        required=False,
        label="Standing alert",
        help_text="Tell me each time such supply returns after selling out (else: once, then the alert turns off).",
    )

    def clean_max_price_per_hour(self) -> Decimal | None:
        text = self.cleaned_data["max_price_per_hour"].strip()
        if not text:
            return None
        price = parse_money(text, places=PRICE_PLACES)
        if price is None or price <= 0:
            raise ValidationError(
                f"A price above 0 in dollars, with at most {PRICE_PLACES} decimals (e.g. 2.50).",
                code=ErrorCode.INVALID,
            )
        return price


class WebhookEndpointForm(forms.Form):
    url = forms.CharField(
        label="URL", max_length=2000, help_text="An https:// address that answers 2xx; it receives signed JSON."
    )
    events = forms.MultipleChoiceField(
        widget=forms.CheckboxSelectMultiple,
        help_text="What it receives. “All events” includes event types added later.",
    )
    description = forms.CharField(max_length=200, required=False)

    def __init__(self, *args, event_types: tuple[str, ...], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["events"].choices = [("*", "All events"), *((event, event) for event in event_types)]
        self.fields["events"].initial = ["*"]
