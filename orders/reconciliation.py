"""Reconciling what a host's agent reports in its heartbeat with what the platform believes
(`agent_reconcile`, called by `orders.agent.agent_heartbeat` under the host lock): instances it no
longer runs fail, instances it should not run are told to stop, and its usage counters are kept
beside metering, with disagreements flagged for staff.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.services import notify
from billing.models import UsageRecord
from suppliers.models import Host, HostOutage
from suppliers.offers import offers_refresh_for_host

from .locks import host_instances_lock
from .metering import accrual_kind, meter_pause
from .models import AgentUsageDisagreement, AgentUsageReport, Allocation, HostCommand, Instance
from .spot import spot_resume_for_host
from .state import Actor, S, instance_transition, preemption_grace_seconds

# The agent's usage counters kept per instance: at most this many, names at most this long.
MAX_USAGE_COUNTERS = 32
MAX_COUNTER_NAME = 64
# The counter compared with metered compute: seconds the instance has been up, as the agent counts.
UPTIME_COUNTER = "uptime_seconds"
# Accelerator readings kept per instance for its chart: one a minute, the last hour.
UTILIZATION_COUNTER = "accelerator_utilization_percent"
MEMORY_USED_COUNTER = "accelerator_memory_used_mib"
UTILIZATION_SAMPLE_SECONDS = 60
UTILIZATION_KEPT_SECONDS = 3600
# Differences under this many seconds in a window are noise (heartbeat and metering ticks).
DISAGREEMENT_FLOOR_SECONDS = 60
MAX_FLAGGED_SECONDS = 2**31 - 1


def reconcile_grace() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "AGENT_RECONCILE_GRACE_SECONDS", 120)))


def usage_window() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "AGENT_USAGE_WINDOW_SECONDS", 3600)))


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
            title=_("Instance i-%(id)s failed") % {"id": instance.pk},
            body=_("Its host's agent no longer reports it running. Its disk is kept; terminate it to release it."),
            dedupe_key=f"instance_failed:{instance.pk}",
            link=reverse("orders:instance_detail", args=[instance.pk]),
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
        row.utilization = utilization_sampled(row.utilization, report.counters, now=now)
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
        changed,
        ["status", "counters", "reported_at", "last_running_at", "window_started_at", "window_counters", "utilization"],
    )


def utilization_sampled(samples: list[list[float]], counters: dict[str, float], *, now: datetime) -> list[list[float]]:
    """The kept readings with this heartbeat's added when the last is a minute old or more, and
    those older than an hour dropped (bounded: about 60 per instance, in its one report row)."""
    at = int(now.timestamp())
    kept = [s for s in samples or [] if isinstance(s, list) and len(s) == 3 and at - s[0] < UTILIZATION_KEPT_SECONDS]
    utilization, memory = counters.get(UTILIZATION_COUNTER), counters.get(MEMORY_USED_COUNTER)
    if utilization is None or memory is None or not 0 <= utilization <= 100 or memory < 0:
        return kept
    if kept and at - kept[-1][0] < UTILIZATION_SAMPLE_SECONDS:
        return kept
    return [*kept, [at, round(utilization, 1), round(memory, 1)]]


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
