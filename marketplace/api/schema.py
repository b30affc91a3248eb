"""OpenAPI: one `Error` shape for every error response, with every stable `code` the API returns.

The codes come from the registries (`marketplace.errors.ErrorCode`, `FrameworkErrorCode` and each
app's `errors.py`), so the schema lists exactly what the code can raise.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

from accounts.errors import AccountErrorCode
from billing.errors import BillingErrorCode
from marketplace.api.pagination import MAX_PAGE_NUMBER, MAX_PAGE_SIZE
from marketplace.errors import ErrorCode, FrameworkErrorCode
from marketplace.models import UNCLEAN_TEXT_CLASS
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
# Example requests and responses of every operation, recorded from real calls by
# tests/test_api_examples.py (RECORD_API_EXAMPLES=1 writes it again).
EXAMPLES_FILE = Path(__file__).resolve().parent / "examples.json"
# Operations with error statuses of their own.
OPERATION_ERROR_RESPONSES = {
    "v1_orders_create": {"402": "The wallet does not cover the order (`insufficient_funds`): top up first."},
    "v1_billing_top_ups_create": {
        "502": "The payment provider is unavailable (`payment_provider_error`) or not configured on this "
        "platform (`payments_not_configured`); nothing was charged."
    },
}


# Bounds of the paging query parameters, as `marketplace.api.pagination` enforces them (a 400 outside).
PAGING_PARAMETER_BOUNDS = {
    "page": {"minimum": 1, "maximum": MAX_PAGE_NUMBER},
    "page_size": {"minimum": 1, "maximum": MAX_PAGE_SIZE},
}
# The API's contract is JSON. The form parsers stay installed for the browsable API, but form
# encodings cannot carry the nested objects, lists and nulls the request bodies use.
REQUEST_CONTENT_TYPE = "application/json"
# Text the API refuses in any request string (`marketplace.api.inputs.CONTROL_CHARACTERS`), as a
# JSON Schema pattern for strings that have no pattern of their own.
NO_CONTROL_CHARACTERS = f"^[^{UNCLEAN_TEXT_CLASS}]*$"
# drf-spectacular's pattern for a DecimalField, `^-?\d{0,N}(?:\.\d{0,M})?$`, also matches "", "-"
# and "."; DRF refuses those. The same bounds, with at least one digit.
SPECTACULAR_DECIMAL_PATTERN = re.compile(r"^\^-\?\\d\{0,(\d+)\}\(\?:\\\.\\d\{0,(\d+)\}\)\?\$$")


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
            "fields": {"$ref": "#/components/schemas/ErrorFields"},
        },
        "required": ["code", "detail", "fields"],
    }


def _error_fields_component() -> dict[str, Any]:
    """{field: [messages]}; a nested object's or list's field errors nest the same way
    (`{"near": {"lat": [...]}}`, `{"checks": {"0": {"ok": [...]}}}`)."""
    nested = {"$ref": "#/components/schemas/ErrorFields"}
    return {
        "type": "object",
        "description": "Messages by field; errors of a nested object or list item nest by field name or index.",
        "additionalProperties": {
            "anyOf": [{"type": "array", "items": {"anyOf": [{"type": "string"}, nested]}}, nested],
        },
    }


def _describe_strings(schema: Any) -> None:
    """Every string of a request schema as the API accepts it: no control characters, and a
    decimal with at least one digit."""
    if isinstance(schema, list):
        for item in schema:
            _describe_strings(item)
        return
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "string" and "enum" not in schema:
        decimal = SPECTACULAR_DECIMAL_PATTERN.match(schema.get("pattern", ""))
        if decimal:
            digits, places = decimal.groups()
            schema["pattern"] = f"^-?(?:\\d{{1,{digits}}}(?:\\.\\d{{0,{places}}})?|\\.\\d{{1,{places}}})$"
        elif "pattern" not in schema and "format" not in schema:
            schema["pattern"] = NO_CONTROL_CHARACTERS
    for key, value in schema.items():
        if key in {"properties", "items", "additionalProperties", "allOf", "anyOf", "oneOf"}:
            _describe_strings(list(value.values()) if key == "properties" else value)


def _describe_request(operation: dict[str, Any]) -> None:
    """Request bodies in JSON only; paging parameters with their bounds."""
    content = operation.get("requestBody", {}).get("content", {})
    if REQUEST_CONTENT_TYPE in content:
        for media_type in list(content):
            if media_type != REQUEST_CONTENT_TYPE:
                del content[media_type]
    for media in content.values():
        _describe_strings(media.get("schema"))
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        # A choice filter over a boolean column (`?verified=all|true|false`) takes strings.
        if schema.get("enum") and all(isinstance(value, str) for value in schema["enum"]):
            schema["type"] = "string"
        bounds = PAGING_PARAMETER_BOUNDS.get(parameter.get("name", "")) if parameter.get("in") == "query" else None
        if bounds and parameter.get("schema", {}).get("type") == "integer":
            parameter["schema"].update(bounds)


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the `Error` component, and the error responses on every
    operation that does not describe its own; request bodies and paging parameters as the API
    accepts them."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["Error"] = _error_component()
    components["ErrorFields"] = _error_fields_component()
    for name, component in components.items():
        if name.endswith("Request"):  # COMPONENT_SPLIT_REQUEST: the request side of a serializer
            _describe_strings(component)
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            _describe_request(operation)
            own = OPERATION_ERROR_RESPONSES.get(operation.get("operationId", ""), {})
            for status_code, description in {**ERROR_RESPONSES, **own}.items():
                operation["responses"].setdefault(status_code, {"description": description, "content": reference})
    return result


def add_examples(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: each operation's recorded example request and response."""
    if not EXAMPLES_FILE.exists():
        return result
    examples = json.loads(EXAMPLES_FILE.read_text())
    for item in result.get("paths", {}).values():
        for operation in item.values():
            example = examples.get(operation.get("operationId")) if isinstance(operation, dict) else None
            if not example:
                continue
            body = operation.get("requestBody", {}).get("content", {}).get(REQUEST_CONTENT_TYPE)
            if body is not None and example["request"] is not None:
                body["examples"] = {"recorded": {"summary": "A recorded request", "value": example["request"]}}
            answer = operation.get("responses", {}).get(str(example["status"]), {}).get("content", {})
            if REQUEST_CONTENT_TYPE in answer and example["response"] is not None:
                answer[REQUEST_CONTENT_TYPE]["examples"] = {
                    "recorded": {"summary": "A recorded response", "value": example["response"]}
                }
    return result
