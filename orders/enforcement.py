"""Low-balance enforcement: nothing runs on credit, and what a buyer can owe is bounded.

Every buyer whose instances cost something (running compute, or a kept disk) is visited on every
tick, in keyset batches of buyer ids (`marketplace.walks`), whatever their number:

- under an hour of runway: a warning (once an hour);
- at zero: running instances are stopped (disks kept) and each kept disk gets a release time,
  `STOPPED_DISK_GRACE` from then, told to the buyer when the grace starts and again 24 h before
  its end; at that time the disk is released (the instance is terminated, the supplier's capacity
  freed) with a final notice. Topping up clears the release times.

So the most a buyer can owe is the storage of their disks for the grace (`disk_grace_cost`, shown
in the quote) plus the compute of the tick in which the balance ran out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.locks import user_lock
from accounts.models import User
from accounts.services import notify
from billing import rating
from billing.ledger import lock_wallet
from billing.selectors import account_balance
from marketplace.currency import money_text
from marketplace.walks import Walk, walk_from

from .lifecycle import instance_stop, instance_terminate
from .metering import stopped_disk_grace
from .models import Instance, InstanceStatus, Pricing
from .state import Actor

WARN_RUNWAY_HOURS = Decimal(1)
RELEASE_WARNING = timedelta(hours=24)
S = InstanceStatus
COMPUTE_STATUSES = (S.REQUESTED, S.PROVISIONING, S.RUNNING, S.STARTING)
STOPPABLE_STATUSES = (S.RUNNING, S.PROVISIONING, S.STARTING)
DISK_KEPT_STATUSES = (S.STOPPING, S.STOPPED, S.PREEMPTED)
# What a buyer pays for as they go (reserved instances were paid for up front).
COSTING_STATUSES = COMPUTE_STATUSES + DISK_KEPT_STATUSES


def disk_storage_per_hour(instance: Instance) -> Decimal:
    return rating.storage_rate_per_hour(instance.instance_type.disk_gb, instance.storage_price_per_gb_month)


def low_balance_check(*, after: int = 0, batch_size: int = 200, now: datetime | None = None) -> Walk:
    """Beat: one keyset batch of buyers (ids above `after`) with pay-as-you-go instances that cost
    something; see the module docstring. `done` is how many buyers were acted on (warned, stopped,
    given a release time or had a disk released)."""
    now = now or timezone.now()
    buyer_ids = list(
        Instance.objects.filter(buyer_id__gt=after, status__in=COSTING_STATUSES)
        .exclude(pricing=Pricing.RESERVED)
        .values_list("buyer_id", flat=True)
        .distinct()
        .order_by("buyer_id")[:batch_size]
    )
    acted = sum(_enforce_for_buyer(buyer_id, now=now) for buyer_id in buyer_ids)
    return walk_from(buyer_ids, batch_size=batch_size, done=acted)


@transaction.atomic
def _enforce_for_buyer(buyer_id: int, *, now: datetime) -> bool:
    buyer = user_lock(user_id=buyer_id)  # lock order: buyer, wallet, hosts, instances
    balance = account_balance(lock_wallet(buyer))
    instances = list(
        Instance.objects.filter(buyer=buyer, status__in=COSTING_STATUSES)
        .exclude(pricing=Pricing.RESERVED)
        .select_related("instance_type")
        .order_by("pk")
    )
    if balance > 0:
        if any(i.disk_release_at for i in instances):
            Instance.objects.filter(pk__in=[i.pk for i in instances]).update(disk_release_at=None)
            return True
        return _warn_low_runway(buyer, balance, instances, now=now)
    return _at_zero(buyer, balance, instances, now=now)


def _warn_low_runway(buyer: User, balance: Decimal, instances: list[Instance], *, now: datetime) -> bool:
    burn = sum((i.price_per_hour for i in instances if i.status in COMPUTE_STATUSES), Decimal(0))
    burn += sum((disk_storage_per_hour(i) for i in instances if i.status in DISK_KEPT_STATUSES), Decimal(0))
    if burn == 0 or balance / burn >= WARN_RUNWAY_HOURS:
        return False
    minutes = int(balance / burn * 60)
    sent = notify(
        user=buyer,
        kind="balance_low",
        title=_("Low balance: under an hour left"),
        body=_("%(balance)s left at %(burn)s/h: about %(minutes)d minutes. Top up to keep running.")
        % {"balance": money_text(balance), "burn": money_text(burn), "minutes": minutes},
        dedupe_key=f"balance_low:{buyer.pk}:{now:%Y-%m-%d-%H}",
        link=reverse("billing:buyer"),
    )
    return sent is not None


def _at_zero(buyer: User, balance: Decimal, instances: list[Instance], *, now: datetime) -> bool:
    acted = False
    stopped = []
    for instance in instances:
        if instance.status in STOPPABLE_STATUSES:
            stopped.append(instance_stop(instance=instance, actor=Actor.PLATFORM))
    grace_ends = now + stopped_disk_grace()
    new_release = [i.pk for i in instances if i.disk_release_at is None and i.status != S.REQUESTED]
    if new_release:
        Instance.objects.filter(pk__in=new_release, disk_release_at__isnull=True).update(disk_release_at=grace_ends)
    if stopped or new_release:
        acted = True
        notify(
            user=buyer,
            kind="balance_exhausted",
            title=_("Your balance is used up: instances stopped, disks kept for now"),
            body=_(
                "Your balance reached %(balance)s. Running instances were stopped; their disks are kept "
                "until %(until)s UTC and then released with everything on them. "
                "Top up to keep them and start again."
            )
            % {"balance": money_text(balance), "until": f"{grace_ends:%Y-%m-%d %H:%M}"},
            dedupe_key=f"balance_exhausted:{buyer.pk}:{grace_ends:%Y%m%d%H%M%S}",
            link=reverse("billing:buyer"),
        )
    releasing = [i for i in instances if i.disk_release_at is not None]
    soonest = min((i.disk_release_at for i in releasing if i.disk_release_at), default=None)
    if soonest is not None and soonest - RELEASE_WARNING <= now < soonest:
        sent = notify(
            user=buyer,
            kind="disk_release_soon",
            title=_("Your disks will be released within 24 hours"),
            body=_(
                "Your balance is %(balance)s. Stopped disks are released from %(soonest)s UTC, "
                "with everything on them. Top up to keep them."
            )
            % {"balance": money_text(balance), "soonest": f"{soonest:%Y-%m-%d %H:%M}"},
            dedupe_key=f"disk_release_soon:{buyer.pk}:{soonest:%Y%m%d%H%M%S}",
            link=reverse("billing:buyer"),
        )
        acted = acted or sent is not None
    due = [i for i in releasing if i.disk_release_at and i.disk_release_at <= now]
    for instance in due:
        instance_terminate(
            instance=instance,
            actor=Actor.PLATFORM,
            reason=f"Balance at zero through the {settings.STOPPED_DISK_GRACE_DAYS}-day grace: disk released",
        )
    if due:
        acted = True
        names = ", ".join(f"i-{i.pk}" for i in due)
        notify(
            user=buyer,
            kind="disk_released",
            title=_("Disks released"),
            body=_("Your balance stayed at %(balance)s through the grace; the disks of %(names)s were released.")
            % {"balance": money_text(balance), "names": names},
            link=reverse("orders:instances"),
        )
    return acted
