"""What host agents do about their host: register, and report inventory and selftests. Each call
is scoped to the agent's own host. Commands and instance reports are `orders.agent`.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from marketplace.errors import InvalidInput

from .errors import InvalidRegistrationToken
from .hosts import host_check_inventory
from .locks import host_lock, registration_token_lock
from .models import Host, HostCredential, HostRegistrationToken
from .verification import host_verification_update

REGISTRATION_TOKEN_TTL = timedelta(hours=24)


TOKEN_PREFIX = "hrt"


CREDENTIAL_PREFIX = "hcr"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


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
    row = registration_token_lock(token_hash=hash_secret(token or ""))
    if row is None or row.used_at is not None or row.expires_at <= timezone.now():
        raise InvalidRegistrationToken(_("The registration token is unknown, used or expired. Create a new one."))
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


def _finds_fewer_accelerators(host: Host, checks: list[dict]) -> bool:
    """A selftest whose accelerator check counts fewer devices than the host declares fails."""
    if host.accelerator_model.kind == "cpu":
        return False
    counts = [c["count"] for c in checks if c["name"] == "accelerators" and isinstance(c.get("count"), int)]
    return any(count < host.accelerator_count for count in counts)


@transaction.atomic
def agent_report_selftest(*, host: Host, result: dict) -> Host:
    checks = result.get("checks")
    if not isinstance(checks, list) or not all(isinstance(c, dict) and "name" in c and "ok" in c for c in checks):
        raise InvalidInput(_("checks is a list of {name, ok, detail}."), fields={"checks": [_("Invalid.")]})
    host = host_lock(host_id=host.pk)
    host.selftest = result
    host.selftest_passed = all(bool(c["ok"]) for c in checks) and not _finds_fewer_accelerators(host, checks)
    host.selftest_at = timezone.now()
    host.save(update_fields=["selftest", "selftest_passed", "selftest_at", "updated_at"])
    return host_verification_update(host=host)
