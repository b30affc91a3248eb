"""What host agents do to the platform: register, report inventory/heartbeats/selftests/instance
states, and acknowledge commands. Each call is scoped to the agent's own host.

Lock order as everywhere: host row, then instance rows.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from marketplace.errors import ApplicationError, InvalidInput, NotFound
from marketplace.services import offers_refresh_for_host

from .inventory import Declaration, inventory_differences
from .models import Host, HostCredential, HostOutage, HostRegistrationToken
from .services import host_lock

REGISTRATION_TOKEN_TTL = timedelta(hours=24)
TOKEN_PREFIX = "hrt"
CREDENTIAL_PREFIX = "hcr"
MAX_COMMANDS_PER_HEARTBEAT = 50


class InvalidRegistrationToken(ApplicationError):
    code = "invalid_registration_token"
    status_code = 401


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def offline_after() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "AGENT_OFFLINE_AFTER_SECONDS", 90)))


# --- Registration ---------------------------------------------------------------------------


def host_registration_token_issue(*, host: Host, user: User | None) -> str:
    """A one-time token (valid 24 h) for the host's agent. Returned once; only its hash is kept."""
    token = f"{TOKEN_PREFIX}_{secrets.token_urlsafe(32)}"
    HostRegistrationToken.objects.create(
        host=host, token_hash=hash_secret(token), created_by=user, expires_at=timezone.now() + REGISTRATION_TOKEN_TTL
    )
    return token


@transaction.atomic
def agent_register(*, token: str) -> tuple[Host, str]:
    """Exchange a registration token for a host credential (older credentials are revoked)."""
    row = (
        HostRegistrationToken.objects.select_for_update()
        .select_related("host")
        .filter(token_hash=hash_secret(token or ""))
        .first()
    )
    if row is None or row.used_at is not None or row.expires_at <= timezone.now():
        raise InvalidRegistrationToken("The registration token is unknown, used or expired. Create a new one.")
    row.used_at = timezone.now()
    row.save(update_fields=["used_at"])
    host = host_lock(host_id=row.host_id)
    HostCredential.objects.active().filter(host=host).update(revoked_at=timezone.now())
    prefix = secrets.token_hex(6)
    secret = f"{CREDENTIAL_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    HostCredential.objects.create(host=host, prefix=prefix, secret_hash=hash_secret(secret))
    return host, secret


def host_credential_authenticate(*, secret: str) -> HostCredential | None:
    if not secret.startswith(f"{CREDENTIAL_PREFIX}_"):
        return None
    credential = HostCredential.objects.active().select_related("host").filter(secret_hash=hash_secret(secret)).first()
    if credential is not None:
        now = timezone.now()
        if credential.last_used_at is None or now - credential.last_used_at > timedelta(minutes=1):
            HostCredential.objects.filter(pk=credential.pk).update(last_used_at=now)
    return credential


def host_credential_revoke(*, credential: HostCredential) -> None:
    HostCredential.objects.filter(pk=credential.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


# --- Reports --------------------------------------------------------------------------------


def host_declaration(host: Host) -> Declaration:
    model = host.accelerator_model
    return Declaration(
        accelerator_kind=model.kind,
        accelerator_names=tuple(model.inventory_names or [model.name]),
        accelerator_count=host.accelerator_count,
        accelerator_memory_gb=model.memory_gb,
        vcpus=host.vcpus,
        ram_gb=host.ram_gb,
        disk_gb=host.disk_gb,
    )


def host_check_inventory(host: Host) -> list[dict]:
    """Compare the stored inventory with the declaration; set or clear the mismatch. Lock held."""
    differences = inventory_differences(host_declaration(host), host.inventory) if host.inventory else []
    host.inventory_mismatch = differences or None
    host.save(update_fields=["inventory_mismatch", "updated_at"])
    offers_refresh_for_host(host=host)
    return differences


@transaction.atomic
def agent_report_inventory(*, host: Host, inventory: dict) -> list[dict]:
    """Store the agent's inventory. A contradiction delists the host's offers until resolved."""
    host = host_lock(host_id=host.pk)
    host.inventory = inventory
    host.inventory_reported_at = timezone.now()
    host.save(update_fields=["inventory", "inventory_reported_at", "updated_at"])
    differences = host_check_inventory(host)
    host_verification_update(host=host)
    return differences


def _instance_event_for_all(host: Host, kind: str, reason: str) -> None:
    from orders.models import Instance, InstanceEvent, InstanceStatus

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
def agent_heartbeat(*, host: Host, instances: list[dict]) -> list:
    """Record a heartbeat; a host coming back is online again. Returns the pending commands."""
    from orders.models import HostCommand, InstanceEvent

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
                from billing.services import sla_credits_for_outage

                sla_credits_for_outage(outage=outage)
        offers_refresh_for_host(host=host)
    return list(
        HostCommand.objects.filter(host=host, status=HostCommand.Status.PENDING)
        .select_related("instance")
        .order_by("pk")[:MAX_COMMANDS_PER_HEARTBEAT]
    )


@transaction.atomic
def agent_command_ack(*, host: Host, command_id: int, ok: bool, detail: str = ""):
    """Acknowledge a command once; a repeated acknowledgement changes nothing."""
    from orders.models import HostCommand

    command = HostCommand.objects.select_for_update().filter(pk=command_id, host=host).first()
    if command is None:
        raise NotFound("No such command for this host.")
    if command.status == HostCommand.Status.PENDING:
        command.status = HostCommand.Status.ACKNOWLEDGED if ok else HostCommand.Status.FAILED
        command.acknowledged_at = timezone.now()
        command.payload = {**command.payload, "result": detail[:500]} if detail else command.payload
        command.save(update_fields=["status", "acknowledged_at", "payload"])
    return command


def agent_report_instance_state(*, host: Host, instance_id: int, status: str, reason: str = ""):
    """The agent says where an instance is; only instances on its own host exist for it."""
    from orders.models import Instance
    from orders.services import instance_agent_report

    instance = Instance.objects.filter(pk=instance_id, host=host).first()
    if instance is None:
        raise NotFound("No such instance on this host.")
    return instance_agent_report(instance=instance, status=status, reason=reason)


@transaction.atomic
def agent_report_selftest(*, host: Host, result: dict) -> Host:
    checks = result.get("checks")
    if not isinstance(checks, list) or not all(isinstance(c, dict) and "name" in c and "ok" in c for c in checks):
        raise InvalidInput("checks is a list of {name, ok, detail}.", fields={"checks": ["Invalid."]})
    host = host_lock(host_id=host.pk)
    host.selftest = result
    host.selftest_passed = all(bool(c["ok"]) for c in checks)
    host.selftest_at = timezone.now()
    host.save(update_fields=["selftest", "selftest_passed", "selftest_at", "updated_at"])
    return host_verification_update(host=host)


def hosts_mark_offline(*, batch_size: int = 200) -> list[int]:
    """Beat: hosts whose heartbeats stopped go offline; their offers disappear and their
    instances get a `host_lost` event. One short transaction per host."""
    from orders.models import InstanceEvent

    cutoff = timezone.now() - offline_after()
    stale = list(
        Host.objects.filter(agent_status=Host.AgentStatus.ONLINE, last_heartbeat_at__lt=cutoff)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    marked = []
    for host_id in stale:
        with transaction.atomic():
            host = host_lock(host_id=host_id)
            if host.agent_status != Host.AgentStatus.ONLINE or host.last_heartbeat_at >= cutoff:
                continue  # a heartbeat arrived meanwhile
            host.agent_status = Host.AgentStatus.OFFLINE
            host.save(update_fields=["agent_status", "updated_at"])
            HostOutage.objects.get_or_create(host=host, ended_at=None, defaults={"started_at": host.last_heartbeat_at})
            _instance_event_for_all(
                host, InstanceEvent.Kind.HOST_LOST, f"No heartbeat since {host.last_heartbeat_at:%Y-%m-%d %H:%M:%S} UTC"
            )
            offers_refresh_for_host(host=host)
            marked.append(host_id)
    return marked


# --- Reliability and verification ---------------------------------------------------------


def host_reliability_refresh(*, host: Host) -> Host:
    """Recompute the 30-day uptime score; below the threshold the host loses its verified mark."""
    from orders.models import InstanceEvent

    from .reliability import DEVERIFY_BELOW, WINDOW, uptime
    from .services import host_set_reliability

    first_credential = host.credentials.order_by("created_at").values_list("created_at", flat=True).first()
    if first_credential is None:
        return host
    now = timezone.now()
    outages = list(
        host.outages.filter(Q(ended_at__isnull=True) | Q(ended_at__gte=now - WINDOW)).values_list(
            "started_at", "ended_at"
        )
    )
    failed_starts = InstanceEvent.objects.filter(
        instance__host=host,
        to_status="failed",
        from_status__in=["provisioning", "starting"],
        created_at__gte=now - WINDOW,
    ).count()
    score = uptime(now=now, observed_since=first_credential, outages=outages, failed_starts=failed_starts)
    host = host_set_reliability(host=host, reliability=score)
    if host.verified and score < DEVERIFY_BELOW:
        host_verification_update(host=host, reason=f"Reliability {score:.2%} is below {DEVERIFY_BELOW:.0%}")
    return host


def hosts_reliability_refresh(*, batch_size: int = 500) -> int:
    """Beat: refresh every registered host's reliability."""
    ids = list(
        Host.objects.filter(credentials__isnull=False)
        .distinct()
        .order_by("pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    for host in Host.objects.filter(pk__in=ids).select_related("organization", "accelerator_model", "region"):
        host_reliability_refresh(host=host)
    return len(ids)


@transaction.atomic
def host_verification_update(*, host: Host, reason: str = "") -> Host:
    """Verified when the agent's inventory matches, the selftest passed, reliability is above the
    threshold and (for a supplier's first host) staff approved it; otherwise deverified. Audited."""
    from marketplace.audit import audit_record

    from .reliability import DEVERIFY_BELOW

    host = host_lock(host_id=host.pk)
    others_verified = Host.objects.filter(organization=host.organization, verified=True).exclude(pk=host.pk).exists()
    staff_ok = host.status == Host.Status.APPROVED or others_verified
    reliable = host.reliability is None or host.reliability >= DEVERIFY_BELOW
    should = bool(host.inventory) and not host.inventory_mismatch and bool(host.selftest_passed) and reliable
    should = should and staff_ok
    if should != host.verified:
        if not reason:
            reason = "Inventory matches, selftest passed" if should else _why_not(host, reliable)
        audit_record(
            action="host.verified" if should else "host.deverified",
            obj=host,
            reason=reason,
            before={"verified": host.verified},
            after={"verified": should},
        )
        host.verified = should
        host.save(update_fields=["verified", "updated_at"])
        offers_refresh_for_host(host=host)
    return host


def _why_not(host: Host, reliable: bool) -> str:
    if host.inventory_mismatch:
        return "Inventory contradicts the declaration"
    if host.selftest_passed is False:
        return "Selftest failed"
    if not reliable:
        return "Reliability below the threshold"
    return "Not yet confirmed by the agent"
