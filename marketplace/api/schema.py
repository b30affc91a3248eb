"""OpenAPI: one `Error` shape for every error response, with every stable `code` the API returns.

The codes come from the registries (`marketplace.errors.ErrorCode`, `FrameworkErrorCode` and each
app's `errors.py`), so the schema lists exactly what the code can raise.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from accounts.errors import AccountErrorCode
from billing.errors import BillingErrorCode
from marketplace.errors import ErrorCode, FrameworkErrorCode
from orders.errors import OrderErrorCode
from suppliers.errors import SupplierErrorCode

ERROR_CODE_REGISTRIES: tuple[type[StrEnum], ...] = (
    ErrorCode,
    FrameworkErrorCode,
    AccountErrorCode,
    SupplierErrorCode,
    BillingErrorCode,
    OrderErrorCode,
)

ERROR_RESPONSES = {
    "400": "The request is not valid (`invalid`, `unknown_field`, ...); `fields` names each bad field.",
    "401": "Not authenticated, or the key or credential is unknown or revoked.",
    "403": "Authenticated but not allowed (`permission_denied`, `account_suspended`, ...).",
    "404": "No such object for you: others' objects do not exist for the caller.",
    "409": "A business rule refused it now (`insufficient_capacity`, `invalid_transition`, ...).",
    "429": "Too many requests (`throttled`); retry after the `Retry-After` header.",
}
# Operations with error statuses of their own.
OPERATION_ERROR_RESPONSES = {
    "v1_orders_create": {"402": "The wallet does not cover the order (`insufficient_funds`): top up first."},
    "v1_billing_top_ups_create": {"502": "The payment provider is unavailable (`payment_provider_error`)."},
}


def error_codes() -> list[str]:
    """Every registered code, once, sorted."""
    return sorted({code.value for registry in ERROR_CODE_REGISTRIES for code in registry})


def _error_component() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Every error response: a stable `code`, a human `detail`, and field errors.",
        "properties": {
            "code": {"type": "string", "enum": error_codes()},
            "detail": {"type": "string"},
            "fields": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        },
        "required": ["code", "detail", "fields"],
    }


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the `Error` component, and the error responses on every
    operation that does not describe its own."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = _error_component()
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            own = OPERATION_ERROR_RESPONSES.get(operation.get("operationId", ""), {})
            for status_code, description in {**ERROR_RESPONSES, **own}.items():
                operation["responses"].setdefault(status_code, {"description": description, "content": reference})
    return result
