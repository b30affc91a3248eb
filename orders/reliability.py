"""Host reliability: the rolling 30-day uptime score from heartbeat gaps, with failed instance
starts counted against it (`suppliers.reliability.uptime`, pure). Below the threshold a host
loses its verified mark."""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone

from marketplace.walks import Walk, walk_from
from suppliers.hosts import host_set_reliability
from suppliers.models import Host
from suppliers.reliability import DEVERIFY_BELOW, WINDOW, uptime
from suppliers.verification import host_verification_update

from .models import InstanceEvent, InstanceStatus


def host_reliability_refresh(*, host: Host) -> Host:
    """Recompute the 30-day uptime score; below the threshold the host loses its verified mark."""
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
        to_status=InstanceStatus.FAILED,
        from_status__in=[InstanceStatus.PROVISIONING, InstanceStatus.STARTING],
        created_at__gte=now - WINDOW,
    ).count()
    score = uptime(now=now, observed_since=first_credential, outages=outages, failed_starts=failed_starts)
    host = host_set_reliability(host=host, reliability=score)
    if host.verified and score < DEVERIFY_BELOW:
        host_verification_update(host=host, reason=f"Reliability {score:.2%} is below {DEVERIFY_BELOW:.0%}")
    return host


def hosts_reliability_refresh(*, after: int = 0, batch_size: int = 500) -> Walk:
    """Beat: refresh the reliability of one keyset batch of registered hosts (ids above `after`);
    the task walks them all (`marketplace.walks`)."""
    ids = list(
        Host.objects.filter(pk__gt=after, credentials__isnull=False)
        .distinct()
        .order_by("pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    for host in Host.objects.filter(pk__in=ids).select_related("organization", "accelerator_model", "region"):
        host_reliability_refresh(host=host)
    return walk_from(ids, batch_size=batch_size, done=len(ids))
