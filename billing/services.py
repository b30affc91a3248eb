"""Ledger postings, metering, settlement, balances and low-balance protection.

Locks: a buyer's wallet account row is locked (select_for_update) whenever its balance decides
something (orders, low-balance stops). Metering and settlement lock their batch rows with SKIP
LOCKED so several workers share the work, and unique keys make every effect happen once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import User
from marketplace.errors import ApplicationError, InvalidInput

from . import rating
from .models import LedgerAccount, LedgerPosting, LedgerTransaction, UsageRecord

logger = logging.getLogger(__name__)
Kind = LedgerAccount.Kind
CURRENCY = "USD"


class UnbalancedTransaction(ApplicationError):
    code = "unbalanced_transaction"
    status_code = 500


class InsufficientFunds(ApplicationError):
    code = "insufficient_funds"
    status_code = 402


# --- Accounts and postings ------------------------------------------------------------------


def _account(kind: str, *, user=None, organization=None, currency: str = CURRENCY) -> LedgerAccount:
    owner = f"user:{user.pk}" if user else f"org:{organization.pk}" if organization else "platform"
    key = f"{kind}:{owner}:{currency}"
    account = LedgerAccount.objects.filter(key=key).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(
                kind=kind, user=user, organization=organization, currency=currency, key=key
            )
    except IntegrityError:
        return LedgerAccount.objects.get(key=key)


def buyer_wallet(user: User) -> LedgerAccount:
    return _account(Kind.BUYER_WALLET, user=user)


def supplier_payable(organization) -> LedgerAccount:
    return _account(Kind.SUPPLIER_PAYABLE, organization=organization)


def platform_account(kind: str) -> LedgerAccount:
    return _account(kind)


def check_balanced(postings: Iterable[tuple[LedgerAccount, Decimal]]) -> None:
    """The service-level twin of the PostgreSQL trigger (SQLite has no deferred triggers)."""
    postings = list(postings)
    if len(postings) < 2:
        raise UnbalancedTransaction("A transaction needs at least two postings.")
    totals: dict[str, Decimal] = {}
    for account, amount in postings:
        if not isinstance(amount, Decimal):
            raise TypeError("money is a Decimal")
        if amount == 0:
            raise UnbalancedTransaction("Zero postings are not allowed.")
        totals[account.currency] = totals.get(account.currency, Decimal(0)) + amount
    if any(total != 0 for total in totals.values()):
        raise UnbalancedTransaction(f"Postings do not sum to zero: {totals}")


def post_transaction(
    *,
    kind: str,
    key: str,
    description: str,
    postings: list[tuple[LedgerAccount, Decimal]],
    reference: dict | None = None,
    created_by: User | None = None,
) -> LedgerTransaction:
    """Write a balanced transaction once: the same `key` again returns the first one unchanged."""
    existing = LedgerTransaction.objects.filter(key=key).first()
    if existing is not None:
        return existing
    check_balanced(postings)
    try:
        with transaction.atomic():
            ledger_transaction = LedgerTransaction.objects.create(
                kind=kind, key=key, description=description[:255], reference=reference or {}, created_by=created_by
            )
            LedgerPosting.objects.bulk_create(
                LedgerPosting(transaction=ledger_transaction, account=account, amount=amount, currency=account.currency)
                for account, amount in postings
            )
    except IntegrityError:
        return LedgerTransaction.objects.get(key=key)
    return ledger_transaction


def money_sum(queryset, field: str = "amount") -> Decimal:
    """Exact Decimal sum. PostgreSQL sums NUMERIC exactly; SQLite's SUM is floating point, so
    there the values are added in Python."""
    if connection.vendor == "postgresql":
        return queryset.aggregate(total=Sum(field))["total"] or Decimal(0)
    return sum(queryset.values_list(field, flat=True), Decimal(0))


def account_balance(account: LedgerAccount) -> Decimal:
    return money_sum(LedgerPosting.objects.filter(account=account))


def wallet_balance(user: User) -> Decimal:
    return account_balance(buyer_wallet(user))


def lock_wallet(user: User) -> LedgerAccount:
    """Lock the buyer's wallet row: balance-dependent decisions for this buyer are serialized."""
    wallet = buyer_wallet(user)
    return LedgerAccount.objects.select_for_update().get(pk=wallet.pk)


def credit_grant(*, user: User, amount: Decimal, reason: str, key: str, created_by: User | None = None):
    """Give a buyer credit (promotion, goodwill): credits expense -> wallet."""
    if amount <= 0:
        raise InvalidInput("A credit is a positive amount.", fields={"amount": ["Must be positive."]})
    return post_transaction(
        kind=LedgerTransaction.Kind.CREDIT,
        key=key,
        description=reason,
        created_by=created_by,
        postings=[(platform_account(Kind.CREDITS_EXPENSE), -amount), (buyer_wallet(user), amount)],
        reference={"user": user.pk},
    )


def ledger_total() -> Decimal:
    """The sum of every posting: always zero."""
    return money_sum(LedgerPosting.objects.all())


# --- Funds guard for orders -----------------------------------------------------------------


def funds_guard(*, buyer: User, adding_per_hour: Decimal, upfront: Decimal = Decimal(0)) -> None:
    """Nothing runs on credit: the wallet must cover any upfront charge plus one hour of
    everything the buyer would then run. Precondition: the wallet row is locked (`lock_wallet`)."""
    from orders.models import Instance

    balance = account_balance(buyer_wallet(buyer))
    burn = money_sum(Instance.objects.live().filter(buyer=buyer).exclude(pricing="reserved"), "price_per_hour")
    needed = upfront + burn + adding_per_hour
    if balance < needed:
        raise InsufficientFunds(
            f"Your balance is ${balance:.2f}; this order needs ${needed:.2f} (one hour of everything running"
            f"{' plus the reserved term' if upfront else ''}). Top up first.",
            extra={"balance": str(balance), "needed": str(needed)},
        )


def reserved_prepay(*, order, amount: Decimal) -> LedgerTransaction:
    """A reserved term is paid up front into reserved prepayments, recognized as the term elapses."""
    return post_transaction(
        kind=LedgerTransaction.Kind.USAGE,
        key=f"reserved:{order.pk}",
        description=f"Reserved term: order {order.pk}, {order.count} x {order.term_hours} h",
        postings=[(buyer_wallet(order.buyer), -amount), (platform_account(Kind.RESERVED_PREPAYMENTS), amount)],
        reference={"order": order.pk},
    )


# --- Metering -------------------------------------------------------------------------------


def accrual_kind(instance) -> str | None:
    """What an instance accrues in its current status: compute while running (reserved: for the
    whole term), storage while its disk is kept, nothing otherwise."""
    from orders.models import InstanceStatus as S
    from orders.models import Pricing

    if instance.pricing == Pricing.RESERVED and instance.status != S.TERMINATED:
        return UsageRecord.Kind.COMPUTE
    if instance.status == S.RUNNING:
        return UsageRecord.Kind.COMPUTE
    if instance.status in (S.STOPPING, S.STOPPED, S.PREEMPTED):
        return UsageRecord.Kind.STORAGE
    return None


def _usage_record(instance, kind: str, start: datetime, end: datetime) -> UsageRecord | None:
    if instance.pricing == "reserved" and instance.reserved_until:
        end = min(end, instance.reserved_until)
    seconds = int((end - start).total_seconds())
    if seconds <= 0:
        return None
    if kind == UsageRecord.Kind.COMPUTE:
        rate = instance.price_per_hour
    else:
        rate = rating.storage_rate_per_hour(instance.instance_type.disk_gb, instance.storage_price_per_gb_month)
        if rate == 0:
            return None
    return UsageRecord(
        instance=instance,
        buyer_id=instance.buyer_id,
        organization_id=instance.host.organization_id,
        kind=kind,
        window_start=start,
        window_end=start + timezone.timedelta(seconds=seconds),
        seconds=seconds,
        rate_per_hour=rate,
    )


def meter_transition(*, instance, old_status: str, at: datetime) -> None:
    """Called in the same transaction as a status change: close the window the old status was
    accruing, and open one for the new status. Per-second exact."""
    from orders.models import Instance

    new_kind = accrual_kind(instance)
    old = Instance(pk=instance.pk, status=old_status, pricing=instance.pricing)
    old_kind = accrual_kind(old)
    if old_kind is not None and instance.metered_until is not None:
        record = _usage_record(instance, old_kind, instance.metered_until, at)
        if record is not None:
            UsageRecord.objects.bulk_create([record], ignore_conflicts=True)
    instance.metered_until = at if new_kind is not None else None
    Instance.objects.filter(pk=instance.pk).update(metered_until=instance.metered_until)


def meter_usage(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Beat: every accruing instance records usage since its last metered point, in bounded
    batches with set-based writes (one bulk insert, one update per batch). Rows are locked with
    SKIP LOCKED; a unique (instance, kind, window_start) makes a re-run add nothing."""
    from orders.models import Instance

    now = now or timezone.now()
    created = 0
    while True:
        with transaction.atomic():
            batch = list(
                Instance.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("instance_type", "host")
                .filter(metered_until__isnull=False, metered_until__lt=now)
                .order_by("pk")[:batch_size]
            )
            if not batch:
                return created
            records = []
            for instance in batch:
                kind = accrual_kind(instance)
                record = _usage_record(instance, kind, instance.metered_until, now) if kind else None
                if record is not None:
                    records.append(record)
            UsageRecord.objects.bulk_create(records, ignore_conflicts=True)
            Instance.objects.filter(pk__in=[i.pk for i in batch]).update(metered_until=now)
            created += len(records)
        if len(batch) < batch_size:
            return created


# --- Settlement -----------------------------------------------------------------------------


def settle_usage(*, batch_size: int = 500) -> int:
    """Beat: unsettled usage becomes ledger transactions (buyer wallet, or the reserved
    prepayment, -> supplier payable + platform revenue). Exactly once: each record is settled by
    the transaction keyed `usage:<id>`; concurrent workers skip each other's locked rows."""
    take_rate = Decimal(settings.PLATFORM_TAKE_RATE)
    revenue = platform_account(Kind.PLATFORM_REVENUE)
    reserved = platform_account(Kind.RESERVED_PREPAYMENTS)
    settled = 0
    while True:
        with transaction.atomic():
            batch = list(
                UsageRecord.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("instance", "buyer", "organization")
                .filter(settled_by__isnull=True)
                .order_by("pk")[:batch_size]
            )
            if not batch:
                return settled
            for record in batch:
                parts = rating.split(rating.charge_for(record.seconds, record.rate_per_hour), take_rate)
                if parts.charge == 0:
                    payer = None
                elif record.instance.pricing == "reserved" and record.kind == UsageRecord.Kind.COMPUTE:
                    payer = reserved
                else:
                    payer = buyer_wallet(record.buyer)
                postings = []
                if payer is not None:
                    postings = [(payer, -parts.charge)]
                    if parts.supplier_share:
                        postings.append((supplier_payable(record.organization), parts.supplier_share))
                    if parts.fee:
                        postings.append((revenue, parts.fee))
                if len(postings) < 2:
                    continue  # rounds to nothing: stays unsettled until a longer window
                record.settled_by = post_transaction(
                    kind=LedgerTransaction.Kind.USAGE,
                    key=f"usage:{record.pk}",
                    description=f"{record.kind} i-{record.instance_id}, {record.seconds} s",
                    postings=postings,
                    reference={"usage_record": record.pk, "instance": record.instance_id},
                )
                UsageRecord.objects.filter(pk=record.pk).update(settled_by=record.settled_by)
                settled += 1
        if len(batch) < batch_size:
            return settled


# --- Low balance ----------------------------------------------------------------------------

WARN_RUNWAY_HOURS = Decimal(1)


def low_balance_check(*, batch_size: int = 200) -> dict:
    """Beat: warn buyers with under an hour of runway; at zero, stop their instances (disks kept)."""
    from accounts.services import notify
    from orders.models import Instance, InstanceStatus
    from orders.services import instance_stop

    result = {"warned": 0, "stopped": 0}
    buyer_ids = list(
        Instance.objects.live().values_list("buyer_id", flat=True).distinct().order_by("buyer_id")[:batch_size]
    )
    for buyer_id in buyer_ids:
        with transaction.atomic():
            buyer = User.objects.select_for_update().get(pk=buyer_id)  # lock order: buyer, wallet, hosts
            balance = account_balance(lock_wallet(buyer))
            live = list(Instance.objects.live().filter(buyer=buyer).exclude(pricing="reserved"))
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
                        instance_stop(instance=instance, actor="platform")
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
