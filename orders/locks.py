"""Row locks of this app; the global lock order is in `accounts.locks`.

Instances are locked after their host (`instance_and_host_lock` takes both, in that order);
a problem report or a host command is locked on its own, never while holding a host.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from django.utils.translation import gettext as _

from marketplace.errors import NotFound
from suppliers.locks import host_lock
from suppliers.models import Host

from .models import HostCommand, Instance, InstanceStatus, Pricing, ProblemReport


def instance_lock(*, instance_id: int) -> Instance:
    """Lock one instance row (its host must already be locked by the caller); NotFound (404) when gone."""
    instance = (
        Instance.objects.select_for_update(of=("self",))
        .select_related("instance_type", "host")
        .filter(pk=instance_id)
        .first()
    )
    if instance is None:
        raise NotFound(_("No such instance."))
    return instance


def instance_and_host_lock(*, instance_id: int) -> tuple[Instance, Host]:
    """Lock the instance's host, then the instance (the global lock order); NotFound (404) when gone."""
    host_id = Instance.objects.filter(pk=instance_id).values_list("host_id", flat=True).first()
    if host_id is None:
        raise NotFound(_("No such instance."))
    host = host_lock(host_id=host_id)
    return instance_lock(instance_id=instance_id), host


def preempted_spot_instances_lock(*, host: Host) -> list[Instance]:
    """The host's preempted spot instances, highest bid first (the host row is already locked)."""
    return list(
        Instance.objects.select_for_update(of=("self",))
        .select_related("instance_type")
        .filter(host=host, status=InstanceStatus.PREEMPTED, pricing=Pricing.SPOT)
        .order_by("-price_per_hour", "created_at", "pk")
    )


def host_command_lock(*, command_id: int, host: Host) -> HostCommand | None:
    return HostCommand.objects.select_for_update().filter(pk=command_id, host=host).first()


def problem_report_lock(*, report_id: int) -> ProblemReport:
    """Lock one problem report; NotFound (404) when it is gone."""
    report = (
        ProblemReport.objects.select_for_update(of=("self",))
        .select_related("instance__host__organization", "buyer")
        .filter(pk=report_id)
        .first()
    )
    if report is None:
        raise NotFound(_("No such report."))
    return report


class MeteringFacts(NamedTuple):
    """What metering reads of an instance (`orders.metering`), as a plain row: at market size the
    model objects of three tables cost more than the metering itself."""

    pk: int
    status: str
    pricing: str
    metered_until: datetime | None
    reserved_until: datetime | None
    price_per_hour: Decimal
    storage_price_per_gb_month: Decimal
    buyer_id: int
    disk_gb: int
    organization_id: int
    last_heartbeat_at: datetime | None


METERING_COLUMNS = (
    "pk",
    "status",
    "pricing",
    "metered_until",
    "reserved_until",
    "price_per_hour",
    "storage_price_per_gb_month",
    "buyer_id",
    "instance_type__disk_gb",
    "host__organization_id",
    "host__last_heartbeat_at",
)


def instances_to_meter_after(*, now: datetime, after: int, batch_size: int) -> list[MeteringFacts]:
    """Accruing instances metered up to before `now` (ids above `after`) that no other worker holds
    (SKIP LOCKED). Walked by id: a window that cannot close yet (its host's last heartbeat is behind
    it) leaves the row as it was, so the walk must move on."""
    rows = (
        Instance.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk__gt=after, metered_until__isnull=False, metered_until__lt=now)
        .order_by("pk")
        .values_list(*METERING_COLUMNS)[:batch_size]
    )
    return [MeteringFacts(*row) for row in rows]


def host_instances_lock(*, host: Host, instance_ids: Iterable[int] | None = None) -> list[Instance]:
    """Lock the host's instances that are not terminated (only those of `instance_ids` when given),
    in id order. Precondition: the host row is locked (the global lock order)."""
    queryset = Instance.objects.filter(host=host).exclude(status=InstanceStatus.TERMINATED)
    if instance_ids is not None:
        queryset = queryset.filter(pk__in=list(instance_ids))
    return list(
        queryset.select_for_update(of=("self",)).select_related("instance_type", "host", "buyer").order_by("pk")
    )
