"""The instance state machine: the one table of allowed status changes, the one function that
changes status (writing an event row and metering the change), and commands queued for the
host agent.

Who moves an instance (STYLE 4b): its buyer (stop, start, terminate), staff (stop when
suspending a buyer, terminate), the platform (placement, preemption, expiry, low balance, lost
hosts) and the host agent (reports finishing what the platform started, see `orders.agent`).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from marketplace.webhooks import INSTANCE_STATUS_CHANGED, event_emit

from .errors import InvalidTransition
from .metering import meter_transition
from .models import HostCommand, Instance, InstanceEvent, InstanceStatus
from .ports import port_map

S = InstanceStatus
Actor = InstanceEvent.Actor
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


def preemption_grace_seconds() -> int:
    return int(getattr(settings, "SPOT_PREEMPTION_GRACE_SECONDS", DEFAULT_PREEMPTION_GRACE_SECONDS))


def instance_transition(
    *, instance: Instance, to: str, reason: str, actor: str, actor_user: User | None = None
) -> Instance:
    """Change an instance's status and write the event row. The only writer of `status`.

    Precondition: the caller holds the instance row lock. Raises InvalidTransition (409).
    """
    if to not in TRANSITIONS[instance.status]:
        raise invalid_transition(
            instance,
            _("An instance that is %(status)s cannot become %(to)s.")
            % {"status": status_name(instance.status), "to": status_name(to)},
        )
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
    event_emit(
        user_id=instance.buyer_id,
        event_type=INSTANCE_STATUS_CHANGED,
        data={"instance": instance.pk, "from": old_status, "to": to, "reason": reason[:500], "actor": actor},
    )
    return instance


def command_queue(instance: Instance, kind: str, **payload: Any) -> HostCommand:
    return HostCommand.objects.create(host_id=instance.host_id, instance=instance, kind=kind, payload=payload)


def start_payload(instance: Instance, *, ports: dict[str, int] | None = None) -> dict[str, Any]:
    """What the agent starts: the instance's type, or its no-GPU share (its allocation: no
    accelerators, a little CPU and RAM) when it runs without accelerators. `ports`: its port map
    when the caller just assigned it (otherwise read)."""
    t = instance.instance_type
    vcpus, ram_gb, accelerators = t.vcpus, t.ram_gb, t.accelerator_count
    if instance.without_accelerators:
        allocation = instance.allocations.filter(released_at__isnull=True).first()
        vcpus, ram_gb, accelerators = (allocation.vcpus, allocation.ram_gb, 0) if allocation else (1, 1, 0)
    return {
        "image": instance.image,
        "command": instance.command,
        "instance_type": t.name,
        "accelerators": accelerators,
        "vcpus": vcpus,
        "ram_gb": ram_gb,
        "disk_gb": instance.disk_gb,
        "authorized_keys": instance.authorized_keys,
        "ports": port_map(instance) if ports is None else ports,
        # Stored form (secret values encrypted): decrypted only when handed to the host's agent.
        "environment": instance.order.environment,
    }


def status_name(status: str) -> str:
    """A status as people read it, in their language ('stopping')."""
    return str(InstanceStatus(status).label).lower()


def invalid_transition(instance: Instance, detail: str) -> InvalidTransition:
    """The 409 for a refused status change, with what the instance allows now."""
    return InvalidTransition(detail, extra={"status": instance.status, "allowed": sorted(TRANSITIONS[instance.status])})
