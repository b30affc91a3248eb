"""Host verification: a host is verified when its agent's inventory matches the declaration, its
selftest passed and its reliability is above the threshold (and staff approved it, for a
supplier's first host). The platform sets and clears the mark; every change is audited.
"""

from __future__ import annotations

from django.db import transaction

from marketplace.audit import audit_record

from .hosts import host_declaration
from .inventory import inventory_is_evidence
from .locks import host_lock
from .models import Host
from .offers import offers_refresh_for_host
from .reliability import DEVERIFY_BELOW


@transaction.atomic
def host_verification_update(*, host: Host, reason: str = "") -> Host:
    """Verified when the agent's measured inventory matches, the selftest passed, reliability is
    above the threshold and (for a supplier's first host) staff approved it. Deverified when the
    inventory contradicts the declaration, the selftest failed, reliability fell or changed
    hardware is unconfirmed. An inventory typed into a file confirms nothing (it leaves the mark
    as staff set it). Audited."""
    host = host_lock(host_id=host.pk)
    others_verified = Host.objects.filter(organization=host.organization, verified=True).exclude(pk=host.pk).exists()
    staff_ok = host.status == Host.Status.APPROVED or others_verified
    reliable = host.reliability is None or host.reliability >= DEVERIFY_BELOW
    contradicted = (
        bool(host.inventory_mismatch)
        or host.selftest_passed is False
        or not reliable
        or host.hardware_changed_at is not None
    )
    measured = bool(host.inventory) and inventory_is_evidence(host_declaration(host), host.inventory or {})
    confirmed = measured and bool(host.selftest_passed) and staff_ok
    should = False if contradicted else True if confirmed else host.verified
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
    if host.hardware_changed_at is not None:
        return "The declared hardware changed; the agent has not confirmed it yet"
    if host.selftest_passed is False:
        return "Selftest failed"
    if not reliable:
        return "Reliability below the threshold"
    return "Not yet confirmed by the agent"
