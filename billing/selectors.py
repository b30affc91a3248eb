"""Billing reads, scoped to the caller."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet

from accounts.models import User

from .models import LedgerPosting, Payout, TopUp, UsageRecord
from .rating import charge_for
from .services import account_balance, buyer_wallet, money_sum, supplier_payable


def buyer_balance(*, user: User) -> dict:
    """Balance, burn rate ($/h of live on-demand/spot instances) and runway in hours."""
    from orders.models import Instance

    balance = account_balance(buyer_wallet(user))
    burn = money_sum(Instance.objects.live().filter(buyer=user).exclude(pricing="reserved"), "price_per_hour")
    runway = (balance / burn).quantize(Decimal("0.01")) if burn > 0 else None
    return {"balance": balance, "currency": "USD", "burn_per_hour": burn, "runway_hours": runway}


def usage_for_user(*, user: User) -> QuerySet[UsageRecord]:
    return UsageRecord.objects.filter(buyer=user).select_related("instance", "instance__instance_type")


def usage_charge(record: UsageRecord) -> Decimal:
    return charge_for(record.seconds, record.rate_per_hour)


def ledger_for_user(*, user: User) -> QuerySet[LedgerPosting]:
    return (
        LedgerPosting.objects.filter(account=buyer_wallet(user))
        .select_related("transaction")
        .order_by("-transaction__created_at", "-id")
    )


def top_ups_for_user(*, user: User) -> QuerySet[TopUp]:
    return TopUp.objects.filter(user=user)


def supplier_earnings(*, organization) -> dict:
    payable = supplier_payable(organization)
    return {
        "payable": account_balance(payable),
        "paid_out": money_sum(Payout.objects.filter(organization=organization, status="paid")),
        "currency": "USD",
    }


def payouts_for_organization(*, organization) -> QuerySet[Payout]:
    return Payout.objects.filter(organization=organization)
