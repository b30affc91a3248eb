"""Spot resume: preempted spot instances come back, highest bid first, when capacity frees
without preempting anyone and their bid still stands."""

from __future__ import annotations

from django.db import transaction
from django.urls import reverse
from django.utils.translation import gettext as _

from accounts.models import Notification
from accounts.services import notify
from marketplace import capacity
from marketplace.currency import price_text
from marketplace.walks import Walk, walk_from
from suppliers.locks import host_lock_if_present
from suppliers.models import Host
from suppliers.offers import (
    host_capacity_spec,
    host_holdings,
    host_is_sellable,
    host_type_figures,
    instance_type_shape,
    offers_refresh_for_host,
)

from .locks import preempted_spot_instances_lock
from .models import HostCommand, Instance, InstanceEvent, InstanceStatus, Pricing
from .placement import active_allocation, reoccupy
from .state import Actor, S, command_queue, instance_transition, start_payload


def spot_resume_for_host(*, host: Host) -> list[Instance]:
    """Resume preempted spot instances whose bid still stands, highest bid first, when capacity is
    free for them without preempting anyone. Precondition: the host row is locked."""
    resumed: list[Instance] = []
    waiting = preempted_spot_instances_lock(host=host)
    spec = host_capacity_spec(host)
    for instance in waiting:
        if not host_is_sellable(host):
            break
        figures = host_type_figures(host, instance.instance_type)
        floor = host.spot_floor_for(figures.price_per_hour)
        if instance.price_per_hour < floor:
            continue  # the supplier raised the floor above this bid
        allocation = active_allocation(instance)
        placement = capacity.plan_placement(
            spec,
            host_holdings(host),
            [instance_type_shape(instance.instance_type, disk_gb=instance.disk_gb)],
            spot_bid=instance.price_per_hour,
            replacing=allocation.pk if allocation else None,
        )
        if placement is None or placement.preempt:
            continue
        reoccupy(host, instance, allocation, placement.claims[0], spot_bid=instance.price_per_hour)
        instance.preemption_deadline = None
        instance.save(update_fields=["preemption_deadline", "updated_at"])
        instance_transition(
            instance=instance,
            to=S.PROVISIONING,
            actor=Actor.PLATFORM,
            reason="Capacity freed while the bid stands: resuming",
        )
        command_queue(instance, HostCommand.Kind.START, **start_payload(instance))
        spot_resume_notify(instance=instance)
        resumed.append(instance)
    return resumed


def spot_resume_notify(*, instance: Instance) -> Notification | None:
    """Tell the buyer that their preempted spot instance is starting again (in-app, and by email
    after commit). Once per preemption: a repeated step sends nothing."""
    preemptions = InstanceEvent.objects.filter(instance=instance, to_status=S.PREEMPTED).count()
    return notify(
        user=instance.buyer,
        kind="spot_resumed",
        title=_("Spot instance i-%(id)d resumed") % {"id": instance.pk},
        body=_(
            "Capacity freed while your bid of %(bid)s/h stands: your spot instance i-%(id)d is starting again "
            "on the same host, with its disk. Compute is billed once it runs."
        )
        % {"bid": price_text(instance.price_per_hour), "id": instance.pk},
        dedupe_key=f"spot-resumed:{instance.pk}:{preemptions}",
        link=reverse("orders:instance_detail", args=[instance.pk]),
    )


def spot_resume(*, after: int = 0, batch_size: int = 100) -> Walk:
    """Beat: try to resume preempted spot instances, one short transaction per host, walking the
    hosts that have any in keyset batches of host ids after `after` (see `marketplace.walks`);
    `done` is how many instances resumed."""
    host_ids = list(
        Instance.objects.filter(status=InstanceStatus.PREEMPTED, pricing=Pricing.SPOT, host_id__gt=after)
        .values_list("host_id", flat=True)
        .distinct()
        .order_by("host_id")[:batch_size]
    )
    resumed = 0
    for host_id in host_ids:
        with transaction.atomic():
            host = host_lock_if_present(host_id=host_id)
            if host is None:
                continue  # removed meanwhile
            count = len(spot_resume_for_host(host=host))
            if count:
                offers_refresh_for_host(host=host)
            resumed += count
    return walk_from(host_ids, batch_size=batch_size, done=resumed)
