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
