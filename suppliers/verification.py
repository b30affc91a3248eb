"""Host verification: a host is verified when its agent's inventory matches the declaration, its
selftest passed and its reliability is above the threshold (and staff approved it, for a
supplier's first host). The platform sets and clears the mark; every change is audited.
"""

from __future__ import annotations

from django.db import transaction

from marketplace.audit import audit_record

from .locks import host_lock
from .models import Host
from .offers import offers_refresh_for_host
from .reliability import DEVERIFY_BELOW


@transaction.atomic
def host_verification_update(*, host: Host, reason: str = "") -> Host:
    """Verified when the agent's inventory matches, the selftest passed, reliability is above the
    threshold and (for a supplier's first host) staff approved it; otherwise deverified. Audited."""
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
