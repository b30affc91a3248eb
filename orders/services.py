"""Ordering: quotes, placement without overselling, the instance state machine, spot and reserved.

Lock order, everywhere: buyer row, then host rows in id order, then instance rows. Allocation rows
are only written while their host row is locked, and each host's offers are recomputed in the
same transaction.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from billing.services import funds_guard, lock_wallet, reserved_cancellation_refund, reserved_prepay
from marketplace import capacity
from marketplace.errors import ApplicationError, Conflict, Forbidden, InvalidInput
from marketplace.models import InstanceType, Offer, Region
from marketplace.money import quantize_price
from marketplace.services import (
    host_capacity_spec,
    host_holdings,
    host_is_sellable,
    host_type_figures,
    instance_type_shape,
    offers_refresh_for_host,
)
from suppliers.models import Host

from . import selectors
from .models import (
    RESERVED_TERMS_HOURS,
    Allocation,
    HostCommand,
    Instance,
    InstanceEvent,
    InstanceStatus,
    Order,
    Pricing,
)
from .selectors import OrderTarget

logger = logging.getLogger(__name__)

S = InstanceStatus
Actor = InstanceEvent.Actor
MAX_COUNT = 64
QUOTE_VALID_FOR = timedelta(minutes=5)
DEFAULT_PREEMPTION_GRACE_SECONDS = 30

# The one table of allowed status changes.
TRANSITIONS: dict[str, frozenset[str]] = {
    S.REQUESTED: frozenset({S.PROVISIONING, S.FAILED}),
    S.PROVISIONING: frozenset({S.RUNNING, S.FAILED, S.STOPPING, S.TERMINATING, S.PREEMPTED}),
    S.RUNNING: frozenset({S.STOPPING, S.TERMINATING, S.PREEMPTED, S.FAILED}),
    S.STOPPING: frozenset({S.STOPPED, S.TERMINATING, S.FAILED}),
    S.STOPPED: frozenset({S.STARTING, S.TERMINATING}),
    S.STARTING: frozenset({S.RUNNING, S.STOPPING, S.TERMINATING, S.PREEMPTED, S.FAILED}),
    S.PREEMPTED: frozenset({S.PROVISIONING, S.TERMINATING}),
    S.FAILED: frozenset({S.TERMINATING}),
    S.TERMINATING: frozenset({S.TERMINATED}),
    S.TERMINATED: frozenset(),
}


class InvalidTransition(Conflict):
    code = "invalid_transition"


class InsufficientCapacity(Conflict):
    code = "insufficient_capacity"


def preemption_grace_seconds() -> int:
    return int(getattr(settings, "SPOT_PREEMPTION_GRACE_SECONDS", DEFAULT_PREEMPTION_GRACE_SECONDS))


# --- The state machine ----------------------------------------------------------------------


def instance_transition(
    *, instance: Instance, to: str, reason: str, actor: str, actor_user: User | None = None
) -> Instance:
    """Change an instance's status and write the event row. The only writer of `status`.

    Precondition: the caller holds the instance row lock. Raises InvalidTransition (409).
    """
    if to not in TRANSITIONS[instance.status]:
        raise InvalidTransition(
            f"An instance that is {instance.status} cannot become {to}.",
            extra={"status": instance.status, "allowed": sorted(TRANSITIONS[instance.status])},
        )
    from billing.services import meter_transition

    old_status = instance.status
    InstanceEvent.objects.create(
        instance=instance,
        from_status=old_status,
        to_status=to,
        reason=reason[:500],
        actor=actor,
        actor_user=actor_user,
    )
    instance.status = to
    instance.save(update_fields=["status", "updated_at"])
    meter_transition(instance=instance, old_status=old_status, at=timezone.now())
    return instance


def _queue_command(instance: Instance, kind: str, **payload) -> HostCommand:
    return HostCommand.objects.create(host_id=instance.host_id, instance=instance, kind=kind, payload=payload)


def _start_payload(instance: Instance) -> dict:
    t = instance.instance_type
    return {
        "image": instance.image,
        "command": instance.command,
        "instance_type": t.name,
        "accelerators": t.accelerator_count,
        "vcpus": t.vcpus,
        "ram_gb": t.ram_gb,
        "disk_gb": t.disk_gb,
    }


# --- Order input ----------------------------------------------------------------------------


@dataclass
class OrderRequest:
    """An order or quote request as received (API or form)."""

    count: int = 1
    pricing: str = Pricing.ON_DEMAND
    instance_type: str | None = None
    offer: int | None = None
    requirements: dict | None = None
    max_price_per_hour: Decimal | None = None
    term_hours: int | None = None
    region: str | None = None
    near: tuple[Decimal, Decimal] | None = None
    same_host: bool = False
    image: str = ""
    command: str = ""
    terminate_after_hours: int | None = None
    errors: dict = field(default_factory=dict)


def order_target_resolve(request: OrderRequest, *, for_quote: bool = False) -> OrderTarget:
    """Validate the request and resolve names to rows. Raises InvalidInput naming every bad field."""
    from marketplace.broker import Location

    errors: dict[str, list[str]] = {}
    targets = [name for name in ("instance_type", "offer", "requirements") if getattr(request, name) not in (None, "")]
    if len(targets) != 1:
        errors["instance_type"] = ["Give exactly one of instance_type, offer or requirements."]
    if not 1 <= int(request.count or 0) <= MAX_COUNT:
        errors["count"] = [f"Between 1 and {MAX_COUNT}."]
    if request.pricing not in Pricing.values:
        errors["pricing"] = [f"One of {', '.join(Pricing.values)}."]
    if request.pricing == Pricing.SPOT and request.max_price_per_hour is None:
        errors["max_price_per_hour"] = ["Spot orders need a bid: the most you pay per instance-hour."]
    if request.max_price_per_hour is not None and request.max_price_per_hour <= 0:
        errors["max_price_per_hour"] = ["Must be positive."]
    if request.pricing == Pricing.RESERVED and request.term_hours not in RESERVED_TERMS_HOURS:
        errors["term_hours"] = [f"Reserved terms are {', '.join(str(h) for h in RESERVED_TERMS_HOURS)} hours."]
    if request.pricing != Pricing.RESERVED and request.term_hours is not None:
        errors["term_hours"] = ["Only reserved orders have a term."]
    if request.terminate_after_hours is not None and not 1 <= request.terminate_after_hours <= 24 * 366:
        errors["terminate_after_hours"] = ["Between 1 and 8784 hours."]
    if not for_quote:
        image = (request.image or "").strip()
        if not image or len(image) > 255 or any(ch.isspace() for ch in image):
            errors["image"] = ["A container image reference such as pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime."]

    instance_type = offer_host_id = requirements = region_id = near = None
    if request.instance_type not in (None, ""):
        instance_type = (
            InstanceType.objects.active().select_related("accelerator_model").filter(name=request.instance_type).first()
        )
        if instance_type is None:
            errors["instance_type"] = [f"Unknown instance type {request.instance_type!r}."]
    if request.offer not in (None, ""):
        offer = Offer.objects.listed().select_related("instance_type").filter(pk=request.offer).first()
        if offer is None:
            errors["offer"] = ["No such offer is listed now."]
        else:
            instance_type, offer_host_id = offer.instance_type, offer.host_id
    if request.requirements not in (None, ""):
        requirements = _parse_requirements(request.requirements, errors)
    if request.region:
        region = Region.objects.filter(code=request.region).first()
        if region is None:
            errors["region"] = [f"Unknown region {request.region!r}."]
        else:
            region_id = region.pk
    if request.near is not None:
        lat, lon = request.near
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            errors["near"] = ["Latitude within [-90, 90] and longitude within [-180, 180]."]
        else:
            near = Location(float(lat), float(lon))
    if errors:
        raise InvalidInput("The order is not valid.", fields=errors)
    return OrderTarget(
        pricing=request.pricing,
        count=int(request.count),
        instance_type=instance_type,
        offer_host_id=offer_host_id,
        requirements=requirements if requirements is not None else None,
        max_price_per_hour=quantize_price(request.max_price_per_hour) if request.max_price_per_hour else None,
        term_hours=request.term_hours,
        region_id=region_id,
        near=near,
        same_host=bool(request.same_host),
        rental_hours=request.term_hours if request.pricing == Pricing.RESERVED else request.terminate_after_hours,
    )


def _parse_requirements(raw, errors: dict):
    from marketplace.broker import Requirements

    if not isinstance(raw, dict):
        errors["requirements"] = ["An object with min_memory_gb, min_tflops and accelerator_kinds."]
        return None
    unknown = set(raw) - {"min_memory_gb", "min_tflops", "accelerator_kinds"}
    if unknown:
        errors["requirements"] = [f"Unknown key(s): {', '.join(sorted(unknown))}."]
        return None
    try:
        memory = int(raw.get("min_memory_gb", 0))
        tflops = Decimal(str(raw.get("min_tflops", 0)))
        kinds = raw.get("accelerator_kinds", ["gpu", "dsa", "cpu"])
        if isinstance(kinds, str):
            kinds = [k.strip() for k in kinds.split(",") if k.strip()]
        kinds = frozenset(kinds)
    except (TypeError, ValueError, ArithmeticError):
        errors["requirements"] = ["min_memory_gb is a whole number, min_tflops a number."]
        return None
    if memory < 0 or tflops < 0 or not tflops.is_finite():
        errors["requirements"] = ["Minimums cannot be negative."]
        return None
    if not kinds or not kinds <= {"gpu", "dsa", "cpu"}:
        errors["requirements"] = ["accelerator_kinds is a non-empty list of gpu, dsa, cpu."]
        return None
    return Requirements(min_memory_gb=memory, min_tflops=tflops, accelerator_kinds=kinds)


# --- Quotes ---------------------------------------------------------------------------------


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
    expires_at: object
    term_hours: int | None = None
    term_total: Decimal | None = None


def _instance_price(target: OrderTarget, hc: selectors.HostCandidate) -> Decimal:
    """What one instance costs per hour: the bid for spot, the ranked price otherwise."""
    if target.pricing == Pricing.SPOT:
        return target.max_price_per_hour
    return hc.candidate.price_per_hour


def _insufficient(target: OrderTarget, ranked: list[selectors.HostCandidate]) -> InsufficientCapacity:
    if target.pricing == Pricing.SPOT and not ranked:
        floors = [
            hc.spot_floor_per_hour
            for hc in selectors.order_candidates(dataclasses.replace(target, max_price_per_hour=Decimal("1e9")))
        ]
        if floors and min(floors) > target.max_price_per_hour:
            return InsufficientCapacity(
                f"Your bid of ${target.max_price_per_hour}/h is below every matching host's minimum; the "
                f"lowest accepted bid is ${min(floors)}/h.",
                code="bid_too_low",
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


def _plan(target: OrderTarget, candidates: list[selectors.HostCandidate]):
    from marketplace.broker import place

    ranked = selectors.rank_candidates(target, candidates)
    shares = place([hc.candidate for hc in ranked], target.count, same_host=target.same_host)
    by_key = {hc.candidate.offer_id: hc for hc in ranked}
    return ranked, [(by_key[s.candidate.offer_id], s.count) for s in shares]


def quote_create(*, request: OrderRequest) -> Quote:
    """What the order would cost and where the broker would place it now (no capacity is held)."""
    target = order_target_resolve(request, for_quote=True)
    ranked, plan = _plan(target, selectors.order_candidates(target))
    if not plan:
        raise _insufficient(target, ranked)
    lines = [
        QuoteLine(
            host_id=hc.host.pk,
            supplier=hc.host.organization.name,
            region=hc.host.region.code,
            instance_type=hc.instance_type.name,
            count=n,
            price_per_hour=_instance_price(target, hc),
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


# --- Placing orders -------------------------------------------------------------------------


def _record_backfill(instance: Instance, host: Host, holdings, claim: capacity.Resources) -> None:
    """A spot instance placed on idle reserved capacity: its revenue goes to the reserving buyer."""
    holding = capacity.backfilled_holding(host_capacity_spec(host), holdings, claim)
    if holding is not None:
        reserved_id = Allocation.objects.filter(pk=holding.key).values_list("instance_id", flat=True).first()
        Instance.objects.filter(pk=instance.pk).update(backfills_id=reserved_id)
        instance.backfills_id = reserved_id


def _reoccupy(host: Host, instance: Instance, allocation, claim: capacity.Resources, *, spot_bid) -> None:
    """An instance runs again: its kept allocation (if any) holds the full claim once more."""
    if allocation is None:
        _allocate(host, instance, claim, spot_bid=spot_bid)
        return
    Allocation.objects.filter(pk=allocation.pk).update(
        kind=Allocation.Kind.RUNNING,
        accelerators=claim["accelerators"],
        vcpus=claim["vcpus"],
        ram_gb=claim["ram_gb"],
        disk_gb=claim["disk_gb"],
    )


def _lock_hosts(host_ids) -> dict[int, Host]:
    hosts = (
        Host.objects.select_for_update(of=("self",))
        .select_related("organization", "accelerator_model", "region", "zone")
        .filter(pk__in=set(host_ids))
        .order_by("pk")
    )
    return {host.pk: host for host in hosts}


def _spend_guard(buyer: User, adding_per_hour: Decimal) -> None:
    """Refuse what would take the buyer's live instances over their hourly ceiling.

    Precondition: the buyer row is locked, so concurrent orders by one buyer are serialized.
    """
    live = Instance.objects.live().filter(buyer=buyer).values_list("price_per_hour", flat=True)
    current = sum(live, Decimal(0))
    if current + adding_per_hour > buyer.spend_limit_per_hour:
        raise Conflict(
            f"This order adds ${adding_per_hour}/h to ${current}/h already running, over your limit of "
            f"${buyer.spend_limit_per_hour}/h. Raise the limit or stop something first.",
            code="spend_limit_exceeded",
            extra={
                "limit_per_hour": str(buyer.spend_limit_per_hour),
                "current_per_hour": str(current),
                "order_per_hour": str(adding_per_hour),
            },
        )


def _preempt(holding: capacity.Holding, *, by: str) -> None:
    """Turn a running spot allocation into a kept disk and notify its instance (lock held on host)."""
    allocation = Allocation.objects.select_related("instance").get(pk=holding.key)
    Allocation.objects.filter(pk=allocation.pk).update(kind=Allocation.Kind.DISK_ONLY)
    instance = Instance.objects.select_for_update().get(pk=allocation.instance_id)
    grace = preemption_grace_seconds()
    instance.preemption_deadline = timezone.now() + timedelta(seconds=grace)
    instance.save(update_fields=["preemption_deadline", "updated_at"])
    instance_transition(
        instance=instance,
        to=S.PREEMPTED,
        actor=Actor.PLATFORM,
        reason=f"Preempted by {by}; {grace} s to shut down. The disk is kept; it resumes when capacity frees.",
    )
    _queue_command(instance, HostCommand.Kind.STOP, grace_seconds=grace, reason="preempted")


def _allocate(host: Host, instance: Instance, claim: capacity.Resources, *, spot_bid) -> Allocation:
    return Allocation.objects.create(
        host=host,
        instance=instance,
        instance_type=instance.instance_type,
        kind=Allocation.Kind.RUNNING,
        spot_bid=spot_bid,
        accelerators=claim["accelerators"],
        vcpus=claim["vcpus"],
        ram_gb=claim["ram_gb"],
        disk_gb=claim["disk_gb"],
    )


@transaction.atomic
def order_place(*, buyer: User, request: OrderRequest) -> Order:
    """Place an order: choose hosts, lock them, re-check and allocate, create instances.

    Locks: the buyer row (spend guard), then candidate host rows in id order. If capacity vanished
    on a ranked host, the next candidate is used; if none is left, InsufficientCapacity (409) and
    nothing is written.
    """
    target = order_target_resolve(request)
    buyer = User.objects.select_for_update().get(pk=buyer.pk)
    if buyer.suspended_at:
        raise Forbidden(f"Your account is suspended: {buyer.suspension_reason}", code="account_suspended")
    lock_wallet(buyer)  # lock order: buyer, wallet, hosts, instances

    estimate = selectors.order_candidates(target)
    ranked_estimate = selectors.rank_candidates(target, estimate)
    host_ids: list[int] = []
    for hc in ranked_estimate:
        if hc.host.pk not in host_ids:
            host_ids.append(hc.host.pk)
        if len(host_ids) >= selectors.MAX_LOCKED_CANDIDATE_HOSTS:
            break
    if not host_ids:
        raise _insufficient(target, [])
    hosts = _lock_hosts(host_ids)
    holdings = {host_id: host_holdings(host) for host_id, host in hosts.items()}
    # Re-read under the locks: what each host can take now.
    candidates = selectors.order_candidates(target, host_ids=list(hosts), holdings=holdings)
    ranked, plan = _plan(target, candidates)
    if not plan:
        raise _insufficient(target, ranked)

    total_per_hour = sum((_instance_price(target, hc) * n for hc, n in plan), Decimal(0))
    _spend_guard(buyer, total_per_hour)
    upfront = quantize_price(total_per_hour * target.term_hours) if target.pricing == Pricing.RESERVED else Decimal(0)
    funds_guard(buyer=buyer, adding_per_hour=Decimal(0) if upfront else total_per_hour, upfront=upfront)

    now = timezone.now()
    first_type = plan[0][0].instance_type
    order = Order.objects.create(
        buyer=buyer,
        instance_type=first_type,
        offer_pinned_id=Offer.objects.filter(pk=request.offer).values_list("pk", flat=True).first()
        if request.offer
        else None,
        requirements=request.requirements if target.requirements else None,
        count=target.count,
        pricing=target.pricing,
        max_price_per_hour=target.max_price_per_hour,
        term_hours=target.term_hours,
        region_id=target.region_id,
        near_latitude=Decimal(str(target.near.latitude)) if target.near else None,
        near_longitude=Decimal(str(target.near.longitude)) if target.near else None,
        same_host=target.same_host,
        image=request.image.strip(),
        command=request.command or "",
        terminate_after_hours=request.terminate_after_hours,
        total_price_per_hour=quantize_price(total_per_hour),
    )
    for hc, n in plan:
        host = hosts[hc.host.pk]
        spec = host_capacity_spec(host)
        shape = instance_type_shape(hc.instance_type)
        placement = capacity.plan_placement(spec, holdings[host.pk], [shape] * n, spot_bid=target.spot_bid)
        if placement is None:  # cannot happen: `available` came from the same holdings
            raise _insufficient(target, ranked)
        for victim in placement.preempt:
            _preempt(victim, by=f"a {target.pricing.replace('_', '-')} order")
        for claim in placement.claims:
            instance = Instance.objects.create(
                order=order,
                buyer=buyer,
                host=host,
                instance_type=hc.instance_type,
                pricing=target.pricing,
                price_per_hour=_instance_price(target, hc),
                image=order.image,
                command=order.command,
                terminate_at=now + timedelta(hours=request.terminate_after_hours)
                if request.terminate_after_hours
                else None,
                reserved_until=now + timedelta(hours=target.term_hours) if target.term_hours else None,
                storage_price_per_gb_month=host.storage_price_per_gb_month,
            )
            InstanceEvent.objects.create(
                instance=instance,
                from_status="",
                to_status=S.REQUESTED,
                reason="Ordered",
                actor=Actor.BUYER,
                actor_user=buyer,
            )
            if target.pricing == Pricing.SPOT:
                _record_backfill(instance, host, holdings[host.pk], claim)
            allocation = _allocate(host, instance, claim, spot_bid=target.spot_bid)
            holdings[host.pk].append(allocation.as_holding())
            instance_transition(
                instance=instance,
                to=S.PROVISIONING,
                actor=Actor.PLATFORM,
                reason=f"Placed on host {host.pk} ({host.region.code}); waiting for the host agent",
            )
            _queue_command(instance, HostCommand.Kind.START, **_start_payload(instance))
        offers_refresh_for_host(host=host)
    if upfront:
        reserved_prepay(order=order, amount=upfront)
    return order


# --- Lifecycle actions ----------------------------------------------------------------------


def _lock_instance_and_host(instance_id: int) -> tuple[Instance, Host]:
    """Lock the instance's host, then the instance (the global lock order)."""
    host_id = Instance.objects.values_list("host_id", flat=True).get(pk=instance_id)
    host = _lock_hosts([host_id])[host_id]
    instance = (
        Instance.objects.select_for_update(of=("self",)).select_related("instance_type", "host").get(pk=instance_id)
    )
    return instance, host


def _active_allocation(instance: Instance) -> Allocation | None:
    return Allocation.objects.active().filter(instance=instance).first()


@transaction.atomic
def instance_stop(*, instance: Instance, actor_user: User | None = None, actor: str = Actor.BUYER) -> Instance:
    """Stop: compute goes back to the market, the disk stays on the host.

    Reserved instances keep their whole claim (idle capacity is backfilled with spot)."""
    instance, host = _lock_instance_and_host(instance.pk)
    instance_transition(instance=instance, to=S.STOPPING, reason="Stop requested", actor=actor, actor_user=actor_user)
    allocation = _active_allocation(instance)
    if allocation is not None:
        kind = Allocation.Kind.RESERVED_IDLE if instance.pricing == Pricing.RESERVED else Allocation.Kind.DISK_ONLY
        Allocation.objects.filter(pk=allocation.pk).update(kind=kind)
    _queue_command(instance, HostCommand.Kind.STOP, grace_seconds=preemption_grace_seconds(), reason="stop")
    spot_resume_for_host(host=host)
    offers_refresh_for_host(host=host)
    return instance


class CapacityTaken(Conflict):
    code = "capacity_taken"


@transaction.atomic
def instance_start(*, instance: Instance, actor_user: User | None = None, actor: str = Actor.BUYER) -> Instance:
    """Start a stopped instance on the same host (its disk is there).

    Reserved instances reclaim their capacity at once, preempting spot backfill. Others need free
    capacity, else CapacityTaken (409) says how to get the type elsewhere."""
    instance, host = _lock_instance_and_host(instance.pk)
    if instance.status != S.STOPPED:
        raise InvalidTransition(
            f"An instance that is {instance.status} cannot be started.",
            extra={"status": instance.status, "allowed": sorted(TRANSITIONS[instance.status])},
        )
    allocation = _active_allocation(instance)
    spec = host_capacity_spec(host)
    spot_bid = instance.price_per_hour if instance.is_spot else None
    placement = capacity.plan_placement(
        spec,
        host_holdings(host),
        [instance_type_shape(instance.instance_type)],
        spot_bid=spot_bid,
        replacing=allocation.pk if allocation else None,
    )
    if placement is None:
        raise CapacityTaken(
            "The accelerators this instance used on its host have been rented by someone else. Your disk "
            "is kept: start again when they free up, or terminate it and order the same type elsewhere.",
            extra=selectors.offers_elsewhere(instance_type=instance.instance_type, exclude_host_id=host.pk),
        )
    for victim in placement.preempt:
        _preempt(
            victim,
            by="the reserving buyer starting again"
            if instance.pricing == Pricing.RESERVED
            else "higher-priority demand",
        )
    _reoccupy(host, instance, allocation, placement.claims[0], spot_bid=spot_bid)
    instance_transition(instance=instance, to=S.STARTING, reason="Start requested", actor=actor, actor_user=actor_user)
    _queue_command(instance, HostCommand.Kind.START, **_start_payload(instance))
    offers_refresh_for_host(host=host)
    return instance


@transaction.atomic
def instance_terminate(
    *, instance: Instance, actor_user: User | None = None, actor: str = Actor.BUYER, reason: str = "Terminate requested"
) -> Instance:
    """Terminate: release everything the instance holds on its host."""
    instance, host = _lock_instance_and_host(instance.pk)
    instance_transition(instance=instance, to=S.TERMINATING, reason=reason, actor=actor, actor_user=actor_user)
    reserved_cancellation_refund(instance=instance, at=timezone.now())
    Allocation.objects.active().filter(instance=instance).update(released_at=timezone.now())
    _queue_command(instance, HostCommand.Kind.TERMINATE, reason="terminate")
    spot_resume_for_host(host=host)
    offers_refresh_for_host(host=host)
    return instance


# Agent reports that finish a transition the platform started.
AGENT_REPORTS = {
    S.RUNNING: {S.PROVISIONING, S.STARTING},
    S.STOPPED: {S.STOPPING},
    S.TERMINATED: {S.TERMINATING},
    S.FAILED: {S.PROVISIONING, S.STARTING, S.RUNNING, S.STOPPING},
}


@transaction.atomic
def instance_agent_report(*, instance: Instance, status: str, reason: str = "") -> Instance:
    """The host agent reports where an instance is. Repeating the current status is harmless."""
    instance, host = _lock_instance_and_host(instance.pk)
    if status == instance.status:
        return instance
    if status not in AGENT_REPORTS or instance.status not in AGENT_REPORTS[status]:
        raise InvalidTransition(
            f"The agent cannot report {status} for an instance that is {instance.status}.",
            extra={"status": instance.status},
        )
    instance_transition(
        instance=instance, to=status, reason=reason or f"Host agent reports {status}", actor=Actor.AGENT
    )
    if status == S.FAILED:
        allocation = _active_allocation(instance)
        if allocation is not None:
            Allocation.objects.filter(pk=allocation.pk).update(kind=Allocation.Kind.DISK_ONLY)
        spot_resume_for_host(host=host)
        offers_refresh_for_host(host=host)
    return instance


# --- Spot resume and expiry -----------------------------------------------------------------


def spot_resume_for_host(*, host: Host) -> list[Instance]:
    """Resume preempted spot instances whose bid still stands, highest bid first, when capacity is
    free for them without preempting anyone. Precondition: the host row is locked."""
    resumed: list[Instance] = []
    waiting = (
        Instance.objects.select_for_update(of=("self",))
        .select_related("instance_type")
        .filter(host=host, status=S.PREEMPTED, pricing=Pricing.SPOT)
        .order_by("-price_per_hour", "created_at", "pk")
    )
    spec = host_capacity_spec(host)
    for instance in waiting:
        if not host_is_sellable(host):
            break
        figures = host_type_figures(host, instance.instance_type)
        floor = host.spot_floor_for(figures.price_per_hour)
        if instance.price_per_hour < floor:
            continue  # the supplier raised the floor above this bid
        allocation = _active_allocation(instance)
        placement = capacity.plan_placement(
            spec,
            host_holdings(host),
            [instance_type_shape(instance.instance_type)],
            spot_bid=instance.price_per_hour,
            replacing=allocation.pk if allocation else None,
        )
        if placement is None or placement.preempt:
            continue
        _reoccupy(host, instance, allocation, placement.claims[0], spot_bid=instance.price_per_hour)
        instance.preemption_deadline = None
        instance.save(update_fields=["preemption_deadline", "updated_at"])
        instance_transition(
            instance=instance,
            to=S.PROVISIONING,
            actor=Actor.PLATFORM,
            reason="Capacity freed while the bid stands: resuming",
        )
        _queue_command(instance, HostCommand.Kind.START, **_start_payload(instance))
        resumed.append(instance)
    return resumed


def spot_resume(*, batch_size: int = 100) -> int:
    """Beat: try to resume preempted spot instances, one short transaction per host."""
    host_ids = list(
        Instance.objects.filter(status=S.PREEMPTED, pricing=Pricing.SPOT)
        .values_list("host_id", flat=True)
        .distinct()
        .order_by("host_id")[:batch_size]
    )
    resumed = 0
    for host_id in host_ids:
        with transaction.atomic():
            host = _lock_hosts([host_id])[host_id]
            count = len(spot_resume_for_host(host=host))
            if count:
                offers_refresh_for_host(host=host)
            resumed += count
    return resumed


def instances_expire(*, batch_size: int = 200) -> int:
    """Beat: terminate instances past `terminate_after_hours` or the end of their reserved term."""
    now = timezone.now()
    due = list(
        Instance.objects.exclude(status__in=(S.TERMINATING, S.TERMINATED))
        .filter(Q(terminate_at__lte=now) | Q(reserved_until__lte=now))
        .values_list("pk", "terminate_at", "reserved_until")[:batch_size]
    )
    done = 0
    for pk, _terminate_at, reserved_until in due:
        reason = (
            "The reserved term ended" if reserved_until and reserved_until <= now else "terminate_after_hours reached"
        )
        try:
            instance_terminate(instance=Instance(pk=pk), actor=Actor.PLATFORM, reason=reason)
            done += 1
        except ApplicationError as error:  # raced with the buyer; nothing to do
            logger.info("instance %s not expired: %s", pk, error.detail)
    return done


# --- Buyer settings -------------------------------------------------------------------------


@transaction.atomic
def buyer_set_spend_limit(*, buyer: User, limit_per_hour: Decimal) -> User:
    if limit_per_hour is None or limit_per_hour < 0 or limit_per_hour > Decimal("1000000"):
        raise InvalidInput(
            "The limit is between 0 and 1,000,000 USD per hour.", fields={"spend_limit_per_hour": ["Out of range."]}
        )
    buyer = User.objects.select_for_update().get(pk=buyer.pk)
    buyer.spend_limit_per_hour = limit_per_hour.quantize(Decimal("0.01"))
    buyer.save(update_fields=["spend_limit_per_hour"])
    return buyer


# --- Price changes --------------------------------------------------------------------------


def current_price_for(instance: Instance) -> Decimal:
    """What this instance would cost if ordered on its host now (on-demand)."""
    return host_type_figures(instance.host, instance.instance_type).price_per_hour


@transaction.atomic
def instance_accept_current_price(*, instance: Instance, buyer: User) -> Instance:
    """A renter moves a running rental to the host's current price (from now on); until then
    running rentals keep the price they were ordered at."""
    from billing.services import meter_rate_change

    instance, _host = _lock_instance_and_host(instance.pk)
    if instance.buyer_id != buyer.pk:
        raise InvalidInput("Not your instance.", code="not_found")
    if instance.pricing != Pricing.ON_DEMAND:
        raise Conflict("Spot bids and reserved terms keep their agreed price.", code="price_fixed")
    new_price = current_price_for(instance)
    if new_price == instance.price_per_hour:
        raise Conflict("Your rental already has the current price.", code="price_unchanged")
    meter_rate_change(instance=instance, at=timezone.now())
    InstanceEvent.objects.create(
        instance=instance,
        kind=InstanceEvent.Kind.TRANSITION,
        from_status=instance.status,
        to_status=instance.status,
        reason=f"Price changed from ${instance.price_per_hour}/h to ${new_price}/h (accepted by the renter)",
        actor=Actor.BUYER,
        actor_user=buyer,
    )
    instance.price_per_hour = new_price
    instance.save(update_fields=["price_per_hour", "updated_at"])
    return instance


def renters_notify_price_change(*, host: Host) -> int:
    """Tell renters of on-demand instances on `host` about a new price they may accept."""
    from accounts.services import notify

    told = 0
    for instance in (
        Instance.objects.not_terminated()
        .filter(host=host, pricing=Pricing.ON_DEMAND)
        .select_related("buyer", "instance_type", "host")
    ):
        new_price = current_price_for(instance)
        if new_price != instance.price_per_hour:
            notify(
                user=instance.buyer,
                kind="price_change",
                title=f"New price for {instance.instance_type_id} on host {host.pk}: ${new_price:.4f}/h",
                body=f"i-{instance.pk} keeps ${instance.price_per_hour:.4f}/h until you accept the new price.",
            )
            told += 1
    return told
