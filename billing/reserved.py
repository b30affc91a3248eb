"""Reserved terms in the ledger: paid up front, refunded pro rata (less a fee) when cancelled early."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.conf import settings

from accounts.models import User

from . import rating
from .ledger import Kind, buyer_wallet, platform_account, post_transaction
from .models import LedgerTransaction


def reserved_prepay(*, buyer: User, order_id: int, count: int, term_hours: int, amount: Decimal) -> LedgerTransaction:
    """A reserved term is paid up front into reserved prepayments, recognized as the term elapses."""
    return post_transaction(
        kind=LedgerTransaction.Kind.USAGE,
        key=f"reserved:{order_id}",
        description=f"Reserved term: order {order_id}, {count} x {term_hours} h",
        postings=[(buyer_wallet(buyer), -amount), (platform_account(Kind.RESERVED_PREPAYMENTS), amount)],
        reference={"order": order_id},
    )


def reserved_cancellation_refund(
    *, buyer: User, instance_id: int, reserved_until: datetime, price_per_hour: Decimal, at: datetime
) -> LedgerTransaction | None:
    """Terminating a reserved instance before its term ends refunds the unused time pro rata,
    minus the stated cancellation fee (RESERVED_CANCELLATION_FEE of the unused part), which the
    platform keeps. Called in the terminate transaction, after metering closed the window."""
    if reserved_until <= at:
        return None
    unused = rating.charge_for(int((reserved_until - at).total_seconds()), price_per_hour)
    if unused <= 0:
        return None
    fee = rating.split(unused, Decimal(settings.RESERVED_CANCELLATION_FEE)).fee
    postings = [(platform_account(Kind.RESERVED_PREPAYMENTS), -unused), (buyer_wallet(buyer), unused - fee)]
    if fee:
        postings.append((platform_account(Kind.PLATFORM_REVENUE), fee))
    return post_transaction(
        kind=LedgerTransaction.Kind.REFUND,
        key=f"reserved-cancel:{instance_id}",
        description=f"Reserved i-{instance_id} cancelled: unused term refunded less the cancellation fee",
        postings=postings,
        reference={"instance": instance_id, "unused": str(unused), "fee": str(fee)},
    )
