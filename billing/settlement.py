"""Settlement: unsettled usage records become ledger transactions, exactly once."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import transaction

from marketplace.walks import Walk, walk_from, walk_to_end

from . import rating
from .ledger import Kind, buyer_wallet, platform_account, post_transaction, supplier_payable
from .locks import unsettled_usage_batch
from .models import LedgerTransaction, UsageRecord


def settle_usage(*, batch_size: int = 500) -> int:
    """Settle every unsettled usage record now, batch after batch; returns how many were settled."""
    return walk_to_end(settle_usage_batch, batch_size=batch_size)


def settle_usage_batch(*, after: int = 0, batch_size: int = 500) -> Walk:
    """Beat: one keyset batch of unsettled usage records (ids above `after`) becomes ledger
    transactions (buyer wallet, or the reserved prepayment, -> supplier payable + platform
    revenue). Exactly once: each record is settled by the transaction keyed `usage:<id>`;
    concurrent workers skip each other's locked rows. A record whose charge rounds to nothing (a
    second or two at a low rate) has nothing to post and stays unsettled; the walk moves past it,
    so such records never hold the rest up (before, a batch of them was taken again and again)."""
    take_rate = Decimal(settings.PLATFORM_TAKE_RATE)
    revenue = platform_account(Kind.PLATFORM_REVENUE)
    reserved = platform_account(Kind.RESERVED_PREPAYMENTS)
    settled = 0
    with transaction.atomic():
        batch = unsettled_usage_batch(after=after, batch_size=batch_size)
        for record in batch:
            parts = rating.split(rating.charge_for(record.seconds, record.rate_per_hour), take_rate)
            if parts.charge == 0:
                payer = None
            elif record.instance.pricing == "reserved" and record.kind == UsageRecord.Kind.COMPUTE:
                payer = reserved
            else:
                payer = buyer_wallet(record.buyer)
            earner = supplier_payable(record.organization)
            if record.kind == UsageRecord.Kind.COMPUTE and record.instance.backfills_id:
                # Spot on idle reserved capacity: the reserving buyer (who paid the supplier for the
                # term) earns it, less the commission.
                # backfills_id is checked above; no cast, as orders.Instance is a later layer than billing.
                earner = buyer_wallet(record.instance.backfills.buyer)  # type: ignore[union-attr]
            postings = []
            if payer is not None:
                postings = [(payer, -parts.charge)]
                if parts.supplier_share:
                    postings.append((earner, parts.supplier_share))
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
    return walk_from([r.pk for r in batch], batch_size=batch_size, done=settled)
