"""Row locks of this app; the global lock order is in `accounts.locks`.

Ledger account rows are locked after the buyer and the hosts and before instances: a balance
that decides something (an order, a low-balance stop, a payout) is read under its account's lock.
Usage records are taken in batches with SKIP LOCKED so several workers share the work.
"""

from __future__ import annotations

from django.db.models import QuerySet

from marketplace.errors import NotFound

from .models import CreditNoteRequest, LedgerAccount, Payout, TopUp, UsageRecord


def ledger_account_lock(*, account_id: int) -> LedgerAccount:
    """Lock one ledger account; NotFound (404) when it is gone."""
    account = LedgerAccount.objects.select_for_update().filter(pk=account_id).first()
    if account is None:
        raise NotFound("No such ledger account.")
    return account


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
    """The next unsettled usage records (ids above `after`) no other worker holds, locked, with
    what settlement reads."""
    batch: QuerySet[UsageRecord] = (
        UsageRecord.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("instance", "instance__backfills", "buyer", "organization")
        .filter(pk__gt=after, settled_by__isnull=True)
        .order_by("pk")
    )
    return list(batch[:batch_size])
