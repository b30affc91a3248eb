"""Error codes of ordering and instance operations (the API returns them as `code`)."""

from __future__ import annotations

from enum import StrEnum

from marketplace.errors import Conflict, ErrorCode


class OrderErrorCode(StrEnum):
    INSUFFICIENT_CAPACITY = "insufficient_capacity"
    BID_TOO_LOW = "bid_too_low"
    PRICE_CEILING_TOO_LOW = "price_ceiling_too_low"
    OFFER_SOLD_OUT = "offer_sold_out"
    CAPACITY_TAKEN = "capacity_taken"
    SPEND_LIMIT_EXCEEDED = "spend_limit_exceeded"
    ACCOUNT_SUSPENDED = "account_suspended"
    PRICE_FIXED = "price_fixed"
    PRICE_UNCHANGED = "price_unchanged"
    REPORT_RESOLVED = "report_resolved"
    UNVERIFIED_HOST = "unverified_host"
    RENTAL_BELOW_MINIMUM = "rental_below_minimum"
    RENTAL_PAST_AVAILABILITY = "rental_past_availability"
    NO_FREE_PORTS = "no_free_ports"
    TEMPLATE_EXISTS = "template_exists"
    TEMPLATE_LIMIT = "template_limit"
    NO_ACCELERATOR_MODE_UNAVAILABLE = "no_accelerator_mode_unavailable"
    LOG_RATE_LIMITED = "log_rate_limited"
    UNKNOWN_INSTANCE_TYPE = "unknown_instance_type"  # market depth of a type that is not in the catalog
    UNKNOWN_REGION = "unknown_region"


class InvalidTransition(Conflict):
    code = ErrorCode.INVALID_TRANSITION


class InsufficientCapacity(Conflict):
    code = OrderErrorCode.INSUFFICIENT_CAPACITY


class CapacityTaken(Conflict):
    code = OrderErrorCode.CAPACITY_TAKEN


class OfferSoldOut(Conflict):
    """A pinned offer that exists but cannot be ordered now (no capacity left, or past its end)."""

    code = OrderErrorCode.OFFER_SOLD_OUT
