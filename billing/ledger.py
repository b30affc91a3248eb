"""The double-entry ledger: accounts, balanced transactions written once, credit grants.

Every posting balances (PostgreSQL checks it too, with a deferred trigger); a transaction's
`key` makes each money effect happen once.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.db import IntegrityError, transaction

from accounts.models import User
from marketplace.audit import audit_record
from marketplace.errors import InvalidInput
from suppliers.models import Organization

from .errors import UnbalancedTransaction
from .locks import ledger_account_lock
from .models import LedgerAccount, LedgerPosting, LedgerTransaction

Kind = LedgerAccount.Kind
CURRENCY = "USD"


def _account(
    kind: str, *, user: User | None = None, organization: Organization | None = None, currency: str = CURRENCY
) -> LedgerAccount:
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
    """Lock the buyer's wallet row: balance-dependent decisions for this buyer are serialized."""
    return ledger_account_lock(account_id=buyer_wallet(user).pk)


def credit_grant(
    *, user: User, amount: Decimal, reason: str, key: str, created_by: User | None = None
) -> LedgerTransaction:
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
