"""Offer list rows from plain values: the columns `OfferSerializer` shows, read in one joined
`.values()` query and formatted by the serializer's own fields (decimals, datetimes), without
building model objects for the offer and its six related rows."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

# Output field -> the value path the row reads.
OFFER_ROW_COLUMNS = {
    "id": "id",
    "instance_type": "instance_type__name",
    "accelerator_model": "accelerator_model__slug",
    "accelerator_name": "accelerator_model__name",
    "accelerator_kind": "accelerator_model__kind",
    "accelerator_count": "instance_type__accelerator_count",
    "accelerator_memory_gb": "accelerator_model__memory_gb",
    "vcpus": "instance_type__vcpus",
    "ram_gb": "instance_type__ram_gb",
    "disk_gb": "instance_type__disk_gb",
    "available_count": "available_count",
    "price_per_hour": "price_per_hour",
    "price_per_tflop_hour": "price_per_tflop_hour",
    "tflops": "tflops",
    "energy_kwh_per_hour": "energy_kwh_per_hour",
    "region": "region__code",
    "zone": "zone__code",
    "tier": "tier",
    "verified": "verified",
    "reliability": "reliability",
    "supplier": "host__organization__name",
    "host": "host_id",
    "slicing_policy": "host__slicing_policy",
    "min_rental_hours": "host__min_rental_hours",
    "storage_price_per_gb_month": "host__storage_price_per_gb_month",
    "network_up_mbps": "host__network_up_mbps",
    "network_down_mbps": "host__network_down_mbps",
    "listed_until": "listed_until",
    "available_until": "available_until",
}
# Read as they are: names and codes (the serializer shows them through relations or sources).
_AS_IS = frozenset(
    {"id", "instance_type", "accelerator_model", "accelerator_name", "accelerator_kind", "region", "zone", "supplier"}
    | {"host", "slicing_policy", "tier"}
)


def offer_row(values: dict[str, Any], fields: dict[str, serializers.Field]) -> dict[str, Any]:
    """One offer as `OfferSerializer` shows it, from a `.values(*OFFER_ROW_COLUMNS.values())` row."""
    row: dict[str, Any] = {}
    for name, path in OFFER_ROW_COLUMNS.items():
        value = values[path]
        if value is None or name in _AS_IS:
            row[name] = value
        elif name == "accelerator_memory_gb":
            row[name] = value * values["instance_type__accelerator_count"]
        else:
            row[name] = fields[name].to_representation(value)
    return row
