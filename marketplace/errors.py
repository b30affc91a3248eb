"""One error shape for the whole API: {"code": ..., "detail": ..., "fields": {...}}.

Services raise `ApplicationError` subclasses with stable codes; the exception handler turns those
and every DRF/Django error into the shared shape.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, cast

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.response import Response


class ErrorCode(StrEnum):
    """Codes any part of the platform returns. Each app lists its own in `<app>/errors.py`; the
    OpenAPI schema lists them all (`marketplace/api/schema.py`)."""

    ERROR = "error"
    INVALID = "invalid"
    INVALID_FILTER = "invalid_filter"
    UNKNOWN_PARAMETER = "unknown_parameter"
    CONFLICT = "conflict"
    NOT_FOUND = "not_found"
    PERMISSION_DENIED = "permission_denied"
    SERVER_ERROR = "server_error"
    UNKNOWN_FIELD = "unknown_field"
    INVALID_TRANSITION = "invalid_transition"
    NOT_PRINTABLE = "not_printable"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    ALERT_LIMIT = "alert_limit"
    ALERT_EXISTS = "alert_exists"


class FrameworkErrorCode(StrEnum):
    """Codes Django REST framework returns before our code runs (authentication, throttling, parsing)."""

    NOT_AUTHENTICATED = "not_authenticated"
    AUTHENTICATION_FAILED = "authentication_failed"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    PARSE_ERROR = "parse_error"
    THROTTLED = "throttled"


class ApplicationError(Exception):
    """A business rule refused the operation. `code` is stable; `detail` is for people."""

    code: str = ErrorCode.ERROR
    status_code: int = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: str, *, code: str | None = None, fields: dict | None = None, extra: dict | None = None):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.fields = fields or {}
        self.extra = extra or {}


class InvalidInput(ApplicationError):
    code: str = ErrorCode.INVALID
    status_code = status.HTTP_400_BAD_REQUEST


class Conflict(ApplicationError):
    code: str = ErrorCode.CONFLICT
    status_code = status.HTTP_409_CONFLICT


class NotFound(ApplicationError):
    code: str = ErrorCode.NOT_FOUND
    status_code = status.HTTP_404_NOT_FOUND


class Forbidden(ApplicationError):
    code: str = ErrorCode.PERMISSION_DENIED
    status_code = status.HTTP_403_FORBIDDEN


def _flatten(value: Any) -> Any:
    """DRF error details as plain strings/lists/dicts."""
    if isinstance(value, dict):
        return {str(k): _flatten(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_flatten(v) for v in value]
    return str(value)


def _first_code(detail: Any) -> str | None:
    if isinstance(detail, dict):
        for v in detail.values():
            code = _first_code(v)
            if code:
                return code
    elif isinstance(detail, list):
        for v in detail:
            code = _first_code(v)
            if code:
                return code
    elif isinstance(detail, exceptions.ErrorDetail):
        return detail.code
    return None


def validation_fields(error: DjangoValidationError) -> dict[str, list[str]]:
    """Django ValidationError as {field: [messages]}; non-field errors under "non_field_errors"."""
    if hasattr(error, "error_dict"):
        return {
            ("non_field_errors" if k == "__all__" else k): [str(m) for e in v for m in e.messages]
            for k, v in error.error_dict.items()
        }
    return {"non_field_errors": [str(m) for m in error.messages]}


def error_body(code: str, detail: str, fields: dict | None = None, **extra: Any) -> dict:
    return {"code": code, "detail": detail, "fields": fields or {}, **extra}


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    # Imported here: rest_framework.views loads the authentication classes, which import this module.
    from rest_framework.views import exception_handler  # noqa: PLC0415

    if isinstance(exc, ApplicationError):
        return Response(error_body(exc.code, exc.detail, exc.fields, **exc.extra), status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        fields = validation_fields(exc)
        return Response(
            error_body(ErrorCode.INVALID, _("The request is not valid."), fields), status=status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: let it surface as a 500 and be fixed

    if isinstance(exc, exceptions.ValidationError):
        detail: object = exc.detail
        if isinstance(detail, dict):
            fields = _flatten(detail)
            non_field = fields.get("non_field_errors")
            prefix = getattr(exc, "detail_prefix", None) or _("Invalid value for")
            message = (
                non_field[0]
                if non_field
                else _("%(prefix)s: %(fields)s.") % {"prefix": prefix, "fields": ", ".join(sorted(fields))}
            )
        else:
            fields = {"non_field_errors": _flatten(detail if isinstance(detail, list) else [detail])}
            message = fields["non_field_errors"][0]
        code: str = getattr(exc, "error_code", None) or ErrorCode.INVALID
        response.data = error_body(code, message, fields)
        return response

    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    code = _first_code(detail) or cast(str, getattr(exc, "default_code", ErrorCode.ERROR))
    response.data = error_body(code, str(detail))
    return response
