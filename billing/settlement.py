"""Settlement: unsettled usage records become ledger transactions, exactly once.

A batch of records is settled in a fixed number of queries: one transaction per payer (a buyer's
wallet, or the reserved prepayments for reserved terms) with each account's postings summed, and
every record linked to the transaction that settled it (`UsageRecord.settled_by`). The ledger thus
grows with the buyers and suppliers charged, not with running instances; each record keeps the
per-instance detail (seconds, rate, window) that statements, refunds and disputes read.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from marketplace.bulk import update_by_pk
from marketplace.walks import Walk, walk_from, walk_to_end

from . import rating
from .ledger import Entry, Kind, owner_accounts, platform_account, post_transactions_held
from .locks import UnsettledUsage, owner_accounts_held, unsettled_usage_batch
from .models import LedgerAccount, LedgerTransaction, UsageRecord


class PayerFacts(Protocol):
    """What decides who pays for a usage record and who earns it: a row of
    `billing.locks.unsettled_usage_batch`, or `usage_payer_facts` of a loaded record."""

    @property
    def kind(self) -> str: ...
    @property
    def organization_id(self) -> int: ...
    @property
    def instance_pricing(self) -> str: ...
    @property
    def backfills_buyer_id(self) -> int | None: ...


@dataclass
class _PayerGroup:
    payer: LedgerAccount
    records: list[UnsettledUsage]
    postings: dict[int, tuple[LedgerAccount, Decimal]]

    def add(self, account: LedgerAccount, amount: Decimal) -> None:
        if amount:
            held, total = self.postings.get(account.pk, (account, Decimal(0)))
            self.postings[account.pk] = (held, total + amount)

    def nonzero(self) -> list[tuple[LedgerAccount, Decimal]]:
        return [(account, amount) for account, amount in self.postings.values() if amount]

    def owner_account_ids(self) -> set[int]:
        return {pk for pk, (account, _) in self.postings.items() if account.kind in LedgerAccount.OWNER_KINDS}


def settle_usage(*, batch_size: int = 500) -> int:
    """Settle every unsettled usage record now, batch after batch; returns how many were settled."""
    return walk_to_end(settle_usage_batch, batch_size=batch_size)


def usage_payer_facts(record: UsageRecord) -> UnsettledUsage:
    """The payer facts of a record loaded with its instance and the instance it backfills."""
    instance = record.instance
    return UnsettledUsage(
        pk=record.pk,
        instance_id=record.instance_id,
        buyer_id=record.buyer_id,
        organization_id=record.organization_id,
        kind=record.kind,
        seconds=record.seconds,
        rate_per_hour=record.rate_per_hour,
        instance_pricing=instance.pricing,
        backfills_buyer_id=instance.backfills.buyer_id if instance.backfills_id else None,  # type: ignore[union-attr]
    )


def paid_from_wallet(record: PayerFacts) -> bool:
    """Whether the buyer's wallet pays this record (a reserved term's compute was prepaid)."""
    return not (record.instance_pricing == "reserved" and record.kind == UsageRecord.Kind.COMPUTE)


def earner_owner(record: PayerFacts) -> tuple[str, int]:
    """Whose account a record's supplier share goes to: the supplier's payable or, for spot on idle
    reserved capacity, the reserving buyer's wallet (who paid the supplier for the term)."""
    reserving_buyer = record.backfills_buyer_id
    if record.kind == UsageRecord.Kind.COMPUTE and reserving_buyer is not None:
        return Kind.BUYER_WALLET, reserving_buyer
    return Kind.SUPPLIER_PAYABLE, record.organization_id


def settle_usage_batch(*, after: int = 0, batch_size: int = 500) -> Walk:
    """Beat: one batch of unsettled usage records (in buyer order, after record `after`: see
    `unsettled_usage_batch`) becomes one ledger transaction per payer (buyer wallet, or the reserved
    prepayment, -> supplier payables + platform revenue), keyed `usage:<first record id>`.

    Exactly once: a record is linked to the transaction that settled it in the same database
    transaction; concurrent workers skip each other's locked records, and a payer whose accounts
    another transaction holds is left for the next pass instead of waited for. A record whose
    charge rounds to nothing (a second or two at a low rate) stays unsettled until a longer window;
    the walk moves past it, so it never holds the rest up."""
    take_rate = Decimal(settings.PLATFORM_TAKE_RATE)
    revenue = platform_account(Kind.PLATFORM_REVENUE)
    reserved = platform_account(Kind.RESERVED_PREPAYMENTS)
    with transaction.atomic():
        batch = unsettled_usage_batch(after=after, batch_size=batch_size)
        charged = [
            (record, rating.split(rating.charge_for(record.seconds, record.rate_per_hour), take_rate))
            for record in batch
        ]
        charged = [(record, parts) for record, parts in charged if parts.charge]
        earners = [earner_owner(record) for record, _ in charged]
        wallets = owner_accounts(
            Kind.BUYER_WALLET,
            [r.buyer_id for r, _ in charged] + [owner for kind, owner in earners if kind == Kind.BUYER_WALLET],
        )
        payables = owner_accounts(Kind.SUPPLIER_PAYABLE, [o for kind, o in earners if kind == Kind.SUPPLIER_PAYABLE])
        groups: dict[int, _PayerGroup] = {}
        for (record, parts), (earner_kind, earner_id) in zip(charged, earners, strict=True):
            payer = wallets[record.buyer_id] if paid_from_wallet(record) else reserved
            earner = (wallets if earner_kind == Kind.BUYER_WALLET else payables)[earner_id]
            group = groups.setdefault(payer.pk, _PayerGroup(payer=payer, records=[], postings={}))
            group.records.append(record)
            group.add(payer, -parts.charge)
            group.add(earner, parts.supplier_share)
            group.add(revenue, parts.fee)
        held = owner_accounts_held(pk for group in groups.values() for pk in group.owner_account_ids())
        # A payer whose postings cancel out (spot on its own reserved capacity with no fee) has nothing to post.
        ready = [g for g in groups.values() if g.owner_account_ids() <= held and len(g.nonzero()) >= 2]
        entries = [_entry(group) for group in ready]
        written = post_transactions_held(entries)
        settled = _link_records(
            {
                written[entry.key].pk: [r.pk for r in group.records]
                for entry, group in zip(entries, ready, strict=True)
                if entry.key in written
            }
        )
    return walk_from([r.pk for r in batch], batch_size=batch_size, done=settled)


def _entry(group: _PayerGroup) -> Entry:
    records = group.records
    instances = {r.instance_id for r in records}
    # The lowest id, not the first in buyer order: the reserved prepayments' group spans buyers.
    first = min(r.pk for r in records)
    return Entry(
        kind=LedgerTransaction.Kind.USAGE,
        key=f"usage:{first}",
        description=_("Usage: %(records)d records, %(instances)d instances, %(seconds)d s")
        % {"records": len(records), "instances": len(instances), "seconds": sum(r.seconds for r in records)},
        postings=group.nonzero(),
        reference={
            "usage_records": len(records),
            "first_usage_record": first,
            "last_usage_record": max(r.pk for r in records),
            "instances": len(instances),
        },
    )


def _link_records(records_by_transaction: dict[int, list[int]]) -> int:
    """Point every settled record at its transaction: one UPDATE."""
    settled_by = {pk: txn for txn, pks in records_by_transaction.items() for pk in pks}
    update_by_pk(UsageRecord, "settled_by", settled_by)
    return len(settled_by)
