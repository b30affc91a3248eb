"""Instance lifecycle actions: stop, start, terminate, and expiry at the end of a term."""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import cast

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from billing.models import UsageRecord
from billing.reserved import reserved_cancellation_refund
from marketplace import capacity
from marketplace.audit import audit_record
from marketplace.errors import ApplicationError, Conflict, Forbidden
from marketplace.money import quantize_price
from marketplace.walks import Walk, walk_from
from suppliers.models import Host
from suppliers.offers import host_capacity_spec, host_holdings, instance_type_shape, offers_refresh_for_host

from .errors import CapacityTaken, OrderErrorCode
from .locks import instance_and_host_lock
from .metering import usage_record_for_window
from .models import Allocation, HostCommand, Instance, Pricing
from .placement import active_allocation, preempt, reoccupy
from .ports import ports_release
from .selectors import offers_elsewhere
from .spot import spot_resume_for_host
from .state import (
    Actor,
    S,
    command_queue,
    instance_transition,
    invalid_transition,
    preemption_grace_seconds,
    start_payload,
    status_name,
)

logger = logging.getLogger(__name__)


def _actor_of(instance: Instance, actor: str, actor_user: User | None, action: str) -> str:
    """Staff acting on someone else's instance act as staff, whatever the way in (page, API,
    admin), and every such action is audited. Precondition: the instance row is locked."""
    if actor_user is not None and actor_user.is_staff and actor_user.pk != instance.buyer_id:
        actor = Actor.STAFF
    if actor == Actor.STAFF:
        audit_record(action=f"instance.{action}", obj=instance, actor=actor_user, before={"status": instance.status})
    return actor


@transaction.atomic
def instance_stop(*, instance: Instance, actor_user: User | None = None, actor: str = Actor.BUYER) -> Instance:
    """Stop: compute goes back to the market, the disk stays on the host.

    Reserved instances keep their whole claim (idle capacity is backfilled with spot)."""
    instance, host = instance_and_host_lock(instance_id=instance.pk)
    actor = _actor_of(instance, actor, actor_user, "stop")
    instance_transition(instance=instance, to=S.STOPPING, reason="Stop requested", actor=actor, actor_user=actor_user)
    allocation = active_allocation(instance)
    if allocation is not None:
        kind = Allocation.Kind.RESERVED_IDLE if instance.pricing == Pricing.RESERVED else Allocation.Kind.DISK_ONLY
        Allocation.objects.filter(pk=allocation.pk).update(kind=kind)
    command_queue(instance, HostCommand.Kind.STOP, grace_seconds=preemption_grace_seconds(), reason="stop")
    spot_resume_for_host(host=host)
    offers_refresh_for_host(host=host)
    return instance


@transaction.atomic
def instance_start(
    *, instance: Instance, actor_user: User | None = None, actor: str = Actor.BUYER, accelerators: bool = True
) -> Instance:
    """Start a stopped instance on the same host (its disk is there).

    Reserved instances reclaim their capacity at once, preempting spot backfill. Others need free
    capacity, else CapacityTaken (409) says how to get the type elsewhere. `accelerators=False` is
    no-GPU mode (`_start_without_accelerators`); starting with them again needs them free."""
    instance, host = instance_and_host_lock(instance_id=instance.pk)
    actor = _actor_of(instance, actor, actor_user, "start")
    if instance.buyer.suspended_at and actor != Actor.STAFF:
        # Staff stopped a suspended buyer's instances; only staff undo that (reinstating the buyer).
        raise Forbidden(
            _("Your account is suspended: %(reason)s") % {"reason": instance.buyer.suspension_reason},
            code=OrderErrorCode.ACCOUNT_SUSPENDED,
        )
    if instance.status != S.STOPPED:
        raise invalid_transition(
            instance, _("An instance that is %(status)s cannot be started.") % {"status": status_name(instance.status)}
        )
    allocation = active_allocation(instance)
    if not accelerators:
        _start_without_accelerators(instance, host, allocation)
    else:
        _start_with_accelerators(instance, host, allocation)
    instance_transition(instance=instance, to=S.STARTING, reason="Start requested", actor=actor, actor_user=actor_user)
    command_queue(instance, HostCommand.Kind.START, **start_payload(instance))
    offers_refresh_for_host(host=host)
    return instance


def _start_with_accelerators(instance: Instance, host: Host, allocation: Allocation | None) -> None:
    spec = host_capacity_spec(host)
    bid = instance.accelerated_price_per_hour if instance.without_accelerators else instance.price_per_hour
    spot_bid = bid if instance.is_spot else None
    placement = capacity.plan_placement(
        spec,
        host_holdings(host),
        [instance_type_shape(instance.instance_type, disk_gb=instance.disk_gb)],
        spot_bid=spot_bid,
        replacing=allocation.pk if allocation else None,
    )
    if placement is None:
        raise CapacityTaken(
            _(
                "The accelerators this instance used on its host have been rented by someone else. Your disk "
                "is kept: start again when they free up, start it without accelerators (no-GPU mode), or "
                "terminate it and order the same type elsewhere."
            ),
            extra=offers_elsewhere(instance_type=instance.instance_type, exclude_host_id=host.pk),
        )
    for victim in placement.preempt:
        preempt(
            victim,
            by="the reserving buyer starting again"
            if instance.pricing == Pricing.RESERVED
            else "higher-priority demand",
        )
    reoccupy(host, instance, allocation, placement.claims[0], spot_bid=spot_bid)
    if instance.without_accelerators:  # back to the rental's own price
        instance.price_per_hour = cast(Decimal, instance.accelerated_price_per_hour)
        instance.without_accelerators, instance.accelerated_price_per_hour = False, None
        instance.save(update_fields=["price_per_hour", "without_accelerators", "accelerated_price_per_hour"])


def _start_without_accelerators(instance: Instance, host: Host, allocation: Allocation | None) -> None:
    """No-GPU mode: the instance runs on a little CPU and RAM with its disk, billed at the host's
    no-GPU rate, while its accelerators stay on the market. Not for reserved rentals (their
    accelerators are paid for) nor CPU-only types (there is nothing to leave)."""
    if instance.pricing == Pricing.RESERVED or not instance.instance_type.accelerator_count:
        raise Conflict(
            _("Only on-demand and spot instances with accelerators can start without them."),
            code=OrderErrorCode.NO_ACCELERATOR_MODE_UNAVAILABLE,
        )
    claim = no_accelerator_claim(instance)
    if not capacity.fits_exact_claim(
        host_capacity_spec(host), host_holdings(host), claim, replacing=allocation.pk if allocation else None
    ):
        raise CapacityTaken(
            _("The host has no CPU or RAM free for this instance, even without accelerators; start later."),
            extra=offers_elsewhere(instance_type=instance.instance_type, exclude_host_id=host.pk),
        )
    if allocation is None:
        allocation = Allocation.objects.create(
            host=host,
            instance=instance,
            instance_type=instance.instance_type,
            accelerators=0,
            vcpus=0,
            ram_gb=0,
            disk_gb=instance.disk_gb,
        )
    Allocation.objects.filter(pk=allocation.pk).update(
        kind=Allocation.Kind.RUNNING,
        spot_bid=None,
        accelerators=0,
        vcpus=claim["vcpus"],
        ram_gb=claim["ram_gb"],
        disk_gb=claim["disk_gb"],
    )
    if not instance.without_accelerators:
        instance.accelerated_price_per_hour = instance.price_per_hour
    instance.without_accelerators = True
    instance.price_per_hour = quantize_price(host.no_accelerator_price_per_vcpu_hour * claim["vcpus"])
    instance.save(update_fields=["price_per_hour", "without_accelerators", "accelerated_price_per_hour"])


def no_accelerator_claim(instance: Instance) -> capacity.Resources:
    t = instance.instance_type
    return capacity.Resources.of(
        vcpus=min(t.vcpus, settings.NO_ACCELERATOR_MODE_VCPUS),
        ram_gb=min(t.ram_gb, settings.NO_ACCELERATOR_MODE_RAM_GB),
        disk_gb=instance.disk_gb,
    )


# Statuses an instance has run in: ending it from one of these is ending a rental that started.
HAS_RUN = frozenset({S.RUNNING, S.STOPPING, S.STOPPED, S.STARTING})


def _minimum_rental_charge(instance: Instance, *, ended_from: str, actor: str, at: datetime) -> datetime:
    """A buyer who ends a started rental before the host's minimum is billed compute up to it: the
    rest is written as one usage record from `at` (settled like any other; reserved from the
    prepaid term). Returns from when the rental is no longer billed. The platform or staff ending an
    instance, or one that never ran, owe no minimum. Precondition: the instance row is locked and its
    metering window was closed at the transition."""
    until = instance.minimum_billed_until
    if actor != Actor.BUYER or ended_from not in HAS_RUN or until is None or until <= at:
        return at
    record = usage_record_for_window(instance, UsageRecord.Kind.COMPUTE, at, until)
    if record is not None:
        UsageRecord.objects.bulk_create([record], ignore_conflicts=True)
    return until


@transaction.atomic
def instance_terminate(
    *, instance: Instance, actor_user: User | None = None, actor: str = Actor.BUYER, reason: str = "Terminate requested"
) -> Instance:
    """Terminate: release everything the instance holds on its host. A buyer ending a rental before
    the host's minimum is billed up to it (a reserved term is refunded only past the minimum)."""
    instance, host = instance_and_host_lock(instance_id=instance.pk)
    actor = _actor_of(instance, actor, actor_user, "terminate")
    ended_from = instance.status
    instance_transition(instance=instance, to=S.TERMINATING, reason=reason, actor=actor, actor_user=actor_user)
    now = timezone.now()
    billed_until = _minimum_rental_charge(instance, ended_from=ended_from, actor=actor, at=now)
    if instance.pricing == Pricing.RESERVED and instance.reserved_until:
        reserved_cancellation_refund(
            buyer=instance.buyer,
            instance_id=instance.pk,
            reserved_until=instance.reserved_until,
            price_per_hour=instance.price_per_hour,
            at=billed_until,
        )
    Allocation.objects.active().filter(instance=instance).update(released_at=now)
    ports_release([instance.pk])
    command_queue(instance, HostCommand.Kind.TERMINATE, reason="terminate")
    spot_resume_for_host(host=host)
    offers_refresh_for_host(host=host)
    return instance


def instances_expire(*, after: int = 0, batch_size: int = 200) -> Walk:
    """Beat: terminate instances past `terminate_after_hours` or the end of their reserved term, one
    keyset batch of instance ids after `after` (see `marketplace.walks`); `done` is how many ended."""
    now = timezone.now()
    due = list(
        Instance.objects.exclude(status__in=(S.TERMINATING, S.TERMINATED))
        .filter(Q(terminate_at__lte=now) | Q(reserved_until__lte=now), pk__gt=after)
        .order_by("pk")
        .values_list("pk", "reserved_until")[:batch_size]
    )
    done = 0
    for pk, reserved_until in due:
        reason = (
            "The reserved term ended" if reserved_until and reserved_until <= now else "terminate_after_hours reached"
        )
        try:
            instance_terminate(instance=Instance(pk=pk), actor=Actor.PLATFORM, reason=reason)
            done += 1
        except ApplicationError as error:  # raced with the buyer; nothing to do
            logger.info("instance %s not expired: %s", pk, error.detail)
    return walk_from([pk for pk, _ in due], batch_size=batch_size, done=done)
