"""The double-entry ledger: accounts, balanced transactions written once, credit grants.

Every posting balances (PostgreSQL checks it too, with a deferred trigger); a transaction's
`key` makes each money effect happen once. An owner account's (wallet's, payable's) stored
balance moves in the same database transaction as its postings (on PostgreSQL a trigger on the
postings moves it and nothing else may; see billing migration 0007), so a balance is one row read,
not a sum over every posting; `balance_mismatches` audits it against the postings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q, Sum
from django.utils.translation import gettext as _

from accounts.models import User
from marketplace.audit import audit_record
from marketplace.currency import platform_currency
from marketplace.errors import InvalidInput
from marketplace.walks import Walk, walk_from
from suppliers.models import Organization

from .errors import UnbalancedTransaction
from .locks import ledger_account_lock, ledger_account_lock_by_key, owner_rows_lock
from .models import LedgerAccount, LedgerPosting, LedgerTransaction

Kind = LedgerAccount.Kind
logger = logging.getLogger(__name__)


def _account_key(
    kind: str, *, user: User | None = None, organization: Organization | None = None, currency: str | None = None
) -> str:
    currency = currency or platform_currency().code
    owner = f"user:{user.pk}" if user else f"org:{organization.pk}" if organization else "platform"
    return f"{kind}:{owner}:{currency}"


def _account(
    kind: str, *, user: User | None = None, organization: Organization | None = None, currency: str | None = None
) -> LedgerAccount:
    currency = currency or platform_currency().code
    key = _account_key(kind, user=user, organization=organization, currency=currency)
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


def owner_accounts(kind: str, owner_ids: Iterable[int]) -> dict[int, LedgerAccount]:
    """The buyer wallets (kind BUYER_WALLET, by user id) or supplier payables (by organization id)
    of many owners at once, created where missing: two queries whatever their number."""
    currency = platform_currency().code
    prefix, owner_field = ("user", "user_id") if kind == Kind.BUYER_WALLET else ("org", "organization_id")
    owner_by_key = {f"{kind}:{prefix}:{owner}:{currency}": owner for owner in set(owner_ids)}
    if not owner_by_key:
        return {}
    found = {account.key: account for account in LedgerAccount.objects.filter(key__in=owner_by_key)}
    missing = [key for key in owner_by_key if key not in found]
    if missing:
        LedgerAccount.objects.bulk_create(
            [
                LedgerAccount(kind=kind, key=key, currency=currency, **{owner_field: owner_by_key[key]})
                for key in missing
            ],
            ignore_conflicts=True,
        )
        found.update((account.key, account) for account in LedgerAccount.objects.filter(key__in=missing))
    return {owner_by_key[key]: account for key, account in found.items()}


def buyer_wallet(user: User) -> LedgerAccount:
    return _account(Kind.BUYER_WALLET, user=user)


def supplier_payable(organization: Organization) -> LedgerAccount:
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


def _owner_deltas(postings: Iterable[tuple[LedgerAccount, Decimal]]) -> dict[int, Decimal]:
    deltas: dict[int, Decimal] = {}
    for account, amount in postings:
        if account.kind in LedgerAccount.OWNER_KINDS:
            deltas[account.pk] = deltas.get(account.pk, Decimal(0)) + amount
    return {account_id: delta for account_id, delta in deltas.items() if delta != 0}


def _balances_add_without_trigger(deltas: dict[int, Decimal]) -> None:
    """SQLite has no balance trigger (PostgreSQL's, billing migration 0007, adds each statement's
    postings to their owner accounts in NUMERIC, exactly). SQLite would add in floating point, so
    the sums are made here in Python; its IMMEDIATE transactions already hold the write lock."""
    if connection.vendor == "postgresql" or not deltas:
        return
    current = dict(LedgerAccount.objects.filter(pk__in=deltas).values_list("pk", "balance"))
    LedgerAccount.objects.bulk_update(
        [LedgerAccount(pk=pk, balance=balance + deltas[pk]) for pk, balance in current.items()], ["balance"]
    )


@dataclass(frozen=True)
class Entry:
    """One balanced ledger transaction to write (see `post_transactions_held`)."""

    kind: str
    key: str
    description: str
    postings: list[tuple[LedgerAccount, Decimal]]
    reference: dict = field(default_factory=dict)


def post_transactions_held(entries: list[Entry]) -> dict[str, LedgerTransaction]:
    """Write many balanced transactions in a fixed number of queries (automatic ones: usage
    settlement), keyed by `key`. Precondition: the caller is in a database transaction and holds
    the owner accounts they post to (`billing.locks.owner_accounts_held`). Keys already written are left alone
    and absent from the result."""
    for entry in entries:
        check_balanced(entry.postings)
    taken = set(LedgerTransaction.objects.filter(key__in=[e.key for e in entries]).values_list("key", flat=True))
    entries = [entry for entry in entries if entry.key not in taken]
    if not entries:
        return {}
    created = LedgerTransaction.objects.bulk_create(
        LedgerTransaction(kind=e.kind, key=e.key, description=e.description[:255], reference=e.reference)
        for e in entries
    )
    LedgerPosting.objects.bulk_create(
        LedgerPosting(transaction=ledger_transaction, account=account, amount=amount, currency=account.currency)
        for ledger_transaction, entry in zip(created, entries, strict=True)
        for account, amount in entry.postings
    )
    _balances_add_without_trigger(_owner_deltas(p for entry in entries for p in entry.postings))
    return {ledger_transaction.key: ledger_transaction for ledger_transaction in created}


def balance_mismatches(account_ids: list[int] | None = None) -> list[dict]:
    """Owner accounts (all, or those of `account_ids`) whose stored balance differs from the sum of
    their postings: the audit; it should always be empty. One grouped query (the postings'
    (account, transaction) index); PostgreSQL sums NUMERIC exactly, SQLite in Python."""
    owners = LedgerAccount.objects.filter(kind__in=LedgerAccount.OWNER_KINDS)
    ids = list(owners.values_list("pk", flat=True)) if account_ids is None else account_ids
    if connection.vendor == "postgresql":
        rows = (
            LedgerAccount.objects.filter(pk__in=ids)
            .annotate(posted=Sum("postings__amount", default=Decimal(0)))
            .filter(~Q(balance=F("posted")))
            .order_by("pk")
        )
        return [{"account": a.pk, "key": a.key, "balance": a.balance, "postings": a.posted} for a in rows]
    stored = {
        pk: (key, balance)
        for pk, key, balance in LedgerAccount.objects.filter(pk__in=ids).values_list("pk", "key", "balance")
    }
    posted = dict.fromkeys(stored, Decimal(0))
    for account_id, amount in LedgerPosting.objects.filter(account_id__in=ids).values_list("account_id", "amount"):
        posted[account_id] += amount
    return [
        {"account": pk, "key": key, "balance": balance, "postings": posted[pk]}
        for pk, (key, balance) in sorted(stored.items())
        if balance != posted[pk]
    ]


def balance_audit(*, after: int = 0, batch_size: int = 500) -> Walk:
    """Beat: one batch of owner accounts has its stored balance checked against its postings; a
    difference is logged as an error for staff (the ledger is the truth; nothing is changed)."""
    ids = list(
        LedgerAccount.objects.filter(kind__in=LedgerAccount.OWNER_KINDS, pk__gt=after)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    for mismatch in balance_mismatches(ids):
        logger.error("ledger account %(key)s: stored balance %(balance)s, postings sum %(postings)s", mismatch)
    return walk_from(ids, batch_size=batch_size, done=len(ids))


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
    deltas = _owner_deltas(postings)
    try:
        with transaction.atomic():
            owner_rows_lock(deltas)
            ledger_transaction = LedgerTransaction.objects.create(
                kind=kind, key=key, description=description[:255], reference=reference or {}, created_by=created_by
            )
            LedgerPosting.objects.bulk_create(
                LedgerPosting(transaction=ledger_transaction, account=account, amount=amount, currency=account.currency)
                for account, amount in postings
            )
            _balances_add_without_trigger(deltas)
    except IntegrityError:
        return LedgerTransaction.objects.get(key=key)
    if kind != LedgerTransaction.Kind.USAGE:  # usage is automatic and already row-per-record; audit the rest
        audit_record(
            action=f"money.{kind}",
            obj=ledger_transaction,
            actor=created_by,
            reason=description,
            after={"postings": [[account.key, str(amount)] for account, amount in postings]},
        )
    return ledger_transaction


def lock_wallet(user: User) -> LedgerAccount:
    """Lock the buyer's wallet row: balance-dependent decisions for this buyer are serialized. The
    row returned is current (its stored balance included): one query once the wallet exists."""
    wallet = ledger_account_lock_by_key(key=_account_key(Kind.BUYER_WALLET, user=user))
    return wallet if wallet is not None else ledger_account_lock(account_id=buyer_wallet(user).pk)


def credit_grant(
    *, user: User, amount: Decimal, reason: str, key: str, created_by: User | None = None
) -> LedgerTransaction:
    """Give a buyer credit (promotion, goodwill): credits expense -> wallet."""
    if amount <= 0:
        raise InvalidInput(_("A credit is a positive amount."), fields={"amount": [_("Must be positive.")]})
    return post_transaction(
        kind=LedgerTransaction.Kind.CREDIT,
        key=key,
        description=reason,
        created_by=created_by,
        postings=[(platform_account(Kind.CREDITS_EXPENSE), -amount), (buyer_wallet(user), amount)],
        reference={"user": user.pk},
    )
