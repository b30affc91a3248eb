"""Billing reads: balances, usage, statements and earnings, scoped to the caller."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet, Sum
from django.utils import timezone

from accounts.models import User
from marketplace.errors import InvalidInput
from suppliers.models import Organization

from .ledger import buyer_wallet, supplier_payable
from .models import LedgerAccount, LedgerPosting, Payout, TopUp, UsageRecord
from .rating import charge_for, split


def money_sum(queryset: QuerySet[Any], field: str = "amount") -> Decimal:
    """Exact Decimal sum. PostgreSQL sums NUMERIC exactly; SQLite's SUM is floating point, so
    there the values are added in Python."""
    if connection.vendor == "postgresql":
        return queryset.aggregate(total=Sum(field))["total"] or Decimal(0)
    return sum(queryset.values_list(field, flat=True), Decimal(0))


def account_balance(account: LedgerAccount) -> Decimal:
    return money_sum(LedgerPosting.objects.filter(account=account))


def wallet_balance(user: User) -> Decimal:
    return account_balance(buyer_wallet(user))


def ledger_total() -> Decimal:
    """The sum of every posting: always zero."""
    return money_sum(LedgerPosting.objects.all())


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


def supplier_earnings(*, organization: Organization) -> dict:
    payable = supplier_payable(organization)
    return {
        "payable": account_balance(payable),
        "paid_out": money_sum(Payout.objects.filter(organization=organization, status="paid")),
        "currency": "USD",
    }


def payouts_for_organization(*, organization: Organization) -> QuerySet[Payout]:
    return Payout.objects.filter(organization=organization)


def statement_months(*, user: User) -> list[str]:
    """Months (YYYY-MM) with wallet activity, newest first."""
    dates = LedgerPosting.objects.filter(account=buyer_wallet(user)).dates(
        "transaction__created_at", "month", order="DESC"
    )
    return [f"{d:%Y-%m}" for d in dates]


def statement(*, user: User, month: str) -> dict:
    """A monthly wallet statement: opening balance, totals per kind, every line, closing balance."""
    try:
        start = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=dt.UTC)
    except ValueError:
        raise InvalidInput("A month is YYYY-MM.", fields={"month": ["Use YYYY-MM."]}) from None
    end = (start + dt.timedelta(days=32)).replace(day=1)
    wallet = LedgerPosting.objects.filter(account=buyer_wallet(user))
    opening = money_sum(wallet.filter(transaction__created_at__lt=start))
    lines = list(
        wallet.filter(transaction__created_at__gte=start, transaction__created_at__lt=end)
        .select_related("transaction")
        .order_by("transaction__created_at", "id")
    )
    totals: dict[str, Decimal] = {}
    for line in lines:
        totals[line.transaction.kind] = totals.get(line.transaction.kind, Decimal(0)) + line.amount
    closing = opening + sum((line.amount for line in lines), Decimal(0))
    return {
        "month": month,
        "currency": "USD",
        "opening_balance": opening,
        "closing_balance": closing,
        "totals": totals,
        "lines": lines,
        "issued_at": timezone.now(),
    }


def revenue_by_host(*, organization: Organization, since: dt.datetime | None = None) -> list[dict]:
    """The supplier's settled earnings per host (supplier share, the same numbers as posted)."""
    records = UsageRecord.objects.filter(organization=organization, settled_by__isnull=False).select_related(
        "instance__host", "instance"
    )
    if since is not None:
        records = records.filter(window_start__gte=since)
    totals: dict = defaultdict(lambda: {"earned": Decimal(0), "seconds": 0})
    names = {}
    take = Decimal(settings.PLATFORM_TAKE_RATE)
    for record in records:
        if record.kind == UsageRecord.Kind.COMPUTE and record.instance.backfills_id:
            continue  # backfill revenue went to the reserving buyer
        host = record.instance.host
        names[host.pk] = host.name
        totals[host.pk]["earned"] += split(usage_charge(record), take).supplier_share
        totals[host.pk]["seconds"] += record.seconds
    return sorted(
        ({"host": pk, "name": names[pk], **values} for pk, values in totals.items()),
        key=lambda row: -row["earned"],
    )


def daily_spend(*, user: User, days: int = 14) -> list[dict]:
    """Usage charges per UTC day for the last `days` days (oldest first), with bar heights in %."""
    today = timezone.now().date()
    first = today - dt.timedelta(days=days - 1)
    totals = {first + dt.timedelta(days=i): Decimal(0) for i in range(days)}
    postings = LedgerPosting.objects.filter(
        account=buyer_wallet(user), transaction__kind="usage", transaction__created_at__date__gte=first
    ).values_list("transaction__created_at", "amount")
    for created_at, amount in postings:
        totals[created_at.date()] = totals.get(created_at.date(), Decimal(0)) - amount
    peak = max(totals.values()) or Decimal(1)
    return [{"day": day, "amount": amount, "percent": int(amount / peak * 100)} for day, amount in totals.items()]
