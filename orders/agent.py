"""What host agents report about instances and commands: heartbeats (which hand out pending
commands and are reconciled with the platform's state), command acknowledgements and instance
states; and hosts that go silent, come back, or are lost for good.
Each call is scoped to the agent's own host. Locks: host row, then instance rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.services import notify
from marketplace.errors import NotFound
from marketplace.secrets import SecretUnreadable
from marketplace.walks import Walk, walk_from
from suppliers.locks import host_lock, host_lock_if_present
from suppliers.models import Host, HostOutage
from suppliers.offers import offers_refresh_for_host

from .errors import InvalidTransition
from .launch import environment_value
from .locks import host_command_lock, host_instances_lock, instance_and_host_lock
from .metering import meter_pause, meter_resume_for_host
from .models import (
    Allocation,
    HostCommand,
    Instance,
    InstanceEvent,
    InstanceStatus,
    Pricing,
)
from .placement import active_allocation
from .ports import ports_release
from .reconciliation import agent_reconcile
from .sla import sla_credits_for_outage, sla_reserved_term_refund
from .spot import spot_resume_for_host
from .state import TRANSITIONS, Actor, S, command_queue, instance_transition

MAX_COMMANDS_PER_HEARTBEAT = 50


def offline_after() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "AGENT_OFFLINE_AFTER_SECONDS", 90)))


def lost_after() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "HOST_LOST_AFTER_SECONDS", 7200)))


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


def command_for_agent(command: HostCommand) -> dict[str, Any]:
    """A command as its host's agent receives it: a start's secret environment values decrypted
    here, at hand-over (they stay encrypted in the command row). A value whose key is no longer
    configured is left out and the agent told which (never the value)."""
    payload = dict(command.payload)
    stored = payload.get("environment")
    if isinstance(stored, list):
        readable, unreadable = [], []
        for entry in stored:
            try:
                readable.append({**entry, "value": environment_value(entry)})
            except SecretUnreadable:
                unreadable.append(entry["name"])
        payload["environment"] = {e["name"]: e["value"] for e in readable}
        if unreadable:
            payload["environment_unreadable"] = unreadable
    return {"id": command.pk, "kind": command.kind, "instance_id": command.instance_id, "payload": payload}


@transaction.atomic
def agent_command_ack(*, host: Host, command_id: int, ok: bool, detail: str = "") -> HostCommand:
    """Acknowledge a command once; a repeated acknowledgement changes nothing."""
    command = host_command_lock(command_id=command_id, host=host)
    if command is None:
        raise NotFound(_("No such command for this host."))
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
        raise NotFound(_("No such instance on this host."))
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
            _("The agent cannot report %(reported)s for an instance that is %(status)s.")
            % {"reported": status, "status": instance.status},
            extra={"status": instance.status},
        )
    instance_transition(
        instance=instance,
        to=status,
        reason=reason or _("Host agent reports %(status)s") % {"status": str(S(status).label).lower()},
        actor=Actor.AGENT,
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
    ports_release(ids)
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
        title=_("Instance i-%(id)s ended: its host was lost") % {"id": instance.pk},
        body=_(
            "Its host sent no heartbeat for over %(minutes)s minutes, so the instance was terminated and nothing "
            "more is charged for it. The outage's SLA credit is in your balance."
        )
        % {"minutes": int(lost_after().total_seconds()) // 60},
        dedupe_key=f"host_lost:{instance.pk}",
        link=reverse("orders:instance_detail", args=[instance.pk]),
    )
