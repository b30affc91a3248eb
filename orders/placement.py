"""Placing orders without overselling: choose hosts, lock them, re-check capacity and allocate.

Locks, in the global order (`accounts.locks`): the buyer row, the buyer's wallet, then the
candidate host rows in id order, then instance rows. Allocation rows are only written while their
host row is locked, and each host's offers are recomputed in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import cast

from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.locks import user_lock
from accounts.models import Notification, User
from accounts.services import notify, ssh_keys_authorized
from billing.errors import InsufficientFunds
from billing.ledger import lock_wallet
from billing.models import LedgerAccount
from billing.reserved import reserved_prepay
from marketplace import capacity
from marketplace.currency import money_text, price_text
from marketplace.errors import Conflict, Forbidden
from marketplace.models import InstanceType, Offer
from marketplace.money import quantize_price
from suppliers.locks import hosts_lock
from suppliers.models import Host
from suppliers.offers import host_capacity_spec, instance_type_shape, offers_refresh_for_hosts

from .candidates import (
    MAX_LOCKED_CANDIDATE_HOSTS,
    HostCandidate,
    active_holdings,
    candidate_hosts,
    candidates_on_hosts,
    order_candidates,
    order_types,
    prefiltered_host_rooms,
    rank_candidates,
)
from .errors import OrderErrorCode
from .locks import instance_lock
from .metering import accrual_kind
from .models import Allocation, HostCommand, Instance, InstanceEvent, Order, Pricing
from .ports import ports_assign
from .quotes import instance_price_for, insufficient_capacity, line_minimum_hours, order_plan
from .requests import OrderRequest, OrderTarget, order_target_resolve
from .selectors import buyer_live_rates
from .state import Actor, S, command_queue, instance_transition, preemption_grace_seconds, start_payload


def reoccupy(
    host: Host,
    instance: Instance,
    allocation: Allocation | None,
    claim: capacity.Resources,
    *,
    spot_bid: Decimal | None,
) -> None:
    """An instance runs again: its kept allocation (if any) holds the full claim once more."""
    if allocation is None:
        _allocate(host, instance, claim, spot_bid=spot_bid)
        return
    Allocation.objects.filter(pk=allocation.pk).update(
        kind=Allocation.Kind.RUNNING,
        spot_bid=spot_bid,
        accelerators=claim["accelerators"],
        vcpus=claim["vcpus"],
        ram_gb=claim["ram_gb"],
        disk_gb=claim["disk_gb"],
    )


def _spend_guard(buyer: User, adding_per_hour: Decimal, *, current: Decimal) -> None:
    """Refuse what would take the buyer's live instances (`current` per hour) over their hourly
    ceiling. Precondition: the buyer row is locked, so concurrent orders by one buyer are serialized.
    """
    if current + adding_per_hour > buyer.spend_limit_per_hour:
        raise Conflict(
            _(
                "This order adds %(adding)s/h to %(current)s/h already running, over your limit of %(limit)s/h. "
                "Raise the limit or stop something first."
            )
            % {
                "adding": price_text(adding_per_hour),
                "current": price_text(current),
                "limit": price_text(buyer.spend_limit_per_hour),
            },
            code=OrderErrorCode.SPEND_LIMIT_EXCEEDED,
            extra={
                "limit_per_hour": str(buyer.spend_limit_per_hour),
                "current_per_hour": str(current),
                "order_per_hour": str(adding_per_hour),
            },
        )


def funds_guard(
    *,
    wallet: LedgerAccount,
    burn: Decimal,
    adding_per_hour: Decimal,
    upfront: Decimal = Decimal(0),
    minimum: Decimal = Decimal(0),
) -> None:
    """Nothing runs on credit: the wallet must cover any upfront charge plus one hour of
    everything the buyer would then run (`burn` now, per hour), and the new rentals' minimum
    charge where that is more than their hour. Precondition: `wallet` is the buyer's wallet row as
    `lock_wallet` returned it (locked, so its stored balance is current)."""
    balance = wallet.balance
    needed = upfront + burn + max(adding_per_hour, minimum)
    if balance < needed:
        if upfront:
            message = _(
                "Your balance is %(balance)s; this order needs %(needed)s (one hour of everything running plus "
                "the reserved term). Top up first."
            )
        elif minimum:
            message = _(
                "Your balance is %(balance)s; this order needs %(needed)s (one hour of everything running plus "
                "the hosts' minimum rental). Top up first."
            )
        else:
            message = _(
                "Your balance is %(balance)s; this order needs %(needed)s (one hour of everything running). "
                "Top up first."
            )
        raise InsufficientFunds(
            message % {"balance": money_text(balance), "needed": money_text(needed)},
            extra={"balance": str(balance), "needed": str(needed)},
        )


def preemption_notify(*, instance: Instance) -> Notification | None:
    """Tell the buyer that their spot instance was preempted and when it is shut down (in-app, and
    by email after commit). Once per preemption: a repeated step sends nothing."""
    preemptions = InstanceEvent.objects.filter(instance=instance, to_status=S.PREEMPTED).count()
    deadline = instance.preemption_deadline
    shut_down = (
        _("It is shut down at %(when)s UTC (save your work before then).") % {"when": f"{deadline:%Y-%m-%d %H:%M:%S}"}
        if deadline
        else _("It is shut down now.")
    )
    return notify(
        user=instance.buyer,
        kind="spot_preempted",
        title=_("Spot instance i-%(id)s preempted") % {"id": instance.pk},
        body=_(
            "Higher-priority demand needs the capacity of your spot instance i-%(id)s. %(shut_down)s Its disk is "
            "kept, and it resumes by itself when capacity frees while your bid stands; storage is billed meanwhile."
        )
        % {"id": instance.pk, "shut_down": shut_down},
        dedupe_key=f"spot-preempted:{instance.pk}:{preemptions}",
        link=reverse("orders:instance_detail", args=[instance.pk]),
    )


def preempt(holding: capacity.Holding, *, by: str) -> None:
    """Turn a running spot allocation into a kept disk and notify its instance (lock held on host)."""
    allocation = Allocation.objects.select_related("instance").get(pk=cast(int, holding.key))
    Allocation.objects.filter(pk=allocation.pk).update(kind=Allocation.Kind.DISK_ONLY)
    instance = instance_lock(instance_id=cast(int, allocation.instance_id))  # a running allocation has one
    grace = preemption_grace_seconds()
    instance.preemption_deadline = timezone.now() + timedelta(seconds=grace)
    instance.save(update_fields=["preemption_deadline", "updated_at"])
    instance_transition(
        instance=instance,
        to=S.PREEMPTED,
        actor=Actor.PLATFORM,
        reason=f"Preempted by {by}; {grace} s to shut down. The disk is kept; it resumes when capacity frees.",
    )
    command_queue(instance, HostCommand.Kind.STOP, grace_seconds=grace, reason="preempted")
    preemption_notify(instance=instance)


def _allocation_row(
    host: Host, instance: Instance, claim: capacity.Resources, *, spot_bid: Decimal | None
) -> Allocation:
    """The running allocation of `claim` for an instance on a host (not saved)."""
    return Allocation(
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


def _allocate(host: Host, instance: Instance, claim: capacity.Resources, *, spot_bid: Decimal | None) -> Allocation:
    allocation = _allocation_row(host, instance, claim, spot_bid=spot_bid)
    allocation.save(force_insert=True)
    return allocation


LOCK_MARGIN_HOSTS = 3  # beyond what the estimate needs: capacity may go while we wait for the locks


def hosts_to_lock(target: OrderTarget, rooms: list[tuple[int, int]]) -> list[int]:
    """The first hosts of `rooms` (host id, how many it has room for by the unlocked estimate, best
    first) that have room for the order (hosts without room are skipped: locking them could only
    refuse the order), enough to cover its count plus a small margin, at most
    MAX_LOCKED_CANDIDATE_HOSTS."""
    needed = 1 if target.same_host else target.count
    host_ids: list[int] = []
    covered = 0
    margin = 0
    for host_id, room in rooms:
        if room <= 0 or (target.same_host and room < target.count) or host_id in host_ids:
            continue
        host_ids.append(host_id)
        if covered >= needed:
            margin += 1
        covered += 1 if target.same_host else room
        if margin >= LOCK_MARGIN_HOSTS or len(host_ids) >= MAX_LOCKED_CANDIDATE_HOSTS:
            break
    return host_ids


def _estimated_rooms(target: OrderTarget, types: list[InstanceType]) -> list[tuple[int, int]]:
    """Hosts with the room each has for the order, best first, without locks: from the offers
    table where it stands for the candidates, else from the candidate maths on every sellable host."""
    rooms = prefiltered_host_rooms(target)
    if rooms is not None:
        return rooms
    ranked = rank_candidates(target, order_candidates(target, types=types))
    return [(hc.host.pk, hc.candidate.available) for hc in ranked]


@transaction.atomic
def order_place(*, buyer: User, request: OrderRequest, placed_by: User | None = None) -> Order:
    """Place an order: choose hosts, lock them, re-check and allocate, create instances.

    Locks: the buyer row (spend guard), then candidate host rows in id order. If capacity vanished
    on a ranked host, the next candidate is used; if none is left, InsufficientCapacity (409) and
    nothing is written.
    """
    target = order_target_resolve(request, buyer=buyer)
    buyer = user_lock(user_id=buyer.pk)
    if buyer.suspended_at:
        raise Forbidden(
            _("Your account is suspended: %(reason)s") % {"reason": buyer.suspension_reason},
            code=OrderErrorCode.ACCOUNT_SUSPENDED,
        )
    wallet = lock_wallet(buyer)  # lock order: buyer, wallet, hosts, instances
    authorized_keys = ssh_keys_authorized(user=buyer, key_ids=request.ssh_keys)

    types = order_types(target)
    host_ids = hosts_to_lock(target, _estimated_rooms(target, types))
    if not host_ids:
        raise insufficient_capacity(target, [])
    # Lock those still sellable on the order's terms (id order), then re-read what each can take now.
    locked = hosts_lock(candidate_hosts(target, host_ids=host_ids))
    hosts = {host.pk: host for host in locked}
    holdings = active_holdings(list(hosts))
    ranked, plan = order_plan(target, candidates_on_hosts(target, locked, holdings, types))
    if not plan:
        raise insufficient_capacity(target, ranked)

    total_per_hour = sum((instance_price_for(target, hc) * n for hc, n in plan), Decimal(0))
    live = buyer_live_rates(user=buyer)
    _spend_guard(buyer, total_per_hour, current=live.total)
    upfront = (
        quantize_price(total_per_hour * cast(int, target.term_hours))
        if target.pricing == Pricing.RESERVED
        else Decimal(0)
    )
    minimum_charge = sum(
        (instance_price_for(target, hc) * n * line_minimum_hours(target, hc) for hc, n in plan), Decimal(0)
    )
    funds_guard(
        wallet=wallet,
        burn=live.burn,
        adding_per_hour=Decimal(0) if upfront else total_per_hour,
        upfront=upfront,
        minimum=Decimal(0) if upfront else quantize_price(minimum_charge),  # a prepaid term covers it
    )

    now = timezone.now()
    first_type = plan[0][0].instance_type
    order = Order.objects.create(
        buyer=buyer,
        placed_by=placed_by if placed_by is not None and not placed_by.is_team else None,
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
        image=target.launch.image,
        command=target.launch.command,
        ports=list(target.launch.ports),
        environment=target.launch.environment,
        disk_gb=target.launch.disk_gb,
        template=target.launch.template,
        terminate_after_hours=request.terminate_after_hours,
        total_price_per_hour=quantize_price(total_per_hour),
    )
    placed = _claims_place(target, plan, hosts, holdings, ranked)
    _instances_create(order, target, request, placed, authorized_keys=authorized_keys, now=now)
    touched_ids = {p.host.pk for p in placed}
    touched = [host for host in locked if host.pk in touched_ids]
    offers_refresh_for_hosts(
        hosts=touched,
        holdings=holdings,
        next_maintenance={host.pk: host.next_maintenance_at for host in touched},  # type: ignore[attr-defined]
    )
    if upfront:
        reserved_prepay(
            buyer=buyer, order_id=order.pk, count=order.count, term_hours=order.term_hours or 0, amount=upfront
        )
    return order


@dataclass(frozen=True)
class PlacedClaim:
    """One instance of an order as placement decided it: where, of which type, what it claims."""

    host: Host
    candidate: HostCandidate
    claim: capacity.Resources
    minimum_hours: int
    backfilled_allocation_id: int | None  # the idle reserved allocation a spot claim runs on


def _claims_place(
    target: OrderTarget,
    plan: list[tuple[HostCandidate, int]],
    hosts: dict[int, Host],
    holdings: dict[int, list[capacity.Holding]],
    ranked: list[HostCandidate],
) -> list[PlacedClaim]:
    """Each plan line's claims on its locked host, preempting spot where the order outranks it.
    The new claims join `holdings` (with provisional keys) so a later line on the same host and the
    offers refresh see them."""
    placed: list[PlacedClaim] = []
    for hc, n in plan:
        host = hosts[hc.host.pk]
        spec = host_capacity_spec(host)
        shape = instance_type_shape(hc.instance_type, disk_gb=target.disk_gb_for(hc.instance_type))
        placement = capacity.plan_placement(spec, holdings[host.pk], [shape] * n, spot_bid=target.spot_bid)
        if placement is None:  # cannot happen: `available` came from the same holdings
            raise insufficient_capacity(target, ranked)
        for victim in placement.preempt:
            preempt(victim, by=f"a {target.pricing.replace('_', '-')} order")
        minimum_hours = line_minimum_hours(target, hc)
        for claim in placement.claims:
            backfilled = None
            if target.pricing == Pricing.SPOT:  # on idle reserved capacity: its revenue goes to the reserving buyer
                backfilled = capacity.backfilled_holding(spec, holdings[host.pk], claim)
            placed.append(
                PlacedClaim(host, hc, claim, minimum_hours, None if backfilled is None else cast(int, backfilled.key))
            )
            holdings[host.pk].append(capacity.Holding(key=f"new:{len(placed)}", claim=claim, spot_bid=target.spot_bid))
    return placed


def _instances_create(
    order: Order,
    target: OrderTarget,
    request: OrderRequest,
    placed: list[PlacedClaim],
    *,
    authorized_keys: str,
    now: datetime,
) -> list[Instance]:
    """The order's instances, placed and waiting for their host agents: instance rows, their two
    first events (requested, provisioning), allocations, ports and start commands, each kind of row
    written in one statement whatever the count."""
    backfilled = [p.backfilled_allocation_id for p in placed if p.backfilled_allocation_id]
    # The reserved instance each backfilled allocation belongs to (spot orders on idle reserved capacity).
    reserved = dict(Allocation.objects.filter(pk__in=backfilled).values_list("pk", "instance_id")) if backfilled else {}
    instances: list[Instance] = []
    for p in placed:
        hc = p.candidate
        instance = Instance(
            order=order,
            buyer=order.buyer,
            host=p.host,
            instance_type=hc.instance_type,
            pricing=target.pricing,
            price_per_hour=instance_price_for(target, hc),
            status=S.PROVISIONING,
            image=order.image,
            command=order.command,
            authorized_keys=authorized_keys,
            disk_gb=target.disk_gb_for(hc.instance_type),
            terminate_at=now + timedelta(hours=request.terminate_after_hours)
            if request.terminate_after_hours
            else None,
            reserved_until=now + timedelta(hours=target.term_hours) if target.term_hours else None,
            minimum_billed_until=now + timedelta(hours=p.minimum_hours) if p.minimum_hours else None,
            storage_price_per_gb_month=p.host.storage_price_per_gb_month,
            backfills_id=reserved.get(p.backfilled_allocation_id) if p.backfilled_allocation_id else None,
            created_at=now,
        )
        instance.metered_until = now if accrual_kind(instance) is not None else None
        instances.append(instance)
    Instance.objects.bulk_create(instances)
    events: list[InstanceEvent] = []
    for instance, p in zip(instances, placed, strict=True):
        events.append(
            InstanceEvent(
                instance=instance,
                from_status="",
                to_status=S.REQUESTED,
                reason=_("Ordered"),
                actor=Actor.BUYER,
                actor_user=order.buyer,
                created_at=now,
            )
        )
        events.append(
            InstanceEvent(
                instance=instance,
                from_status=S.REQUESTED,
                to_status=S.PROVISIONING,
                reason=_("Placed on host %(host)d (%(region)s); waiting for the host agent")
                % {"host": p.host.pk, "region": p.host.region.code},
                actor=Actor.PLATFORM,
                created_at=now,
            )
        )
    InstanceEvent.objects.bulk_create(events)
    Allocation.objects.bulk_create(
        _allocation_row(p.host, instance, p.claim, spot_bid=target.spot_bid)
        for instance, p in zip(instances, placed, strict=True)
    )
    port_maps: dict[int, dict[str, int]] = {}
    by_host: dict[int, list[Instance]] = {}
    for instance in instances:
        by_host.setdefault(instance.host_id, []).append(instance)
    for host_instances in by_host.values():
        port_maps.update(
            ports_assign(host=host_instances[0].host, instances=host_instances, container_ports=list(target.ports))
        )
    HostCommand.objects.bulk_create(
        HostCommand(
            host_id=instance.host_id,
            instance=instance,
            kind=HostCommand.Kind.START,
            payload=start_payload(instance, ports=port_maps[instance.pk]),
        )
        for instance in instances
    )
    return instances


def active_allocation(instance: Instance) -> Allocation | None:
    return Allocation.objects.active().filter(instance=instance).first()
