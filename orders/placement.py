"""Placing orders without overselling: choose hosts, lock them, re-check capacity and allocate.

Locks, in the global order (`accounts.locks`): the buyer row, the buyer's wallet, then the
candidate host rows in id order, then instance rows. Allocation rows are only written while their
host row is locked, and each host's offers are recomputed in the same transaction.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import cast

from django.db import transaction
from django.utils import timezone

from accounts.locks import user_lock
from accounts.models import Notification, User
from accounts.services import notify, ssh_keys_authorized
from billing.errors import InsufficientFunds
from billing.ledger import lock_wallet
from billing.reserved import reserved_prepay
from billing.selectors import wallet_balance
from marketplace import capacity
from marketplace.errors import Conflict, Forbidden
from marketplace.models import Offer
from marketplace.money import quantize_price
from suppliers.locks import hosts_lock_by_id
from suppliers.models import Host
from suppliers.offers import host_capacity_spec, instance_type_shape, offers_refresh_for_host

from .candidates import (
    MAX_LOCKED_CANDIDATE_HOSTS,
    HostCandidate,
    order_candidates,
    prefiltered_host_ids,
    rank_candidates,
)
from .errors import OrderErrorCode
from .locks import instance_lock
from .models import Allocation, HostCommand, Instance, InstanceEvent, Order, Pricing
from .ports import ports_assign
from .quotes import instance_price_for, insufficient_capacity, line_minimum_hours, order_plan
from .requests import OrderRequest, OrderTarget, order_target_resolve
from .selectors import buyer_burn_per_hour
from .state import Actor, S, command_queue, instance_transition, preemption_grace_seconds, start_payload


def _record_backfill(
    instance: Instance, host: Host, holdings: list[capacity.Holding], claim: capacity.Resources
) -> None:
    """A spot instance placed on idle reserved capacity: its revenue goes to the reserving buyer."""
    holding = capacity.backfilled_holding(host_capacity_spec(host), holdings, claim)
    if holding is not None:
        reserved_id = Allocation.objects.filter(pk=cast(int, holding.key)).values_list("instance_id", flat=True).first()
        Instance.objects.filter(pk=instance.pk).update(backfills_id=reserved_id)
        instance.backfills_id = reserved_id


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
            code=OrderErrorCode.SPEND_LIMIT_EXCEEDED,
            extra={
                "limit_per_hour": str(buyer.spend_limit_per_hour),
                "current_per_hour": str(current),
                "order_per_hour": str(adding_per_hour),
            },
        )


def funds_guard(
    *, buyer: User, adding_per_hour: Decimal, upfront: Decimal = Decimal(0), minimum: Decimal = Decimal(0)
) -> None:
    """Nothing runs on credit: the wallet must cover any upfront charge plus one hour of
    everything the buyer would then run, and the new rentals' minimum charge where that is more
    than their hour. Precondition: the wallet row is locked (`lock_wallet`)."""
    balance = wallet_balance(buyer)
    burn = buyer_burn_per_hour(user=buyer)
    needed = upfront + burn + max(adding_per_hour, minimum)
    if balance < needed:
        also = " plus the reserved term" if upfront else " plus the hosts' minimum rental" if minimum else ""
        raise InsufficientFunds(
            f"Your balance is ${balance:.2f}; this order needs ${needed:.2f} (one hour of everything running"
            f"{also}). Top up first.",
            extra={"balance": str(balance), "needed": str(needed)},
        )


def preemption_notify(*, instance: Instance) -> Notification | None:
    """Tell the buyer that their spot instance was preempted and when it is shut down (in-app, and
    by email after commit). Once per preemption: a repeated step sends nothing."""
    preemptions = InstanceEvent.objects.filter(instance=instance, to_status=S.PREEMPTED).count()
    deadline = instance.preemption_deadline
    when = f"{deadline:%Y-%m-%d %H:%M:%S} UTC" if deadline else "now"
    return notify(
        user=instance.buyer,
        kind="spot_preempted",
        title=f"Spot instance i-{instance.pk} preempted",
        body=(
            f"Higher-priority demand needs the capacity of your spot instance i-{instance.pk}. It is shut down at "
            f"{when} (save your work before then). Its disk is kept, and it resumes by itself when capacity "
            "frees while your bid stands; storage is billed meanwhile."
        ),
        dedupe_key=f"spot-preempted:{instance.pk}:{preemptions}",
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


def _allocate(host: Host, instance: Instance, claim: capacity.Resources, *, spot_bid: Decimal | None) -> Allocation:
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


LOCK_MARGIN_HOSTS = 3  # beyond what the estimate needs: capacity may go while we wait for the locks


def hosts_to_lock(target: OrderTarget, ranked: list[HostCandidate]) -> list[int]:
    """The cheapest hosts that, by the unlocked estimate, have room for the order (hosts without
    room are skipped: locking them could only refuse the order), enough to cover its count plus a
    small margin, at most MAX_LOCKED_CANDIDATE_HOSTS."""
    needed = 1 if target.same_host else target.count
    host_ids: list[int] = []
    covered = 0
    margin = 0
    for hc in ranked:
        room = hc.candidate.available
        if room <= 0 or (target.same_host and room < target.count) or hc.host.pk in host_ids:
            continue
        host_ids.append(hc.host.pk)
        if covered >= needed:
            margin += 1
        covered += 1 if target.same_host else room
        if margin >= LOCK_MARGIN_HOSTS or len(host_ids) >= MAX_LOCKED_CANDIDATE_HOSTS:
            break
    return host_ids


@transaction.atomic
def order_place(*, buyer: User, request: OrderRequest) -> Order:
    """Place an order: choose hosts, lock them, re-check and allocate, create instances.

    Locks: the buyer row (spend guard), then candidate host rows in id order. If capacity vanished
    on a ranked host, the next candidate is used; if none is left, InsufficientCapacity (409) and
    nothing is written.
    """
    target = order_target_resolve(request, buyer=buyer)
    buyer = user_lock(user_id=buyer.pk)
    if buyer.suspended_at:
        raise Forbidden(f"Your account is suspended: {buyer.suspension_reason}", code=OrderErrorCode.ACCOUNT_SUSPENDED)
    lock_wallet(buyer)  # lock order: buyer, wallet, hosts, instances
    authorized_keys = ssh_keys_authorized(user=buyer, key_ids=request.ssh_keys)

    estimate = order_candidates(target, host_ids=prefiltered_host_ids(target))
    host_ids = hosts_to_lock(target, rank_candidates(target, estimate))
    if not host_ids:
        raise insufficient_capacity(target, [])
    hosts = hosts_lock_by_id(host_ids)
    holdings: dict[int, list[capacity.Holding]] = {host_id: [] for host_id in hosts}
    for allocation in Allocation.objects.active().filter(host_id__in=list(hosts)).order_by("pk"):
        holdings[allocation.host_id].append(allocation.as_holding())  # one query for all locked hosts
    # Re-read under the locks: what each host can take now.
    candidates = order_candidates(target, host_ids=list(hosts), holdings=holdings)
    ranked, plan = order_plan(target, candidates)
    if not plan:
        raise insufficient_capacity(target, ranked)

    total_per_hour = sum((instance_price_for(target, hc) * n for hc, n in plan), Decimal(0))
    _spend_guard(buyer, total_per_hour)
    upfront = (
        quantize_price(total_per_hour * cast(int, target.term_hours))
        if target.pricing == Pricing.RESERVED
        else Decimal(0)
    )
    minimum_charge = sum(
        (instance_price_for(target, hc) * n * line_minimum_hours(target, hc) for hc, n in plan), Decimal(0)
    )
    funds_guard(
        buyer=buyer,
        adding_per_hour=Decimal(0) if upfront else total_per_hour,
        upfront=upfront,
        minimum=Decimal(0) if upfront else quantize_price(minimum_charge),  # a prepaid term covers it
    )

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
        image=target.launch.image,
        command=target.launch.command,
        ports=list(target.launch.ports),
        environment=target.launch.environment,
        disk_gb=target.launch.disk_gb,
        template=target.launch.template,
        terminate_after_hours=request.terminate_after_hours,
        total_price_per_hour=quantize_price(total_per_hour),
    )
    for hc, n in plan:
        host = hosts[hc.host.pk]
        spec = host_capacity_spec(host)
        shape = instance_type_shape(hc.instance_type, disk_gb=target.disk_gb_for(hc.instance_type))
        placement = capacity.plan_placement(spec, holdings[host.pk], [shape] * n, spot_bid=target.spot_bid)
        minimum_hours = line_minimum_hours(target, hc)
        if placement is None:  # cannot happen: `available` came from the same holdings
            raise insufficient_capacity(target, ranked)
        for victim in placement.preempt:
            preempt(victim, by=f"a {target.pricing.replace('_', '-')} order")
        for claim in placement.claims:
            instance = Instance.objects.create(
                order=order,
                buyer=buyer,
                host=host,
                instance_type=hc.instance_type,
                pricing=target.pricing,
                price_per_hour=instance_price_for(target, hc),
                image=order.image,
                command=order.command,
                authorized_keys=authorized_keys,
                disk_gb=target.disk_gb_for(hc.instance_type),
                terminate_at=now + timedelta(hours=request.terminate_after_hours)
                if request.terminate_after_hours
                else None,
                reserved_until=now + timedelta(hours=target.term_hours) if target.term_hours else None,
                minimum_billed_until=now + timedelta(hours=minimum_hours) if minimum_hours else None,
                storage_price_per_gb_month=host.storage_price_per_gb_month,
                created_at=now,
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
            ports_assign(host=host, instance=instance, container_ports=list(target.ports))
            holdings[host.pk].append(allocation.as_holding())
            instance_transition(
                instance=instance,
                to=S.PROVISIONING,
                actor=Actor.PLATFORM,
                reason=f"Placed on host {host.pk} ({host.region.code}); waiting for the host agent",
            )
            command_queue(instance, HostCommand.Kind.START, **start_payload(instance))
        offers_refresh_for_host(host=host, holdings=holdings[host.pk])
    if upfront:
        reserved_prepay(
            buyer=buyer, order_id=order.pk, count=order.count, term_hours=order.term_hours or 0, amount=upfront
        )
    return order


def active_allocation(instance: Instance) -> Allocation | None:
    return Allocation.objects.active().filter(instance=instance).first()
