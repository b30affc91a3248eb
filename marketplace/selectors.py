"""Platform reads."""

from __future__ import annotations

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from .models import InstanceType, Offer


def offer_list() -> QuerySet[Offer]:
    """Listed offers with everything a row shows."""
    return Offer.objects.listed().with_related()


def instance_type_list_with_market() -> QuerySet[InstanceType]:
    """Active instance types with their number of listed offers, instances left and lowest price."""
    now = timezone.now()
    listed = Q(offers__available_count__gt=0) & (Q(offers__listed_until__isnull=True) | Q(offers__listed_until__gt=now))
    return (
        InstanceType.objects.active()
        .select_related("accelerator_model")
        .annotate(
            offer_count=Count("offers", filter=listed),
            lowest_price_per_hour=Min("offers__price_per_hour", filter=listed),
        )
        .order_by("accelerator_model__kind", "accelerator_model__name", "accelerator_count", "vcpus", "name")
    )


DIMENSION_LABELS = {"accelerators": "Accelerators", "vcpus": "vCPUs", "ram_gb": "RAM (GB)", "disk_gb": "Disk (GB)"}


def host_capacity_usage(host) -> list[dict]:
    """Per dimension: allocated, effective capacity (after oversubscription) and percent used."""
    from .capacity import effective_capacity, total
    from .services import host_allocated_claims, host_capacity_spec

    spec = host_capacity_spec(host)
    capacity = effective_capacity(spec)
    allocated = total(host_allocated_claims(host))
    rows = []
    for dimension, label in DIMENSION_LABELS.items():
        if capacity[dimension] == 0:
            continue
        used = allocated[dimension]
        rows.append(
            {
                "label": label,
                "allocated": used,
                "capacity": capacity[dimension],
                "percent": round(100 * used / capacity[dimension]),
            }
        )
    return rows
