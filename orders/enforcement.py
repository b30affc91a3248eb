"""Low-balance enforcement: nothing runs on credit. Buyers with under an hour of runway are warned;
at zero their instances are stopped (disks kept)."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.locks import user_lock
from accounts.services import notify
from billing.ledger import lock_wallet
from billing.selectors import account_balance

from .lifecycle import instance_stop
from .models import Instance, InstanceStatus, Pricing
from .state import Actor

WARN_RUNWAY_HOURS = Decimal(1)


def low_balance_check(*, batch_size: int = 200) -> dict[str, int]:
    """Beat: warn buyers with under an hour of runway; at zero, stop their instances (disks kept)."""
    result = {"warned": 0, "stopped": 0}
    buyer_ids = list(
        Instance.objects.live().values_list("buyer_id", flat=True).distinct().order_by("buyer_id")[:batch_size]
    )
    for buyer_id in buyer_ids:
        with transaction.atomic():
            buyer = user_lock(user_id=buyer_id)  # lock order: buyer, wallet, hosts
            balance = account_balance(lock_wallet(buyer))
            live = list(Instance.objects.live().filter(buyer=buyer).exclude(pricing=Pricing.RESERVED))
            burn = sum((i.price_per_hour for i in live), Decimal(0))
            if not live or burn == 0:
                continue
            if balance <= 0:
                for instance in live:
                    if instance.status in (
                        InstanceStatus.RUNNING,
                        InstanceStatus.PROVISIONING,
                        InstanceStatus.STARTING,
                    ):
                        instance_stop(instance=instance, actor=Actor.PLATFORM)
                        result["stopped"] += 1
                notify(
                    user=buyer,
                    kind="balance_exhausted",
                    title="Your instances were stopped",
                    body=f"Your balance reached ${balance:.2f}. Disks are kept; top up and start them again.",
                )
            elif balance / burn < WARN_RUNWAY_HOURS:
                minutes = int(balance / burn * 60)
                sent = notify(
                    user=buyer,
                    kind="balance_low",
                    title="Low balance: under an hour left",
                    body=f"${balance:.2f} left at ${burn:.2f}/h: about {minutes} minutes. Top up to keep running.",
                    dedupe_key=f"balance_low:{buyer.pk}:{timezone.now():%Y-%m-%d-%H}",
                )
                result["warned"] += sent is not None
    return result
