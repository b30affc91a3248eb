"""What host agents report about instances and commands: heartbeats (which hand out pending
commands), command acknowledgements and instance states; and hosts that go silent and come back.
Each call is scoped to the agent's own host. Locks: host row, then instance rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from marketplace.errors import NotFound
from suppliers.locks import host_lock, host_lock_if_present
from suppliers.models import Host, HostOutage
from suppliers.offers import offers_refresh_for_host

from .errors import InvalidTransition
from .locks import host_command_lock, instance_and_host_lock
from .models import Allocation, HostCommand, Instance, InstanceEvent, InstanceStatus
from .placement import active_allocation
from .sla import sla_credits_for_outage
from .spot import spot_resume_for_host
from .state import Actor, S, instance_transition

MAX_COMMANDS_PER_HEARTBEAT = 50


def offline_after() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "AGENT_OFFLINE_AFTER_SECONDS", 90)))


def _instance_event_for_all(host: Host, kind: str, reason: str) -> None:
    instances = Instance.objects.filter(host=host).exclude(status=InstanceStatus.TERMINATED)
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


@transaction.atomic
def agent_heartbeat(*, host: Host, instances: list[dict[str, Any]]) -> list[HostCommand]:
    """Record a heartbeat; a host coming back is online again. Returns the pending commands."""
    host = host_lock(host_id=host.pk)
    was = host.agent_status
    host.last_heartbeat_at = timezone.now()
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
        offers_refresh_for_host(host=host)
    return list(
        HostCommand.objects.filter(host=host, status=HostCommand.Status.PENDING)
        .select_related("instance")
        .order_by("pk")[:MAX_COMMANDS_PER_HEARTBEAT]
    )


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


def hosts_mark_offline(*, batch_size: int = 200) -> list[int]:
    """Beat: hosts whose heartbeats stopped go offline; their offers disappear and their
    instances get a `host_lost` event. One short transaction per host."""
    cutoff = timezone.now() - offline_after()
    stale = list(
        Host.objects.filter(agent_status=Host.AgentStatus.ONLINE, last_heartbeat_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    marked = []
    for host_id in stale:
        with transaction.atomic():
            host = host_lock_if_present(host_id=host_id)
            if host is None:
                continue  # removed meanwhile
            if host.agent_status != Host.AgentStatus.ONLINE or cast(datetime, host.last_heartbeat_at) >= cutoff:
                continue  # a heartbeat arrived meanwhile
            host.agent_status = Host.AgentStatus.OFFLINE
            host.save(update_fields=["agent_status", "updated_at"])
            HostOutage.objects.get_or_create(
                host=host, ended_at=None, defaults={"started_at": cast(datetime, host.last_heartbeat_at)}
            )
            _instance_event_for_all(
                host, InstanceEvent.Kind.HOST_LOST, f"No heartbeat since {host.last_heartbeat_at:%Y-%m-%d %H:%M:%S} UTC"
            )
            offers_refresh_for_host(host=host)
            marked.append(host_id)
    return marked
