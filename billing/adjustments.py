"""Staff adjustments: credit notes for buyers and refunds of usage charges, each with a reason."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import transaction

from accounts.models import User
from accounts.services import notify
from marketplace.errors import Forbidden, InvalidInput

from .ledger import Kind, buyer_wallet, platform_account, post_transaction
from .models import LedgerTransaction


def credit_note_issue(*, user: User, amount: Decimal | None, reason: str, staff: User) -> LedgerTransaction:
    """Staff credit a buyer (goodwill, SLA): credits expense -> wallet, with the reason on record."""
    if not staff.is_staff:
        raise Forbidden("Only staff issue credit notes.")
    if not (reason or "").strip():
        raise InvalidInput("A credit note needs a reason.", fields={"reason": ["Required."]})
    if amount is None or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise InvalidInput("A positive amount in whole cents.", fields={"amount": ["Invalid amount."]})
    with transaction.atomic():
        ledger_transaction = post_transaction(
            kind=LedgerTransaction.Kind.CREDIT,
            key=f"credit-note:{uuid.uuid4()}",
            description=f"Credit note: {reason.strip()}"[:255],
            created_by=staff,
            postings=[(platform_account(Kind.CREDITS_EXPENSE), -amount), (buyer_wallet(user), amount)],
            reference={"user": user.pk, "reason": reason.strip()},
        )
        notify(user=user, kind="credit_note", title=f"You received a ${amount} credit", body=reason.strip())
    return ledger_transaction


def usage_refund(*, ledger_transaction: LedgerTransaction, reason: str, staff: User) -> LedgerTransaction:
    """Staff refund a usage charge by reversing its transaction exactly (every posting negated)."""
    if not staff.is_staff:
        raise Forbidden("Only staff refund charges.")
    if not (reason or "").strip():
        raise InvalidInput("A refund needs a reason.", fields={"reason": ["Required."]})
    if ledger_transaction.kind != LedgerTransaction.Kind.USAGE:
        raise InvalidInput("Only usage charges are refunded this way.", fields={"transaction": ["Not a usage charge."]})
    postings = [(p.account, -p.amount) for p in ledger_transaction.postings.select_related("account")]
    return post_transaction(
        kind=LedgerTransaction.Kind.REFUND,
        key=f"reversal:{ledger_transaction.pk}",
        description=f"Refund of {ledger_transaction.description}: {reason.strip()}"[:255],
        created_by=staff,
        postings=postings,
        reference={"reverses": ledger_transaction.pk, "reason": reason.strip()},
    )
