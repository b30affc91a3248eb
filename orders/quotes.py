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
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from accounts.models import User
from billing import rating
from marketplace.broker import place
from marketplace.currency import price_text
from marketplace.money import quantize_price
from suppliers.offers import TermsRefusal, rental_terms_refusal

from .candidates import HostCandidate, order_candidates, prefiltered_host_ids, rank_candidates
from .errors import InsufficientCapacity, OrderErrorCode
from .metering import disk_grace_cost
from .models import Pricing
from .ports import NoFreePorts
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
    disk_gb: int = 0  # each instance's disk
    min_rental_hours: int = 0  # 0: none binds this order (none set, or spot)
    available_until: datetime | None = None  # the host's next maintenance: the rental must end by then


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
    minimum_charge: Decimal = Decimal(0)  # billed for compute even if ended sooner (hosts' minimum rentals)
    stopped_disk_per_hour: Decimal = Decimal(0)  # all instances' disks, kept while stopped
    stopped_disk_grace_days: int = 0  # at zero balance stopped disks are kept this long, then released
    stopped_disk_grace_cost: Decimal = Decimal(0)  # what that grace costs: the most owed on the disks


# How the refusal explains hosts left out for the order's terms: %(count)s is how many; translated
# (gettext) when the refusal is raised.
SKIPPED_HOSTS_ADVICE = {
    TermsRefusal.UNVERIFIED: gettext_noop("%(count)s not verified (send allow_unverified: true to accept them)"),
    TermsRefusal.MINIMUM_RENTAL: gettext_noop(
        "%(count)s with a minimum rental longer than the order (ask for longer, or leave terminate_after_hours "
        "out and be billed at least the minimum)"
    ),
    TermsRefusal.MAINTENANCE: gettext_noop(
        "%(count)s with maintenance before the order would end (set terminate_after_hours so that it ends "
        "before; the offers say until when they are available)"
    ),
}


def instance_price_for(target: OrderTarget, hc: HostCandidate) -> Decimal:
    """What one instance costs per hour: the bid for spot, the ranked price otherwise, plus the disk
    chosen beyond the type's default at the host's storage price."""
    compute = (
        cast(Decimal, target.max_price_per_hour) if target.pricing == Pricing.SPOT else hc.candidate.price_per_hour
    )
    return quantize_price(compute + extra_disk_per_hour(target, hc))


def extra_disk_per_hour(target: OrderTarget, hc: HostCandidate) -> Decimal:
    extra_gb = target.disk_gb_for(hc.instance_type) - hc.instance_type.disk_gb
    return rating.storage_rate_per_hour(extra_gb, hc.host.storage_price_per_gb_month) if extra_gb > 0 else Decimal(0)


def line_minimum_hours(target: OrderTarget, hc: HostCandidate) -> int:
    """The minimum rental that binds this order on this host (see `minimum_rental_applies`)."""
    return hc.terms.min_rental_hours if target.minimum_applies else 0


def _skipped_hosts(target: OrderTarget) -> dict[str, int]:
    """Capable hosts with room that the order's terms left out, counted by why (error path only)."""
    now = timezone.now()
    why_by_host: dict[int, str] = {}
    for hc in order_candidates(target, apply_terms=False):
        if not hc.candidate.available or hc.host.pk in why_by_host:
            continue
        refusal = rental_terms_refusal(
            hc.terms,
            rental_hours=target.rental_hours,
            minimum_applies=target.minimum_applies,
            allow_unverified=target.allow_unverified,
            now=now,
        )
        if refusal is not None:
            why_by_host[hc.host.pk] = refusal
    counts: dict[str, int] = defaultdict(int)
    for why in why_by_host.values():
        counts[why] += 1
    return dict(counts)


def _placeable_without_ports(target: OrderTarget) -> bool:
    """Whether the order would fit if it asked for no ports (error path only)."""
    by_host: dict[int, int] = defaultdict(int)
    for hc in order_candidates(target, apply_ports=False):
        by_host[hc.host.pk] = max(by_host[hc.host.pk], hc.candidate.available)
    placeable = max(by_host.values(), default=0) if target.same_host else sum(by_host.values())
    return placeable >= target.count


def insufficient_capacity(target: OrderTarget, ranked: list[HostCandidate]) -> InsufficientCapacity | NoFreePorts:
    """Why the order cannot be placed: a spot bid below every floor (`bid_too_low`), a price
    ceiling below every matching price (`price_ceiling_too_low`), or not enough capacity (naming
    the capable hosts the order's terms left out: unverified, minimum rental, maintenance)."""
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
                _("Your ceiling of %(ceiling)s/h is below every matching price; the lowest is %(lowest)s/h.")
                % {"ceiling": price_text(ceiling), "lowest": price_text(min(prices))},
                code=OrderErrorCode.PRICE_CEILING_TOO_LOW,
                fields={
                    "max_price_per_hour": [
                        _("Below the lowest matching price, %(lowest)s/h.") % {"lowest": price_text(min(prices))}
                    ]
                },
                extra={"lowest_price_per_hour": str(min(prices))},
            )
    if target.pricing == Pricing.SPOT and not ranked:
        floors = [
            hc.spot_floor_per_hour
            for hc in order_candidates(dataclasses.replace(target, max_price_per_hour=Decimal("1e9")))
        ]
        if floors and min(floors) > cast(Decimal, target.max_price_per_hour):
            return InsufficientCapacity(
                _(
                    "Your bid of %(bid)s/h is below every matching host's minimum; "
                    "the lowest accepted bid is %(floor)s/h."
                )
                % {"bid": price_text(cast(Decimal, target.max_price_per_hour)), "floor": price_text(min(floors))},
                code=OrderErrorCode.BID_TOO_LOW,
                extra={"lowest_accepted_bid_per_hour": str(min(floors))},
            )
    if target.ports and _placeable_without_ports(target):
        return NoFreePorts(
            _(
                "Capacity for the order is there, but not enough hosts with inbound connections have "
                "%(ports)s free port(s) per instance. Ask for fewer ports (or none: reach the instance "
                "through its host's network some other way), or try again later."
            )
            % {"ports": len(target.ports)},
            fields={"ports": [_("Not enough free host ports for these container ports.")]},
            extra={"ports": list(target.ports), "requested": target.count},
        )
    by_host: dict[int, int] = defaultdict(int)
    for hc in ranked:
        by_host[hc.host.pk] = max(by_host[hc.host.pk], hc.candidate.available)
    available = sum(by_host.values())
    most_on_one_host = max(by_host.values(), default=0)
    if target.same_host:
        message = _(
            "Not enough capacity for %(requested)s instance(s): %(available)s can be placed on one host right now "
            "with these constraints."
        ) % {"requested": target.count, "available": most_on_one_host}
    else:
        message = _(
            "Not enough capacity for %(requested)s instance(s): %(available)s can be placed in total right now "
            "with these constraints."
        ) % {"requested": target.count, "available": available}
    skipped = _skipped_hosts(target)
    if skipped:
        left_out = "; ".join(
            _(SKIPPED_HOSTS_ADVICE[TermsRefusal(why)]) % {"count": n} for why, n in sorted(skipped.items())
        )
        message += " " + _("Capable hosts left out for the order's terms: %(hosts)s.") % {"hosts": left_out}
    return InsufficientCapacity(
        message,
        extra={
            "available": available,
            "available_on_one_host": most_on_one_host,
            "requested": target.count,
            "skipped_hosts": skipped,
        },
    )


def order_plan(
    target: OrderTarget, candidates: list[HostCandidate]
) -> tuple[list[HostCandidate], list[tuple[HostCandidate, int]]]:
    """Rank the candidates and split the order over them: (ranked, [(candidate, count)])."""
    ranked = rank_candidates(target, candidates)
    shares = place([hc.candidate for hc in ranked], target.count, same_host=target.same_host)
    by_key = {hc.candidate.offer_id: hc for hc in ranked}
    return ranked, [(by_key[s.candidate.offer_id], s.count) for s in shares]


def quote_create(*, request: OrderRequest, buyer: User | None = None) -> Quote:
    """What the order would cost and where the broker would place it now (no capacity is held)."""
    target = order_target_resolve(request, for_quote=True, buyer=buyer)
    ranked, plan = order_plan(target, order_candidates(target, host_ids=prefiltered_host_ids(target)))
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
            disk_gb=target.disk_gb_for(hc.instance_type),
            min_rental_hours=line_minimum_hours(target, hc),
            available_until=hc.terms.available_until,
        )
        for hc, n in plan
    ]
    total = sum((line.price_per_hour * line.count for line in lines), Decimal(0))
    term_total = quantize_price(total * target.term_hours) if target.term_hours else None
    minimum = sum((line.price_per_hour * line.count * line.min_rental_hours for line in lines), Decimal(0))
    disks = [(target.disk_gb_for(hc.instance_type), hc.host.storage_price_per_gb_month, n) for hc, n in plan]
    disk_per_hour = sum((rating.storage_rate_per_hour(gb, price) * n for gb, price, n in disks), Decimal(0))
    grace_cost = sum(
        (disk_grace_cost(disk_gb=gb, storage_price_per_gb_month=price) * n for gb, price, n in disks), Decimal(0)
    )
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
        minimum_charge=quantize_price(minimum),
        stopped_disk_per_hour=quantize_price(disk_per_hour),
        stopped_disk_grace_days=settings.STOPPED_DISK_GRACE_DAYS,
        stopped_disk_grace_cost=quantize_price(grace_cost),
    )
