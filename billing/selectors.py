"""Billing reads: balances, usage, statements and earnings, scoped to the caller."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import DecimalField, ExpressionWrapper, F, Max, Q, QuerySet, Sum, Value
from django.db.models.functions import Cast, Round, TruncDate
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from marketplace.currency import platform_currency
from marketplace.errors import InvalidInput
from marketplace.money import CENT, PRICE_PLACES, PRICE_QUANTUM, quantize_price
from suppliers.models import Organization

from .ledger import buyer_wallet, supplier_payable
from .models import CreditNoteRequest, LedgerAccount, LedgerPosting, LedgerTransaction, Payout, TopUp, UsageRecord
from .rating import SECONDS_PER_HOUR, charge_for, split


def money_sum(queryset: QuerySet[Any], field: str = "amount") -> Decimal:
    """Exact Decimal sum. PostgreSQL sums NUMERIC exactly; SQLite's SUM is floating point, so
    there the values are added in Python."""
    if connection.vendor == "postgresql":
        return queryset.aggregate(total=Sum(field))["total"] or Decimal(0)
    return sum(queryset.values_list(field, flat=True), Decimal(0))


def account_balances(account_ids: list[int]) -> dict[int, Decimal]:
    """The balance of each account: owner accounts' stored balances (one query), platform accounts
    summed from their postings (one more query when there are any; exact, see `money_sum`)."""
    balances = dict.fromkeys(account_ids, Decimal(0))
    kinds = dict(LedgerAccount.objects.filter(pk__in=account_ids).values_list("pk", "kind"))
    owners = [pk for pk, kind in kinds.items() if kind in LedgerAccount.OWNER_KINDS]
    balances.update(LedgerAccount.objects.filter(pk__in=owners).values_list("pk", "balance"))
    platform = [pk for pk, kind in kinds.items() if kind not in LedgerAccount.OWNER_KINDS]
    if not platform:
        return balances
    postings = LedgerPosting.objects.filter(account_id__in=platform).order_by()
    if connection.vendor == "postgresql":
        for account_id, total in (
            postings.values("account_id").annotate(total=Sum("amount")).values_list("account_id", "total")
        ):
            balances[account_id] = total
    else:
        for account_id, amount in postings.values_list("account_id", "amount"):
            balances[account_id] += amount
    return balances


def account_balance(account: LedgerAccount) -> Decimal:
    """An account's balance as committed (or as this transaction wrote it): one row read for an
    owner account (wallet, payable), a sum of postings for a platform account."""
    if account.kind in LedgerAccount.OWNER_KINDS:
        return LedgerAccount.objects.filter(pk=account.pk).values_list("balance", flat=True).get()
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
    """The supplier's payable balance, split into what the platform owes it (`payable`, paid out
    by `billing.payouts`) and what it owes the platform (`owed_by_supplier`), and what was paid out.

    "Owed" is derived from the ledger, not stored: dispute and SLA credits are charged to the
    supplier payable, so when they exceed what is left of its earnings the balance goes negative,
    and that negative balance is the debt. Later earnings post to the same account and so repay it
    before anything becomes payable again; payouts are made only from a positive balance. A
    separate "owed" account (or column) would be a second source of truth that every credit,
    earning and payout would have to keep in step; one signed balance cannot disagree with itself.
    """
    balance = account_balance(supplier_payable(organization))
    zero = Decimal(0).quantize(PRICE_QUANTUM)
    return {
        "balance": balance,
        "payable": balance if balance > 0 else zero,
        "owed_by_supplier": -balance if balance < 0 else zero,
        "paid_out": money_sum(Payout.objects.filter(organization=organization, status="paid")),
        "currency": platform_currency().code,
    }


@dataclass(frozen=True)
class RentalPayments:
    """What a buyer paid for one rental (an instance) and what was already given back for it."""

    paid: Decimal  # usage charges the buyer's wallet paid for it, plus its share of a reserved prepayment
    credited: Decimal  # refunds and credits paid into the buyer's wallet for it

    def room(self, multiple: Decimal = Decimal(1)) -> Decimal:
        """Exactly how much more may be given back: paid x multiple - credited (never negative)."""
        return max(self.paid * multiple - self.credited, Decimal(0))

    def bound(self, multiple: Decimal = Decimal(1)) -> Decimal:
        """The largest credit in whole cents that fits in `room` (rounded down)."""
        return self.room(multiple).quantize(CENT, rounding=ROUND_DOWN)


def rental_payments(
    *,
    buyer: User,
    instance_id: int,
    order_id: int,
    price_per_hour: Decimal,
    term_hours: int | None,
    report_ids: Iterable[int] = (),
) -> RentalPayments:
    """What the buyer paid and got back for one rental:

    - paid: the charges of the instance's settled usage records that the buyer's wallet paid (each
      as settlement posted it), plus, for a reserved term, the instance's share of the order's
      prepayment (`reserved:<order>`; its price x the term, at most what the wallet paid);
    - credited: what the wallet received in credit and refund transactions for this instance: SLA
      credits, reserved cancellation refunds, usage refunds and dispute credits
      (`reference.instance`), and dispute credits of `report_ids` (dispute credits posted before
      they named their instance)."""
    on_wallet = LedgerPosting.objects.filter(account=buyer_wallet(buyer))
    settled = UsageRecord.objects.filter(instance_id=instance_id, buyer=buyer, settled_by__isnull=False)
    if term_hours:  # a reserved term's compute came from the prepayment
        settled = settled.exclude(kind=UsageRecord.Kind.COMPUTE)
    paid = sum(
        (charge_for(seconds, rate) for seconds, rate in settled.values_list("seconds", "rate_per_hour")), Decimal(0)
    )
    if term_hours:
        prepaid = -money_sum(on_wallet.filter(transaction__key=f"reserved:{order_id}"))
        paid += max(min(prepaid, quantize_price(price_per_hour * term_hours)), Decimal(0))
    given_for_it = Q(transaction__reference__instance=instance_id)
    report_ids = list(report_ids)
    if report_ids:
        given_for_it |= Q(transaction__reference__problem_report__in=report_ids)
    credited = money_sum(
        on_wallet.filter(
            given_for_it,
            transaction__kind__in=[LedgerTransaction.Kind.CREDIT, LedgerTransaction.Kind.REFUND],
            amount__gt=0,
        )
    )
    return RentalPayments(paid=max(paid, Decimal(0)), credited=credited)


def credit_note_requests_pending() -> QuerySet[CreditNoteRequest]:
    """Staff: credit notes waiting for a second staff member, oldest first."""
    return (
        CreditNoteRequest.objects.filter(status=CreditNoteRequest.Status.PENDING)
        .select_related("user", "requested_by")
        .order_by("created_at", "id")
    )


def credit_note_requests_decided() -> QuerySet[CreditNoteRequest]:
    """Staff: the latest approved or rejected credit note requests."""
    return (
        CreditNoteRequest.objects.exclude(status=CreditNoteRequest.Status.PENDING)
        .select_related("user", "requested_by", "decided_by")
        .order_by("-decided_at", "-id")
    )


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
        if not (len(month) == 7 and month.isascii()):  # strptime also reads other scripts' digits
            raise ValueError(month)
        start = dt.datetime.strptime(month, "%Y-%m").replace(tzinfo=dt.UTC)
        end = (start + dt.timedelta(days=32)).replace(day=1)  # 9999-12 has no end: OverflowError
    except (ValueError, OverflowError):
        raise InvalidInput(_("A month is YYYY-MM."), fields={"month": [_("Use YYYY-MM.")]}) from None
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
        "currency": platform_currency().code,
        "opening_balance": opening,
        "closing_balance": closing,
        "totals": totals,
        "lines": lines,
        "issued_at": timezone.now(),
    }


def revenue_by_host(*, organization: Organization, since: dt.datetime | None = None) -> list[dict]:
    """The supplier's settled earnings per host (supplier share, the same numbers as posted), most
    first; on equal earnings, the host with the latest record first. One query.

    Each record counts as settlement posted it (billing/rating.py): charge = seconds x rate / 3600
    and fee = charge x take rate, each rounded half-up to $0.000001, share = charge - fee. Backfill
    compute is left out: that revenue went to the reserving buyer."""
    records = UsageRecord.objects.filter(organization=organization, settled_by__isnull=False).exclude(
        kind=UsageRecord.Kind.COMPUTE, instance__backfills__isnull=False
    )
    if since is not None:
        records = records.filter(window_start__gte=since)
    take = Decimal(settings.PLATFORM_TAKE_RATE)
    if connection.vendor == "postgresql":
        rows = _host_totals_in_sql(records, take)
    else:
        rows = _host_totals_in_python(records, take)
    return sorted(rows, key=lambda row: -row["earned"])  # stable: ties stay latest-record first


def _host_totals_in_python(records: QuerySet[UsageRecord], take: Decimal) -> list[dict]:
    """SQLite does arithmetic in floating point, so the rule is applied here, to the four columns
    it needs (one query, no model instances). Hosts come latest record first."""
    totals: dict[int, dict] = {}
    columns = ("instance__host_id", "instance__host__name", "seconds", "rate_per_hour")
    for host_id, name, seconds, rate in records.order_by("-window_start", "-id").values_list(*columns):
        row = totals.setdefault(host_id, {"host": host_id, "name": name, "earned": Decimal(0), "seconds": 0})
        row["earned"] += split(charge_for(seconds, rate), take).supplier_share
        row["seconds"] += seconds
    return list(totals.values())


def usage_charge_and_fee_in_sql(take: Decimal) -> tuple[Round, Round]:
    """A usage record's charge and platform fee as SQL expressions (PostgreSQL), rounded exactly as
    `billing.rating` rounds them: NUMERIC is exact, ROUND(x, 6) is half away from zero (half-up for
    these non-negative amounts), and the product is widened to 20 places before the division."""
    wide = DecimalField(max_digits=40, decimal_places=20)
    money = DecimalField(max_digits=20, decimal_places=PRICE_PLACES)
    charge = Round(
        Cast(F("seconds") * F("rate_per_hour"), wide) / Value(SECONDS_PER_HOUR, output_field=wide),
        PRICE_PLACES,
        output_field=money,
    )
    return charge, Round(charge * Value(take, output_field=wide), PRICE_PLACES, output_field=money)


def _host_totals_in_sql(records: QuerySet[UsageRecord], take: Decimal) -> list[dict]:
    """PostgreSQL sums per host in the database: NUMERIC is exact, and ROUND(x, 6) rounds half
    away from zero, which is half-up for these non-negative amounts. The product is widened to 20
    places before the division, so the quotient is exact wherever its rounding could depend on it.
    Hosts come latest record first (the order `revenue_by_host` keeps for equal earnings)."""
    charge, fee = usage_charge_and_fee_in_sql(take)
    per_host = (
        records.order_by()
        .values("instance__host_id", "instance__host__name")
        .annotate(
            earned=Sum(ExpressionWrapper(charge - fee, output_field=charge.output_field)),
            total_seconds=Sum("seconds"),
            latest_window=Max("window_start"),
            latest_id=Max("id"),
        )
        .order_by("-latest_window", "-latest_id")
    )
    return [
        {
            "host": row["instance__host_id"],
            "name": row["instance__host__name"],
            "earned": row["earned"],
            "seconds": row["total_seconds"],
        }
        for row in per_host
    ]


def daily_spend(*, user: User, days: int = 14) -> list[dict]:
    """Usage charges per UTC day for the last `days` days (oldest first), with bar heights in %.
    One query: PostgreSQL sums each day exactly; SQLite's SUM is floating point, so there the
    postings are added up here (see `money_sum`)."""
    today = timezone.now().date()
    first = today - dt.timedelta(days=days - 1)
    totals = {first + dt.timedelta(days=i): Decimal(0) for i in range(days)}
    postings = LedgerPosting.objects.filter(
        account=buyer_wallet(user), transaction__kind="usage", transaction__created_at__date__gte=first
    ).order_by()
    per_day: Iterable[tuple[dt.date, Decimal]]
    if connection.vendor == "postgresql":
        per_day = (
            postings.annotate(day=TruncDate("transaction__created_at", tzinfo=dt.UTC))
            .values("day")
            .annotate(total=Sum("amount"))
            .values_list("day", "total")
        )
    else:
        rows = postings.values_list("transaction__created_at", "amount")
        per_day = ((created_at.date(), amount) for created_at, amount in rows)
    for day, amount in per_day:
        totals[day] = totals.get(day, Decimal(0)) - amount
    peak = max(totals.values()) or Decimal(1)
    return [{"day": day, "amount": amount, "percent": int(amount / peak * 100)} for day, amount in totals.items()]


def credited_alone_recently(staff: User) -> Decimal:
    """What `staff` credited buyers without a second approver within CREDIT_NOTE_APPROVAL_WINDOW
    (credit notes at or under the approval threshold, posted under keys `credit-note:<uuid>`)."""
    since = timezone.now() - settings.CREDIT_NOTE_APPROVAL_WINDOW
    postings = LedgerPosting.objects.filter(
        transaction__kind=LedgerTransaction.Kind.CREDIT,
        transaction__key__startswith="credit-note:",
        transaction__created_by=staff,
        transaction__created_at__gte=since,
        amount__gt=0,
    )
    return money_sum(postings)


def payouts_pending_ids() -> list[int]:
    """Payouts not yet sent (or whose sending was cut short): every payouts run sends them again,
    under the same idempotency key, so none is stranded by a worker that died after creating it."""
    return list(Payout.objects.filter(status=Payout.Status.PENDING).order_by("pk").values_list("pk", flat=True))
