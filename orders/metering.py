"""Metering: what an instance accrues in each status, written as usage records (per second).

A status change closes the window the old status was accruing and opens one for the new status,
in the same transaction (`meter_transition`); beat closes every open window up to now
(`meter_usage`). Settlement (`billing.settlement`) turns the records into ledger transactions.

What a buyer pays as they go is billed only while the host's agent vouches for it: beat meters those
windows up to the host's last heartbeat, a host marked offline has them closed at its last heartbeat
(`meter_pause`), and one that comes back accrues again from the heartbeat that brought it back
(`meter_resume_for_host`). Reserved terms are prepaid and keep accruing through an outage: the
capacity stays held for the buyer, and the SLA credit (`orders.sla`) is the remedy for the outage.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, cast

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import rating
from billing.models import UsageRecord
from marketplace.bulk import insert_rows, update_by_pk

from .locks import MeteringFacts, instances_to_meter_after
from .models import Instance, InstanceStatus, Pricing


class _HasStatus(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def pricing(self) -> str: ...


def metering_facts(instance: Instance) -> MeteringFacts:
    """What metering reads of a loaded instance (with its instance type and host)."""
    return MeteringFacts(
        pk=instance.pk,
        status=instance.status,
        pricing=instance.pricing,
        metered_until=instance.metered_until,
        reserved_until=instance.reserved_until,
        price_per_hour=instance.price_per_hour,
        storage_price_per_gb_month=instance.storage_price_per_gb_month,
        buyer_id=instance.buyer_id,
        disk_gb=instance.instance_type.disk_gb,
        organization_id=instance.host.organization_id,
        last_heartbeat_at=instance.host.last_heartbeat_at,
    )


def accrual_kind(instance: _HasStatus) -> str | None:
    """What an instance accrues in its current status: compute while running (reserved: for the
    whole term), storage while its disk is kept, nothing otherwise."""
    S = InstanceStatus
    if instance.pricing == Pricing.RESERVED and instance.status not in (S.TERMINATING, S.TERMINATED):
        return UsageRecord.Kind.COMPUTE
    if instance.status == S.RUNNING:
        return UsageRecord.Kind.COMPUTE
    if instance.status in (S.STOPPING, S.STOPPED, S.PREEMPTED):
        return UsageRecord.Kind.STORAGE
    return None


def usage_window(facts: MeteringFacts, kind: str, start: datetime, end: datetime) -> dict[str, Any] | None:
    """The usage record of `kind` for [start, end) in whole seconds at the instance's rate, as the
    fields of a row; None when nothing is owed (under a second, past a reserved term, a free disk)."""
    if facts.pricing == Pricing.RESERVED and facts.reserved_until:
        end = min(end, facts.reserved_until)
    seconds = int((end - start).total_seconds())
    if seconds <= 0:
        return None
    if kind == UsageRecord.Kind.COMPUTE:
        rate = facts.price_per_hour
    else:
        rate = rating.storage_rate_per_hour(facts.disk_gb, facts.storage_price_per_gb_month)
        if rate == 0:
            return None
    return {
        "instance_id": facts.pk,
        "buyer_id": facts.buyer_id,
        "organization_id": facts.organization_id,
        "kind": kind,
        "window_start": start,
        "window_end": start + timedelta(seconds=seconds),
        "seconds": seconds,
        "rate_per_hour": rate,
        "created_at": timezone.now(),
    }


def usage_record_for_window(instance: Instance, kind: str, start: datetime, end: datetime) -> UsageRecord | None:
    """`usage_window` as an (unsaved) usage record."""
    window = usage_window(metering_facts(instance), kind, start, end)
    return UsageRecord(**window) if window is not None else None


def meter_transition(*, instance: Instance, old_status: str, at: datetime) -> None:
    """Called in the same transaction as a status change: close the window the old status was
    accruing, and open one for the new status. Per-second exact."""
    new_kind = accrual_kind(instance)
    old = Instance(pk=instance.pk, status=old_status, pricing=instance.pricing)
    old_kind = accrual_kind(old)
    if old_kind is not None and instance.metered_until is not None:
        record = usage_record_for_window(instance, old_kind, instance.metered_until, at)
        if record is not None:
            UsageRecord.objects.bulk_create([record], ignore_conflicts=True)
    instance.metered_until = at if new_kind is not None else None
    Instance.objects.filter(pk=instance.pk).update(metered_until=instance.metered_until)


def meter_rate_change(*, instance: Instance, at: datetime) -> None:
    """Close the open usage window at `at` so time before it is billed at the old rate."""
    kind = accrual_kind(instance)
    if kind is None or instance.metered_until is None or instance.metered_until >= at:
        return
    record = usage_record_for_window(instance, kind, instance.metered_until, at)
    if record is not None:
        UsageRecord.objects.bulk_create([record], ignore_conflicts=True)
        instance.metered_until = record.window_end
        Instance.objects.filter(pk=instance.pk).update(metered_until=record.window_end)


def vouched_until(facts: MeteringFacts, now: datetime) -> datetime:
    """How far beat may meter an instance: pay-as-you-go windows on a host with an agent stop at
    its last heartbeat (time after it is billed once a heartbeat vouches for it); reserved terms and
    hosts without an agent up to now."""
    heartbeat = facts.last_heartbeat_at
    if facts.pricing == Pricing.RESERVED or heartbeat is None:
        return now
    return min(now, heartbeat)


def meter_usage(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Beat: every accruing instance records usage since its last metered point (up to now, or its
    host's last heartbeat, see `vouched_until`), walking instances by id in bounded batches with
    set-based writes (one bulk insert, one update per batch). Rows are locked with SKIP LOCKED; a
    unique (instance, kind, window_start) makes a re-run add nothing."""
    now = now or timezone.now()
    created, after = 0, 0
    while True:
        with transaction.atomic():
            batch = instances_to_meter_after(now=now, after=after, batch_size=batch_size)
            if not batch:
                return created
            windows, metered_until = [], {}
            for instance in batch:
                kind = accrual_kind(instance)
                start = cast(datetime, instance.metered_until)
                # Whole seconds only; the fraction stays open and is billed with the next window
                # (advancing to `end` would drop up to a second from every tick).
                whole = int((vouched_until(instance, now) - start).total_seconds())
                if whole <= 0:
                    continue
                end = start + timedelta(seconds=whole)
                window = usage_window(instance, kind, start, end) if kind else None
                if window is not None:
                    windows.append(window)
                metered_until[instance.pk] = window["window_end"] if window is not None else end
            insert_rows(UsageRecord, windows, ignore_conflicts=True)
            update_by_pk(Instance, "metered_until", metered_until)
            created += len(windows)
            after = batch[-1].pk
        if len(batch) < batch_size:
            return created


def meter_pause(*, instances: list[Instance], at: datetime) -> None:
    """Stop the pay-as-you-go accrual of these instances at `at` (a host's last heartbeat, or the
    last report vouching for an instance): the open window is closed there, and nothing accrues
    until `meter_resume_for_host`. Time metered past `at` already stands. Reserved terms are left
    accruing. Precondition: the instance rows are locked; set-based (one insert, one update)."""
    paused = [i for i in instances if i.pricing != Pricing.RESERVED and i.metered_until is not None]
    windows = []
    for instance in paused:
        kind = accrual_kind(instance)
        if kind is not None and cast(datetime, instance.metered_until) < at:
            window = usage_window(metering_facts(instance), kind, cast(datetime, instance.metered_until), at)
            if window is not None:
                windows.append(window)
        instance.metered_until = None
    insert_rows(UsageRecord, windows, ignore_conflicts=True)
    Instance.objects.filter(pk__in=[i.pk for i in paused]).update(metered_until=None)


# Statuses in which a pay-as-you-go instance accrues something (see `accrual_kind`).
PAY_AS_YOU_GO_ACCRUING = (
    InstanceStatus.RUNNING,
    InstanceStatus.STOPPING,
    InstanceStatus.STOPPED,
    InstanceStatus.PREEMPTED,
)


def meter_resume_for_host(*, host_id: int, at: datetime) -> int:
    """A host is back: its pay-as-you-go instances paused by `meter_pause` accrue again from `at`.
    Precondition: the host row is locked. One update; returns how many resumed."""
    return (
        Instance.objects.filter(host_id=host_id, metered_until__isnull=True, status__in=PAY_AS_YOU_GO_ACCRUING)
        .exclude(pricing=Pricing.RESERVED)
        .update(metered_until=at)
    )


def stopped_disk_grace() -> timedelta:
    """How long a stopped disk is kept (and billed) once its buyer's balance is at zero."""
    return timedelta(days=settings.STOPPED_DISK_GRACE_DAYS)


def disk_grace_cost(*, disk_gb: int, storage_price_per_gb_month: Decimal) -> Decimal:
    """What keeping one stopped disk costs through the whole zero-balance grace: the most its buyer
    can owe on it (`orders.enforcement` releases it then)."""
    seconds = int(stopped_disk_grace().total_seconds())
    return rating.charge_for(seconds, rating.storage_rate_per_hour(disk_gb, storage_price_per_gb_month))
