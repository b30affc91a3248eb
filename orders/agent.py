"""What host agents report about instances and commands: heartbeats (which hand out pending
commands and are reconciled with the platform's state), command acknowledgements and instance
states; and hosts that go silent, come back, or are lost for good.
Each call is scoped to the agent's own host. Locks: host row, then instance rows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from accounts.services import notify
from billing.models import UsageRecord
from marketplace.errors import NotFound
from marketplace.walks import Walk, walk_from
from suppliers.locks import host_lock, host_lock_if_present
from suppliers.models import Host, HostOutage
from suppliers.offers import offers_refresh_for_host

from .errors import InvalidTransition
from .locks import host_command_lock, host_instances_lock, instance_and_host_lock
from .metering import accrual_kind, meter_pause, meter_resume_for_host
from .models import (
    AgentUsageDisagreement,
    AgentUsageReport,
    Allocation,
    HostCommand,
    Instance,
    InstanceEvent,
    InstanceStatus,
    Pricing,
)
from .placement import active_allocation
from .sla import sla_credits_for_outage, sla_reserved_term_refund
from .spot import spot_resume_for_host
from .state import TRANSITIONS, Actor, S, command_queue, instance_transition, preemption_grace_seconds

MAX_COMMANDS_PER_HEARTBEAT = 50
# The agent's usage counters kept per instance: at most this many, names at most this long.
MAX_USAGE_COUNTERS = 32
MAX_COUNTER_NAME = 64
# The counter compared with metered compute: seconds the instance has been up, as the agent counts.
UPTIME_COUNTER = "uptime_seconds"
# Differences under this many seconds in a window are noise (heartbeat and metering ticks).
DISAGREEMENT_FLOOR_SECONDS = 60
MAX_FLAGGED_SECONDS = 2**31 - 1


def offline_after() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "AGENT_OFFLINE_AFTER_SECONDS", 90)))


def lost_after() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "HOST_LOST_AFTER_SECONDS", 7200)))


def reconcile_grace() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "AGENT_RECONCILE_GRACE_SECONDS", 120)))


def usage_window() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "AGENT_USAGE_WINDOW_SECONDS", 3600)))


def _host_events(instances: Iterable[Instance], kind: str, reason: str) -> None:
    InstanceEvent.objects.bulk_create(
        InstanceEvent(
            instance=i,
            kind=kind,
            from_status=i.status,
            to_status=i.status,
            reason=reason,
            actor=InstanceEvent.Actor.PLATFORM,
        )
        for i in instances
    )


def _instance_event_for_all(host: Host, kind: str, reason: str) -> None:
    _host_events(Instance.objects.filter(host=host).exclude(status=InstanceStatus.TERMINATED), kind, reason)


@transaction.atomic
def agent_heartbeat(*, host: Host, instances: list[dict[str, Any]]) -> list[HostCommand]:
    """Record a heartbeat; a host coming back is online again and its renters accrue again from
    now. The instances the agent reports are reconciled with the platform's (`agent_reconcile`).
    Returns the pending commands. Locks the host row (and the instance rows it fails)."""
    host = host_lock(host_id=host.pk)
    was = host.agent_status
    now = timezone.now()
    host.last_heartbeat_at = now
    host.agent_status = Host.AgentStatus.ONLINE
    host.save(update_fields=["last_heartbeat_at", "agent_status", "updated_at"])
    if was != Host.AgentStatus.ONLINE:
        if was == Host.AgentStatus.OFFLINE:
            _instance_event_for_all(host, InstanceEvent.Kind.HOST_RECOVERED, "Heartbeats are back")
            outage = HostOutage.objects.filter(host=host, ended_at__isnull=True).first()
            if outage is not None:
                outage.ended_at = host.last_heartbeat_at
                outage.save(update_fields=["ended_at"])
                sla_credits_for_outage(outage=outage)
            meter_resume_for_host(host_id=host.pk, at=now)
        offers_refresh_for_host(host=host)
    agent_reconcile(host=host, reports=instances, now=now)
    return list(
        HostCommand.objects.filter(host=host, status=HostCommand.Status.PENDING)
        .select_related("instance")
        .order_by("pk")[:MAX_COMMANDS_PER_HEARTBEAT]
    )


# --- Reconciliation of the heartbeat's instance reports ------------------------------------------


@dataclass(frozen=True)
class InstanceReport:
    status: str
    counters: dict[str, float]


def _bounded_counters(usage: Any) -> dict[str, float]:
    """At most MAX_USAGE_COUNTERS finite numbers with short names; anything else is dropped."""
    if not isinstance(usage, dict):
        return {}
    counters: dict[str, float] = {}
    for name in sorted(k for k in usage if isinstance(k, str) and len(k) <= MAX_COUNTER_NAME):
        value = usage[name]
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            counters[name] = float(value)
        if len(counters) >= MAX_USAGE_COUNTERS:
            break
    return counters


def _parse_reports(reports: list[dict[str, Any]]) -> dict[int, InstanceReport]:
    parsed: dict[int, InstanceReport] = {}
    for report in reports:
        instance_id = report.get("id")
        if isinstance(instance_id, int) and instance_id > 0:
            parsed[instance_id] = InstanceReport(
                status=str(report.get("status", ""))[:32], counters=_bounded_counters(report.get("usage"))
            )
    return parsed


# What the agent should be told when it runs an instance the platform has ended or stopped.
# Transitional statuses (stopping, terminating, starting, provisioning) already have a command.
COMMAND_FOR_RUNNING: dict[str, str] = {
    S.TERMINATED: HostCommand.Kind.TERMINATE,
    S.FAILED: HostCommand.Kind.TERMINATE,
    S.STOPPED: HostCommand.Kind.STOP,
    S.PREEMPTED: HostCommand.Kind.STOP,
}


def agent_reconcile(*, host: Host, reports: list[dict[str, Any]], now: datetime) -> None:
    """Compare what the agent reports with what the platform believes, on this host only:

    - an instance running here that the agent has not reported running for
      AGENT_RECONCILE_GRACE_SECONDS (counted from its last report running, from when it started
      running, and from the host's return after an outage, whichever is latest) is failed; its
      pay-as-you-go accrual ends at the last report that vouched for it;
    - an instance the agent reports running that the platform has ended or stopped, or that is not
      this host's, gets a terminate or stop command for this host (none while the same command is
      pending or was sent within the grace);
    - the agent's usage counters are kept per instance (`AgentUsageReport`, latest only), and its
      uptime compared with metered compute over AGENT_USAGE_WINDOW_SECONDS windows
      (`AgentUsageDisagreement` when they differ by more than AGENT_USAGE_DISAGREEMENT_PERCENT).

    Set-based: a fixed number of queries whatever the number of instances, except the rare
    failures. Precondition: the host row is locked."""
    parsed = _parse_reports(reports)
    own = list(Instance.objects.filter(host=host).filter(Q(status=S.RUNNING) | Q(pk__in=list(parsed))))
    own_ids = {i.pk for i in own}
    rows = {r.instance_id: r for r in AgentUsageReport.objects.filter(instance_id__in=own_ids)} if own else {}
    grace = reconcile_grace()

    unreported: dict[int, datetime | None] = {}
    for instance in own:
        report = parsed.get(instance.pk)
        if instance.status != S.RUNNING or (report is not None and report.status == S.RUNNING):
            continue
        row = rows.get(instance.pk)
        seen = row.last_running_at if row is not None else None
        since = max(t for t in (seen, instance.updated_at) if t is not None)
        if now - since > grace:
            unreported[instance.pk] = seen
    if unreported:
        back_at = (
            HostOutage.objects.filter(host=host, ended_at__isnull=False)
            .order_by("-ended_at")
            .values_list("ended_at", flat=True)
            .first()
        )
        if back_at is None or now - back_at > grace:
            _fail_unreported(host, unreported)

    _command_what_should_not_run(host, parsed, own, now=now, grace=grace)
    _keep_usage_reports(host, parsed, [i for i in own if i.pk in parsed], rows, now=now)


def _fail_unreported(host: Host, last_seen: dict[int, datetime | None]) -> None:
    """Fail running instances the agent no longer reports (rare: one lock query, then per instance)."""
    failed = []
    for instance in host_instances_lock(host=host, instance_ids=last_seen):
        if instance.status != S.RUNNING:
            continue  # changed meanwhile
        seen = last_seen[instance.pk]
        # Nothing accrues past the last report that vouched for it (already metered time stands).
        meter_pause(instances=[instance], at=seen or instance.metered_until or timezone.now())
        when = f"since {seen:%Y-%m-%d %H:%M:%S} UTC" if seen else "since it started"
        instance_transition(
            instance=instance,
            to=S.FAILED,
            reason=f"The host agent does not report this instance running ({when})",
            actor=Actor.PLATFORM,
        )
        notify(
            user=instance.buyer,
            kind="instance_failed",
            title=f"Instance i-{instance.pk} failed",
            body="Its host's agent no longer reports it running. Its disk is kept; terminate it to release it.",
            dedupe_key=f"instance_failed:{instance.pk}",
        )
        failed.append(instance.pk)
    if failed:
        Allocation.objects.active().filter(instance_id__in=failed).update(kind=Allocation.Kind.DISK_ONLY)
        spot_resume_for_host(host=host)
        offers_refresh_for_host(host=host)


def _command_what_should_not_run(
    host: Host, parsed: dict[int, InstanceReport], own: list[Instance], *, now: datetime, grace: timedelta
) -> None:
    running = {pk for pk, report in parsed.items() if report.status == S.RUNNING}
    if not running:
        return
    wanted: dict[int, tuple[str, dict[str, Any]]] = {}
    for instance in own:
        kind = COMMAND_FOR_RUNNING.get(instance.status)
        if instance.pk in running and kind is not None:
            reason = "preempted" if instance.status == S.PREEMPTED else "reconcile"
            payload = {"grace_seconds": preemption_grace_seconds()} if kind == HostCommand.Kind.STOP else {}
            wanted[instance.pk] = (kind, {**payload, "reason": reason})
    others = running - {i.pk for i in own}
    if others:
        # Not this host's: this host is told to remove it; the instance itself is left alone.
        for pk in Instance.objects.filter(pk__in=others).exclude(host=host).values_list("pk", flat=True):
            wanted[pk] = (HostCommand.Kind.TERMINATE, {"reason": "not_on_this_host"})
    if not wanted:
        return
    sent = set(
        HostCommand.objects.filter(host=host, instance_id__in=list(wanted))
        .filter(Q(status=HostCommand.Status.PENDING) | Q(created_at__gte=now - grace))
        .values_list("instance_id", "kind")
    )
    HostCommand.objects.bulk_create(
        HostCommand(host=host, instance_id=pk, kind=kind, payload=payload, created_at=now)
        for pk, (kind, payload) in wanted.items()
        if (pk, kind) not in sent
    )


def _keep_usage_reports(
    host: Host,
    parsed: dict[int, InstanceReport],
    reported: list[Instance],
    rows: dict[int, AgentUsageReport],
    *,
    now: datetime,
) -> None:
    """Latest counters per instance (one insert, one update), and the uptime windows."""
    window = usage_window()
    new, changed, closing = [], [], []
    for instance in reported:
        report = parsed[instance.pk]
        row = rows.get(instance.pk)
        if row is None:
            row = AgentUsageReport(instance=instance, host=host)
            new.append(row)
        else:
            changed.append(row)
        row.status, row.counters, row.reported_at = report.status, report.counters, now
        if report.status == S.RUNNING:
            row.last_running_at = now
        uptime = report.counters.get(UPTIME_COUNTER)
        started = row.window_counters.get(UPTIME_COUNTER) if row.window_started_at else None
        if instance.status != S.RUNNING or report.status != S.RUNNING or uptime is None:
            row.window_started_at, row.window_counters = None, {}
        elif started is None or uptime < started:  # no window yet, or the agent's counter restarted
            row.window_started_at, row.window_counters = now, report.counters
        elif now - cast(datetime, row.window_started_at) >= window:
            closing.append((instance, row, uptime - started))
    if closing:
        _flag_disagreements(host, closing, now=now)
    AgentUsageReport.objects.bulk_create(new)
    AgentUsageReport.objects.bulk_update(
        changed, ["status", "counters", "reported_at", "last_running_at", "window_started_at", "window_counters"]
    )


def _flag_disagreements(host: Host, closing: list[tuple[Instance, AgentUsageReport, float]], *, now: datetime) -> None:
    """Compare each closing window's agent uptime with the compute seconds metered in it (the usage
    records overlapping it, and the open window); flag the ones that differ; start new windows."""
    starts = {instance.pk: cast(datetime, row.window_started_at) for instance, row, _ in closing}
    metered: dict[int, float] = defaultdict(float)
    records = UsageRecord.objects.filter(
        instance_id__in=list(starts),
        kind=UsageRecord.Kind.COMPUTE,
        window_end__gt=min(starts.values()),
        window_start__lt=now,
    ).values_list("instance_id", "window_start", "window_end")
    for instance_id, start, end in records:
        metered[instance_id] += max(0.0, (min(end, now) - max(start, starts[instance_id])).total_seconds())
    percent = int(getattr(settings, "AGENT_USAGE_DISAGREEMENT_PERCENT", 10))
    flags = []
    for instance, row, agent_seconds in closing:
        if instance.metered_until is not None and accrual_kind(instance) == UsageRecord.Kind.COMPUTE:
            open_from = max(instance.metered_until, starts[instance.pk])
            metered[instance.pk] += max(0.0, (now - open_from).total_seconds())
        platform_seconds = metered[instance.pk]
        difference = abs(agent_seconds - platform_seconds)
        if difference > DISAGREEMENT_FLOOR_SECONDS and difference * 100 > percent * platform_seconds:
            flags.append(
                AgentUsageDisagreement(
                    instance=instance,
                    host=host,
                    window_start=starts[instance.pk],
                    window_end=now,
                    agent_seconds=min(MAX_FLAGGED_SECONDS, max(0, round(agent_seconds))),
                    platform_seconds=min(MAX_FLAGGED_SECONDS, round(platform_seconds)),
                )
            )
        row.window_started_at, row.window_counters = now, row.counters
    AgentUsageDisagreement.objects.bulk_create(flags, ignore_conflicts=True)


@transaction.atomic
def agent_command_ack(*, host: Host, command_id: int, ok: bool, detail: str = "") -> HostCommand:
    """Acknowledge a command once; a repeated acknowledgement changes nothing."""
    command = host_command_lock(command_id=command_id, host=host)
    if command is None:
        raise NotFound("No such command for this host.")
    if command.status == HostCommand.Status.PENDING:
        command.status = HostCommand.Status.ACKNOWLEDGED if ok else HostCommand.Status.FAILED
        command.acknowledged_at = timezone.now()
        command.payload = {**command.payload, "result": detail[:500]} if detail else command.payload
        command.save(update_fields=["status", "acknowledged_at", "payload"])
    return command


def agent_report_instance_state(*, host: Host, instance_id: int, status: str, reason: str = "") -> Instance:
    """The agent says where an instance is; only instances on its own host exist for it."""
    instance = Instance.objects.filter(pk=instance_id, host=host).first()
    if instance is None:
        raise NotFound("No such instance on this host.")
    return instance_agent_report(instance=instance, status=status, reason=reason)


# Agent reports that finish a transition the platform started.
AGENT_REPORTS: dict[str, set[str]] = {
    S.RUNNING: {S.PROVISIONING, S.STARTING},
    S.STOPPED: {S.STOPPING},
    S.TERMINATED: {S.TERMINATING},
    S.FAILED: {S.PROVISIONING, S.STARTING, S.RUNNING, S.STOPPING},
}


@transaction.atomic
def instance_agent_report(*, instance: Instance, status: str, reason: str = "") -> Instance:
    """The host agent reports where an instance is. Repeating the current status is harmless."""
    instance, host = instance_and_host_lock(instance_id=instance.pk)
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
        allocation = active_allocation(instance)
        if allocation is not None:
            Allocation.objects.filter(pk=allocation.pk).update(kind=Allocation.Kind.DISK_ONLY)
        spot_resume_for_host(host=host)
        offers_refresh_for_host(host=host)
    return instance


def hosts_mark_offline(*, after: int = 0, batch_size: int = 200) -> Walk:
    """Beat: one keyset batch of hosts (ids above `after`) whose heartbeats stopped: they go
    offline, their offers disappear, their instances get a `host_lost` event and stop accruing
    what their buyers pay as they go at the last heartbeat (`metering.meter_pause`). One short
    transaction per host, under its lock. `done`: hosts marked offline."""
    cutoff = timezone.now() - offline_after()
    stale = list(
        Host.objects.filter(pk__gt=after, agent_status=Host.AgentStatus.ONLINE, last_heartbeat_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    marked = sum(_host_mark_offline(host_id, cutoff=cutoff) for host_id in stale)
    return walk_from(stale, batch_size=batch_size, done=marked)


@transaction.atomic
def _host_mark_offline(host_id: int, *, cutoff: datetime) -> bool:
    host = host_lock_if_present(host_id=host_id)
    if host is None:
        return False  # removed meanwhile
    if host.agent_status != Host.AgentStatus.ONLINE or cast(datetime, host.last_heartbeat_at) >= cutoff:
        return False  # a heartbeat arrived meanwhile
    last_heartbeat = cast(datetime, host.last_heartbeat_at)
    host.agent_status = Host.AgentStatus.OFFLINE
    host.save(update_fields=["agent_status", "updated_at"])
    HostOutage.objects.get_or_create(host=host, ended_at=None, defaults={"started_at": last_heartbeat})
    instances = host_instances_lock(host=host)
    _host_events(instances, InstanceEvent.Kind.HOST_LOST, f"No heartbeat since {last_heartbeat:%Y-%m-%d %H:%M:%S} UTC")
    meter_pause(instances=instances, at=last_heartbeat)
    offers_refresh_for_host(host=host)
    return True


def hosts_release_lost(*, after: int = 0, batch_size: int = 100) -> Walk:
    """Beat: one keyset batch of hosts (ids above `after`) offline for HOST_LOST_AFTER_SECONDS since
    their last heartbeat that still have instances. Each is released in one short transaction
    under its lock: the outage's SLA credit is granted up to now (once: a later return of the
    host grants nothing more, see `sla.sla_credits_for_outage`), and every instance not terminated
    is terminated (`_release_lost_instance`): its allocation ended, its pending commands dropped, a
    terminate command left for the host should it ever come back, and its buyer told. Offers are
    recomputed. `done`: hosts released.

    Terminated rather than failed: the instance and its disk are gone with the host, nothing of it
    can be started again, and a terminated instance holds and accrues nothing (reserved included,
    whose remaining term is refunded whole), where a failed one would still wait for its buyer."""
    cutoff = timezone.now() - lost_after()
    still_held = Instance.objects.filter(host=OuterRef("pk")).exclude(status=S.TERMINATED)
    lost = list(
        Host.objects.filter(pk__gt=after, agent_status=Host.AgentStatus.OFFLINE, last_heartbeat_at__lt=cutoff)
        .filter(Exists(still_held))
        .order_by("pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    released = sum(_host_release_lost(host_id, cutoff=cutoff) for host_id in lost)
    return walk_from(lost, batch_size=batch_size, done=released)


@transaction.atomic
def _host_release_lost(host_id: int, *, cutoff: datetime) -> bool:
    host = host_lock_if_present(host_id=host_id)
    if host is None:
        return False  # removed meanwhile
    if host.agent_status != Host.AgentStatus.OFFLINE or cast(datetime, host.last_heartbeat_at) >= cutoff:
        return False  # back meanwhile
    instances = host_instances_lock(host=host)
    if not instances:
        return False
    last_heartbeat = cast(datetime, host.last_heartbeat_at)
    outage, _ = HostOutage.objects.get_or_create(host=host, ended_at=None, defaults={"started_at": last_heartbeat})
    sla_credits_for_outage(outage=outage)  # while the instances are still running: they are the ones owed
    ids = [i.pk for i in instances]
    # Commands never delivered (a start, say) must not run should the host come back.
    HostCommand.objects.filter(host=host, instance_id__in=ids, status=HostCommand.Status.PENDING).update(
        status=HostCommand.Status.FAILED
    )
    reason = f"Host lost: no heartbeat since {last_heartbeat:%Y-%m-%d %H:%M:%S} UTC"
    for instance in instances:
        _release_lost_instance(instance, reason=reason)
    Allocation.objects.active().filter(instance_id__in=ids).update(released_at=timezone.now())
    offers_refresh_for_host(host=host)
    return True


def _release_lost_instance(instance: Instance, *, reason: str) -> None:
    """Terminate one instance of a lost host. Precondition: host and instance rows locked."""
    if S.TERMINATING not in TRANSITIONS[instance.status] and instance.status != S.TERMINATING:
        instance_transition(instance=instance, to=S.FAILED, reason=reason, actor=Actor.PLATFORM)
    if instance.status != S.TERMINATING:
        instance_transition(instance=instance, to=S.TERMINATING, reason=reason, actor=Actor.PLATFORM)
    instance_transition(instance=instance, to=S.TERMINATED, reason=reason, actor=Actor.PLATFORM)
    if instance.pricing == Pricing.RESERVED:
        sla_reserved_term_refund(instance=instance, at=timezone.now())
    command_queue(instance, HostCommand.Kind.TERMINATE, reason="host_lost")
    notify(
        user=instance.buyer,
        kind="instance_host_lost",
        title=f"Instance i-{instance.pk} ended: its host was lost",
        body=(
            f"Its host sent no heartbeat for over {int(lost_after().total_seconds()) // 60} minutes, so the "
            "instance was terminated and nothing more is charged for it. The outage's SLA credit is in your balance."
        ),
        dedupe_key=f"host_lost:{instance.pk}",
    )
