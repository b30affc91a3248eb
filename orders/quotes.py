"""Quotes: what an order would cost and where the broker would place it now (nothing is held).

`order_plan` and `insufficient_capacity` are shared with placement, which re-plans under locks.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import cast

from django.conf import settings
from django.utils import timezone

from marketplace.broker import place
from marketplace.money import quantize_price

from .candidates import HostCandidate, order_candidates, rank_candidates
from .errors import InsufficientCapacity, OrderErrorCode
from .models import Pricing
from .requests import OrderRequest, OrderTarget, order_target_resolve

QUOTE_VALID_FOR = timedelta(minutes=5)


@dataclass(frozen=True)
class QuoteLine:
    host_id: int
    supplier: str
    region: str
    instance_type: str
    count: int
    price_per_hour: Decimal
    energy_kwh_per_hour: Decimal


@dataclass(frozen=True)
class Quote:
    pricing: str
    count: int
    price_per_hour: Decimal  # all instances together
    platform_fee_per_hour: Decimal
    energy_kwh_per_hour: Decimal
    lines: list[QuoteLine]
    expires_at: datetime
    term_hours: int | None = None
    term_total: Decimal | None = None


def instance_price_for(target: OrderTarget, hc: HostCandidate) -> Decimal:
    """What one instance costs per hour: the bid for spot, the ranked price otherwise."""
    if target.pricing == Pricing.SPOT:
        return cast(Decimal, target.max_price_per_hour)  # spot orders always bid
    return hc.candidate.price_per_hour


def insufficient_capacity(target: OrderTarget, ranked: list[HostCandidate]) -> InsufficientCapacity:
    """Why the order cannot be placed: a spot bid below every floor (`bid_too_low`), a price
    ceiling below every matching price (`price_ceiling_too_low`), or not enough capacity."""
    ceiling = target.max_price_per_hour
    if target.pricing != Pricing.SPOT and ceiling is not None and not any(hc.candidate.available for hc in ranked):
        uncapped = dataclasses.replace(target, max_price_per_hour=None)
        prices = [
            hc.candidate.price_per_hour
            for hc in rank_candidates(uncapped, order_candidates(uncapped))
            if hc.candidate.available
        ]
        if prices and min(prices) > ceiling:
            return InsufficientCapacity(
                f"Your ceiling of ${ceiling}/h is below every matching price; the lowest is ${min(prices)}/h.",
                code=OrderErrorCode.PRICE_CEILING_TOO_LOW,
                fields={"max_price_per_hour": [f"Below the lowest matching price, ${min(prices)}/h."]},
                extra={"lowest_price_per_hour": str(min(prices))},
            )
    if target.pricing == Pricing.SPOT and not ranked:
        floors = [
            hc.spot_floor_per_hour
            for hc in order_candidates(dataclasses.replace(target, max_price_per_hour=Decimal("1e9")))
        ]
        if floors and min(floors) > cast(Decimal, target.max_price_per_hour):
            return InsufficientCapacity(
                f"Your bid of ${target.max_price_per_hour}/h is below every matching host's minimum; the "
                f"lowest accepted bid is ${min(floors)}/h.",
                code=OrderErrorCode.BID_TOO_LOW,
                extra={"lowest_accepted_bid_per_hour": str(min(floors))},
            )
    by_host: dict[int, int] = defaultdict(int)
    for hc in ranked:
        by_host[hc.host.pk] = max(by_host[hc.host.pk], hc.candidate.available)
    available = sum(by_host.values())
    most_on_one_host = max(by_host.values(), default=0)
    what = "on one host" if target.same_host else "in total"
    return InsufficientCapacity(
        f"Not enough capacity for {target.count} instance(s): {most_on_one_host if target.same_host else available} "
        f"can be placed {what} right now with these constraints.",
        extra={"available": available, "available_on_one_host": most_on_one_host, "requested": target.count},
    )


def order_plan(
    target: OrderTarget, candidates: list[HostCandidate]
) -> tuple[list[HostCandidate], list[tuple[HostCandidate, int]]]:
    """Rank the candidates and split the order over them: (ranked, [(candidate, count)])."""
    ranked = rank_candidates(target, candidates)
    shares = place([hc.candidate for hc in ranked], target.count, same_host=target.same_host)
    by_key = {hc.candidate.offer_id: hc for hc in ranked}
    return ranked, [(by_key[s.candidate.offer_id], s.count) for s in shares]


def quote_create(*, request: OrderRequest) -> Quote:
    """What the order would cost and where the broker would place it now (no capacity is held)."""
    target = order_target_resolve(request, for_quote=True)
    ranked, plan = order_plan(target, order_candidates(target))
    if not plan:
        raise insufficient_capacity(target, ranked)
    lines = [
        QuoteLine(
            host_id=hc.host.pk,
            supplier=hc.host.organization.name,
            region=hc.host.region.code,
            instance_type=hc.instance_type.name,
            count=n,
            price_per_hour=instance_price_for(target, hc),
            energy_kwh_per_hour=hc.candidate.energy_kwh_per_hour,
        )
        for hc, n in plan
    ]
    total = sum((line.price_per_hour * line.count for line in lines), Decimal(0))
    term_total = quantize_price(total * target.term_hours) if target.term_hours else None
    return Quote(
        pricing=target.pricing,
        count=target.count,
        price_per_hour=quantize_price(total),
        platform_fee_per_hour=quantize_price(total * settings.PLATFORM_TAKE_RATE),
        energy_kwh_per_hour=sum((line.energy_kwh_per_hour * line.count for line in lines), Decimal(0)),
        lines=lines,
        expires_at=timezone.now() + QUOTE_VALID_FOR,
        term_hours=target.term_hours,
        term_total=term_total,
    )
