"""Error codes of supplier operations (the API returns them as `code`)."""

from __future__ import annotations

from enum import StrEnum

from rest_framework import status

from marketplace.errors import ApplicationError


class SupplierErrorCode(StrEnum):
    NOT_A_SUPPLIER = "not_a_supplier"
    ORGANIZATION_INACTIVE = "organization_inactive"
    CAPACITY_IN_USE = "capacity_in_use"
    NO_SELLABLE_INSTANCE_TYPE = "no_sellable_instance_type"
    INVALID_REGISTRATION_TOKEN = "invalid_registration_token"
    STAFF_DECISION = "staff_decision"
    INVENTORY_CONTRADICTS_DECLARATION = "inventory_contradicts_declaration"
    HARDWARE_UNCONFIRMED = "hardware_unconfirmed"


class InvalidRegistrationToken(ApplicationError):
    code = SupplierErrorCode.INVALID_REGISTRATION_TOKEN
    status_code = status.HTTP_401_UNAUTHORIZED
