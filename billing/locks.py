"""Row locks of this app; the global lock order is in `accounts.locks`.

Ledger account rows are locked after the buyer and the hosts and before instances: a balance
that decides something (an order, a low-balance stop, a payout) is read under its account's lock.
Usage records are taken in batches (buyer by buyer) with SKIP LOCKED so several workers share the work.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.db.models import F, QuerySet

from marketplace.errors import NotFound

from .models import CreditNoteRequest, LedgerAccount, Payout, TopUp, UsageRecord


def ledger_account_lock(*, account_id: int) -> LedgerAccount:
    """Lock one ledger account; NotFound (404) when it is gone."""
    account = LedgerAccount.objects.select_for_update().filter(pk=account_id).first()
    if account is None:
        raise NotFound("No such ledger account.")
    return account


def owner_rows_lock(account_ids: Iterable[int]) -> None:
    """PostgreSQL: lock the owner accounts a ledger transaction moves, in id order, before its
    postings go in (their trigger moves the balances), so two writers touching the same accounts
    queue instead of deadlocking."""
    ids = sorted(set(account_ids))
    if connection.vendor == "postgresql" and len(ids) > 1:
        list(LedgerAccount.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk"))


def owner_accounts_held(account_ids: Iterable[int]) -> set[int]:
    """Lock the owner accounts among `account_ids` that no other transaction holds (SKIP LOCKED,
    in id order) and return their ids. Settlement takes only these and leaves records whose accounts
    are busy for its next pass, so it never waits on a lock while holding others."""
    ids = sorted(set(account_ids))
    if not ids:
        return set()
    if connection.vendor != "postgresql":
        return set(ids)  # SQLite: the IMMEDIATE transaction already holds the whole database
    return set(
        LedgerAccount.objects.select_for_update(skip_locked=True)
        .filter(pk__in=ids)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def payout_lock(*, payout_id: int) -> Payout:
    """Lock one payout; NotFound (404) when it is gone."""
    payout = Payout.objects.select_for_update().filter(pk=payout_id).first()
    if payout is None:
        raise NotFound("No such payout.")
    return payout


def credit_note_request_lock(*, request_id: int) -> CreditNoteRequest:
    """Lock one credit note request (approve and reject decide under it); NotFound (404) when gone.
    Taken on its own, before any ledger account."""
    request = (
        CreditNoteRequest.objects.select_for_update(of=("self",)).select_related("user").filter(pk=request_id).first()
    )
    if request is None:
        raise NotFound("No such credit note request.")
    return request


def top_up_lock(*, top_up_id: int) -> TopUp | None:
    return TopUp.objects.select_for_update().filter(pk=top_up_id).first()


def unsettled_usage_batch(*, after: int, batch_size: int) -> list[UsageRecord]:
    """The next unsettled usage records, buyer by buyer: those of the buyers with ids above `after`
    (in buyer, then record order; at most `batch_size` records, so the last buyer's may be cut
    short) that no other worker holds, locked, with what settlement reads. Taken by buyer so that
    a batch settles many records of each payer in one ledger transaction (the partial index
    `usage_unsettled_by_buyer` serves both the buyers and their records)."""
    next_buyers = (
        UsageRecord.objects.filter(buyer_id__gt=after, settled_by__isnull=True)
        .order_by("buyer_id")
        .values("buyer_id")
        .distinct()[:batch_size]
    )
    batch = with_payers(
        UsageRecord.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(buyer_id__in=next_buyers, settled_by__isnull=True)
        .order_by("buyer_id", "pk")
    )
    return list(batch[:batch_size])


def with_payers(records: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
    """Usage records with what decides who pays and who earns (`billing.settlement`), read in the
    same query instead of loading each instance: `instance_pricing`, and `backfills_buyer_id`
    (the buyer whose reserved instance a spot instance backfills, or None)."""
    return records.annotate(
        instance_pricing=F("instance__pricing"), backfills_buyer_id=F("instance__backfills__buyer_id")
    )
