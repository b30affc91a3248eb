"""Metering: what an instance accrues in each status, written as usage records (per second).

A status change closes the window the old status was accruing and opens one for the new status,
in the same transaction (`meter_transition`); beat closes every open window up to now
(`meter_usage`). Settlement (`billing.settlement`) turns the records into ledger transactions.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import cast

from django.db import transaction
from django.utils import timezone

from billing import rating
from billing.models import UsageRecord

from .locks import instances_to_meter_batch
from .models import Instance, InstanceStatus, Pricing


def accrual_kind(instance: Instance) -> str | None:
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


def _usage_record(instance: Instance, kind: str, start: datetime, end: datetime) -> UsageRecord | None:
    if instance.pricing == Pricing.RESERVED and instance.reserved_until:
        end = min(end, instance.reserved_until)
    seconds = int((end - start).total_seconds())
    if seconds <= 0:
        return None
    if kind == UsageRecord.Kind.COMPUTE:
        rate = instance.price_per_hour
    else:
        rate = rating.storage_rate_per_hour(instance.instance_type.disk_gb, instance.storage_price_per_gb_month)
        if rate == 0:
            return None
    return UsageRecord(
        instance=instance,
        buyer_id=instance.buyer_id,
        organization_id=instance.host.organization_id,
        kind=kind,
        window_start=start,
        window_end=start + timedelta(seconds=seconds),
        seconds=seconds,
        rate_per_hour=rate,
    )


def meter_transition(*, instance: Instance, old_status: str, at: datetime) -> None:
    """Called in the same transaction as a status change: close the window the old status was
    accruing, and open one for the new status. Per-second exact."""
    new_kind = accrual_kind(instance)
    old = Instance(pk=instance.pk, status=old_status, pricing=instance.pricing)
    old_kind = accrual_kind(old)
    if old_kind is not None and instance.metered_until is not None:
        record = _usage_record(instance, old_kind, instance.metered_until, at)
        if record is not None:
            UsageRecord.objects.bulk_create([record], ignore_conflicts=True)
    instance.metered_until = at if new_kind is not None else None
    Instance.objects.filter(pk=instance.pk).update(metered_until=instance.metered_until)


def meter_rate_change(*, instance: Instance, at: datetime) -> None:
    """Close the open usage window at `at` so time before it is billed at the old rate."""
    kind = accrual_kind(instance)
    if kind is None or instance.metered_until is None or instance.metered_until >= at:
        return
    record = _usage_record(instance, kind, instance.metered_until, at)
    if record is not None:
        UsageRecord.objects.bulk_create([record], ignore_conflicts=True)
        instance.metered_until = record.window_end
        Instance.objects.filter(pk=instance.pk).update(metered_until=record.window_end)


def meter_usage(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Beat: every accruing instance records usage since its last metered point, in bounded
    batches with set-based writes (one bulk insert, one update per batch). Rows are locked with
    SKIP LOCKED; a unique (instance, kind, window_start) makes a re-run add nothing."""
    now = now or timezone.now()
    created = 0
    while True:
        with transaction.atomic():
            batch = instances_to_meter_batch(now=now, batch_size=batch_size)
            if not batch:
                return created
            records = []
            for instance in batch:
                kind = accrual_kind(instance)
                record = _usage_record(instance, kind, cast(datetime, instance.metered_until), now) if kind else None
                if record is not None:
                    records.append(record)
            UsageRecord.objects.bulk_create(records, ignore_conflicts=True)
            Instance.objects.filter(pk__in=[i.pk for i in batch]).update(metered_until=now)
            created += len(records)
        if len(batch) < batch_size:
            return created
