"""Broker candidates: every (sellable host x instance type) that could serve an order, priced
under its pricing model and ranked by the pure broker (`marketplace.broker`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import cast

from django.db.models import Case, F, Q, QuerySet, When
from django.utils import timezone

from marketplace import broker, capacity
from marketplace.models import AcceleratorKind, AcceleratorModel, InstanceType, Offer
from marketplace.money import quantize_price
from suppliers.models import Host, MaintenanceWindow, Organization
from suppliers.offers import (
    RentalTerms,
    host_capacity_spec,
    host_type_figures,
    instance_type_shape,
    next_maintenance_subquery,
    type_fits_host,
)

from .models import Allocation, Pricing
from .ports import free_port_counts
from .requests import OrderTarget

MAX_LOCKED_CANDIDATE_HOSTS = 40


@dataclass(frozen=True)
class HostCandidate:
    """A broker candidate together with the rows it came from."""

    candidate: broker.Candidate
    host: Host
    instance_type: InstanceType
    spot_floor_per_hour: Decimal
    terms: RentalTerms  # what the host's offers can be had on (the order met them, or was not held to them)
    port_limited: bool = False  # it has room for more instances than free host ports for them


def order_types(target: OrderTarget) -> list[InstanceType]:
    """The active instance types that could serve the order (no query for an order of one type)."""
    if target.instance_type is not None:
        return [target.instance_type] if target.instance_type.is_active else []
    types = InstanceType.objects.active().select_related("accelerator_model")
    requirements = cast(broker.Requirements, target.requirements)  # set when no instance type is
    kinds = set(requirements.accelerator_kinds)
    kind_filter = Q(accelerator_model__kind__in=kinds - {AcceleratorKind.CPU})
    if AcceleratorKind.CPU in kinds:
        kind_filter |= Q(accelerator_model__isnull=True)
    return list(types.filter(kind_filter))


def _memory_gb(instance_type: InstanceType) -> int:
    if instance_type.accelerator_model_id:
        return cast(AcceleratorModel, instance_type.accelerator_model).memory_gb * instance_type.accelerator_count
    return instance_type.ram_gb


def candidate_hosts(
    target: OrderTarget,
    *,
    host_ids: list[int] | None = None,
    apply_terms: bool = True,
    apply_ports: bool = True,
) -> QuerySet[Host]:
    """The sellable hosts that could serve the order, with what the candidate maths reads of them
    (relations, and the start of their next maintenance as `next_maintenance_at`).

    The same rule as `host_is_sellable`: approved, before the end date, agent not offline,
    inventory not contradicting the declaration (maintenance is part of the terms). Hosts whose
    offers cannot be had on the order's terms are left out, by the rule of
    `suppliers.offers.rental_terms_refusal` written in SQL: unverified hosts unless the buyer opts
    in, a minimum rental above the order's stated length, maintenance before the order ends.
    `apply_terms=False` keeps them (to explain a refusal). An order with ports needs hosts with
    inbound ports (`apply_ports=False` ignores ports)."""
    hosts: QuerySet[Host] = (
        Host.objects.filter(status=Host.Status.APPROVED, organization__status=Organization.Status.APPROVED)
        .filter(Q(offer_ends_at__isnull=True) | Q(offer_ends_at__gt=timezone.now()))
        .exclude(agent_status=Host.AgentStatus.OFFLINE)
        .filter(inventory_mismatch__isnull=True, hardware_changed_at__isnull=True)
        .annotate(next_maintenance_at=next_maintenance_subquery())
    )
    if target.offer_host_id is not None:
        hosts = hosts.filter(pk=target.offer_host_id)
    if apply_terms:
        hosts = _meeting_terms(hosts, target)
    if target.region_id is not None:
        hosts = hosts.filter(region_id=target.region_id)
    if target.ports and apply_ports:
        hosts = hosts.exclude(public_address="").filter(port_range_start__isnull=False)
    if host_ids is not None:
        hosts = hosts.filter(pk__in=host_ids)
    return hosts.select_related("region", "zone", "organization", "accelerator_model")


def order_candidates(
    target: OrderTarget,
    *,
    host_ids: list[int] | None = None,
    holdings: dict[int, list[capacity.Holding]] | None = None,
    apply_terms: bool = True,
    apply_ports: bool = True,
    types: list[InstanceType] | None = None,
) -> list[HostCandidate]:
    """Every (sellable host x instance type) that could serve the order (`candidate_hosts`), with
    the price under the order's pricing model and how many the host can take now (from
    `holdings` when given, which the caller read under the host locks; otherwise an unlocked
    estimate). `types`: `order_types(target)` when the caller has them."""
    hosts = list(candidate_hosts(target, host_ids=host_ids, apply_terms=apply_terms, apply_ports=apply_ports))
    if not hosts:
        return []
    if holdings is None:
        holdings = active_holdings([host.pk for host in hosts])
    types = order_types(target) if types is None else types
    return candidates_on_hosts(target, hosts, holdings, types, apply_ports=apply_ports)


def active_holdings(host_ids: list[int]) -> dict[int, list[capacity.Holding]]:
    """The active allocations of these hosts for the capacity maths: one query for all of them."""
    holdings: dict[int, list[capacity.Holding]] = {host_id: [] for host_id in host_ids}
    for allocation in Allocation.objects.active().filter(host_id__in=host_ids).order_by("pk"):
        holdings[allocation.host_id].append(allocation.as_holding())
    return holdings


def candidates_on_hosts(
    target: OrderTarget,
    hosts: list[Host],
    holdings: dict[int, list[capacity.Holding]],
    types: list[InstanceType],
    *,
    apply_ports: bool = True,
) -> list[HostCandidate]:
    """The candidates of `hosts` (rows of `candidate_hosts`) for the order's `types`: no query
    beyond free host ports when the order asks for ports. An order with ports needs as many free
    host ports as it places instances times ports."""
    free_ports = free_port_counts(hosts) if target.ports and apply_ports else {}
    results: list[HostCandidate] = []
    for host in hosts:
        spec = host_capacity_spec(host)
        for instance_type in types:
            if not type_fits_host(instance_type, host):
                continue
            shape = instance_type_shape(instance_type, disk_gb=target.disk_gb_for(instance_type))
            if not capacity.is_eligible(spec, shape):
                continue
            figures = host_type_figures(host, instance_type)
            floor = host.spot_floor_for(figures.price_per_hour)
            price = _price_for(target, host, figures.price_per_hour, floor)
            if price is None:
                continue
            available = capacity.placeable_count(
                spec, holdings.get(host.pk, []), shape, spot_bid=target.spot_bid, limit=target.count
            )
            port_limited = False
            if target.ports and apply_ports:
                port_room = free_ports.get(host.pk, 0) // len(target.ports)
                port_limited, available = port_room < available, min(available, port_room)
            candidate = broker.Candidate(
                offer_id=host.pk * 100000 + instance_type.pk,
                host_id=host.pk,
                instance_type=instance_type.name,
                accelerator_kind=instance_type.accelerator_kind,
                memory_gb=_memory_gb(instance_type),
                tflops=figures.tflops,
                price_per_hour=price,
                energy_kwh_per_hour=figures.energy_kwh_per_hour,
                available=available,
                location=broker.Location(float(host.region.latitude), float(host.region.longitude)),
                region=host.region.code,
                reliability=host.reliability,
            )
            terms = RentalTerms(
                verified=host.verified,
                min_rental_hours=host.min_rental_hours,
                available_until=host.next_maintenance_at,  # type: ignore[attr-defined]  # annotated above
            )
            results.append(HostCandidate(candidate, host, instance_type, floor, terms, port_limited))
    return results


PREFILTER_MARGIN_OFFERS = 5  # offers beyond the order's count: capacity may go before the locks
PREFILTER_ROWS_PER_HOST = 4


def prefiltered_host_ids(target: OrderTarget) -> list[int] | None:
    """The hosts of `prefiltered_host_rooms`, best first (None: look at every sellable host)."""
    rooms = prefiltered_host_rooms(target)
    return None if rooms is None else [host_id for host_id, _ in rooms]


def prefiltered_host_rooms(target: OrderTarget) -> list[tuple[int, int]] | None:
    """For an on-demand order of one instance type or a capability request (or a pinned offer),
    the hosts of the cheapest listed offers that meet its terms (by price per TFLOP-hour for
    capability), from the offers table (which is the remaining capacity, kept under the host
    locks), each with the most instances one of its offers still has room for: enough hosts to
    cover the count plus a margin, so the exact candidate maths runs on a handful of hosts whatever
    the size of the market. None where the offers table cannot stand for the candidates and every
    sellable host must be looked at: spot (floors and preemptible capacity), reserved (per-host
    discounts), a disk bigger than the type's default, ports (free host ports are not in the offers
    table) and `near` (distance ranks ties of price and energy). A pinned offer's host is returned
    with the room of its offers whatever their terms (the exact maths decides)."""
    if target.offer_host_id is not None:
        return [(target.offer_host_id, target.count)]
    if (
        target.pricing != Pricing.ON_DEMAND
        or target.near is not None
        or target.launch.disk_gb is not None
        or target.ports
    ):
        return None
    offers: QuerySet[Offer] = Offer.objects.listed()
    if target.instance_type is not None:
        offers = offers.filter(instance_type=target.instance_type)
        ranking = "price_per_hour"
    else:
        offers = _capable_offers(offers, cast(broker.Requirements, target.requirements))
        ranking = "price_per_tflop_hour"
    if target.region_id is not None:
        offers = offers.filter(region_id=target.region_id)
    if target.max_price_per_hour is not None:
        offers = offers.filter(price_per_hour__lte=target.max_price_per_hour)
    if not target.allow_unverified:
        offers = offers.filter(verified=True)
    if target.minimum_applies and target.rental_hours is not None:
        offers = offers.filter(host__min_rental_hours__lte=target.rental_hours)
    now = timezone.now()
    windows = MaintenanceWindow.objects.filter(ends_at__gt=now)
    if target.rental_hours:
        windows = windows.filter(starts_at__lt=now + timedelta(hours=target.rental_hours))
    offers = offers.exclude(host_id__in=windows.values("host_id"))
    limit = (1 if target.same_host else target.count) + PREFILTER_MARGIN_OFFERS
    if target.same_host:
        offers = offers.filter(available_count__gte=target.count)
    # Hosts in the order of their best offer; a host has room for at least one, so `limit` hosts
    # cover the count. The offers are walked best first down the ranking's index, a few rows per
    # host wanted (a host lists several types of a capability request), more only when those
    # rows held fewer hosts: a grouping of every matching offer would grow with the market.
    ordered = offers.order_by(ranking, "energy_kwh_per_hour", "host_id").values_list("host_id", "available_count")
    fetch = limit * PREFILTER_ROWS_PER_HOST
    while True:
        rows = list(ordered[:fetch])
        rooms: dict[int, int] = {}
        for host_id, available in rows:
            rooms[host_id] = max(rooms.get(host_id, 0), available)
        if len(rooms) >= limit or len(rows) < fetch:
            return list(rooms.items())[:limit]
        fetch *= 2


def _capable_offers(offers: QuerySet[Offer], requirements: broker.Requirements) -> QuerySet[Offer]:
    """Offers whose instance meets a capability request (`broker.Requirements.is_met_by` in SQL,
    on the offer's own copies of its figures): an accepted kind, at least the memory (accelerator
    memory x count; RAM for CPU types) and the TFLOPS, and some TFLOPS at all."""
    memory = Case(
        When(accelerator_kind=AcceleratorKind.CPU, then=F("ram_gb")),
        default=F("accelerator_memory_gb") * F("accelerator_count"),
    )
    return (
        offers.filter(accelerator_kind__in=sorted(requirements.accelerator_kinds))
        .filter(tflops__gte=requirements.min_tflops, tflops__gt=0)
        .alias(memory_gb=memory)
        .filter(memory_gb__gte=requirements.min_memory_gb)
    )


def _meeting_terms(hosts: QuerySet[Host], target: OrderTarget) -> QuerySet[Host]:
    """The hosts whose offers can be had on the order's terms (see `order_candidates`)."""
    if not target.allow_unverified:
        hosts = hosts.filter(verified=True)  # as search shows by default
    if target.minimum_applies and target.rental_hours is not None:
        hosts = hosts.filter(min_rental_hours__lte=target.rental_hours)
    # A rental must end by the next maintenance; an open-ended one cannot start before it.
    now = timezone.now()
    windows = MaintenanceWindow.objects.filter(ends_at__gt=now)
    if target.rental_hours:
        windows = windows.filter(starts_at__lt=now + timedelta(hours=target.rental_hours))
    return hosts.exclude(pk__in=windows.values("host_id"))


def _price_for(target: OrderTarget, host: Host, on_demand: Decimal, spot_floor: Decimal) -> Decimal | None:
    """Price per instance-hour under the order's pricing model; None when the host cannot serve it."""
    if target.pricing == Pricing.SPOT:
        if target.max_price_per_hour is None or target.max_price_per_hour < spot_floor:
            return None
        return spot_floor  # ranking: the host that accepts the lowest bids first
    if target.pricing == Pricing.RESERVED:
        price = quantize_price(on_demand * (1 - host.reserved_discount(cast(int, target.term_hours))))
    else:
        price = on_demand
    if target.max_price_per_hour is not None and price > target.max_price_per_hour:
        return None
    return price


def rank_candidates(target: OrderTarget, candidates: list[HostCandidate]) -> list[HostCandidate]:
    by_key = {c.candidate.offer_id: c for c in candidates}
    plain = [c.candidate for c in candidates]
    if target.requirements is not None:
        ranked = broker.rank_capable(plain, target.requirements, near=target.near)
    else:
        ranked = broker.rank_offers(plain, near=target.near)
    return [by_key[c.offer_id] for c in ranked]
