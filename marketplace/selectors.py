"""Platform reads."""

from __future__ import annotations

from django.db.models import Count, Min, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from .databases import read_alias
from .models import InstanceType, Offer


def offer_list() -> QuerySet[Offer]:
    """Listed offers with everything a row shows, and the terms they can be had on (from the read
    replica where there is one: `marketplace.databases`)."""
    return offers_with_terms(Offer.objects.using(read_alias()).listed().with_related())


def offers_with_terms(offers: QuerySet[Offer]) -> QuerySet[Offer]:
    """The offers with `available_until`: when their host's current or next maintenance starts (a
    rental on the offer must end by then; null when none is scheduled). In the same query."""
    if "available_until" in offers.query.annotations:
        return offers
    next_start = (
        Offer.objects.filter(pk=OuterRef("pk"), host__maintenance_windows__ends_at__gt=timezone.now())
        .order_by("host__maintenance_windows__starts_at")
        .values("host__maintenance_windows__starts_at")[:1]
    )
    return offers.annotate(available_until=Subquery(next_start))


def instance_type_list_with_market() -> QuerySet[InstanceType]:
    """Active instance types with their number of listed offers, instances left and lowest price,
    over verified hosts: what search shows and an order by type gets by default (from the read
    replica where there is one)."""
    now = timezone.now()
    listed = Q(offers__available_count__gt=0) & (Q(offers__listed_until__isnull=True) | Q(offers__listed_until__gt=now))
    listed &= Q(offers__verified=True)
    return (
        InstanceType.objects.using(read_alias())
        .active()
        .select_related("accelerator_model")
        .annotate(
            offer_count=Count("offers", filter=listed),
            lowest_price_per_hour=Min("offers__price_per_hour", filter=listed),
        )
        .order_by("accelerator_model__kind", "accelerator_model__name", "accelerator_count", "vcpus", "name")
    )
