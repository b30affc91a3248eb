"""Row locks of this app; the global lock order is in `accounts.locks`.

Ledger account rows are locked after the buyer and the hosts and before instances: a balance
that decides something (an order, a low-balance stop, a payout) is read under its account's lock.
Usage records are taken in batches (buyer by buyer) with SKIP LOCKED so several workers share the work.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import NamedTuple

from django.db import connection
from django.utils.translation import gettext as _

from marketplace.errors import NotFound
from marketplace.money import PRICE_QUANTUM

from .models import CreditNoteRequest, LedgerAccount, Payout, TopUp


def ledger_account_lock(*, account_id: int) -> LedgerAccount:
    """Lock one ledger account; NotFound (404) when it is gone."""
    account = LedgerAccount.objects.select_for_update().filter(pk=account_id).first()
    if account is None:
        raise NotFound(_("No such ledger account."))
    return account


def ledger_account_lock_by_key(*, key: str) -> LedgerAccount | None:
    """Lock the ledger account with this key; None when there is none yet."""
    return LedgerAccount.objects.select_for_update().filter(key=key).first()


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
        raise NotFound(_("No such payout."))
    return payout


def credit_note_request_lock(*, request_id: int) -> CreditNoteRequest:
    """Lock one credit note request (approve and reject decide under it); NotFound (404) when gone.
    Taken on its own, before any ledger account."""
    request = (
        CreditNoteRequest.objects.select_for_update(of=("self",)).select_related("user").filter(pk=request_id).first()
    )
    if request is None:
        raise NotFound(_("No such credit note request."))
    return request


def top_up_lock(*, top_up_id: int) -> TopUp | None:
    return TopUp.objects.select_for_update().filter(pk=top_up_id).first()


class UnsettledUsage(NamedTuple):
    """What settlement reads of a usage record, as a plain row (no model objects at market size)."""

    pk: int
    instance_id: int
    buyer_id: int
    organization_id: int
    kind: str
    seconds: int
    rate_per_hour: Decimal
    instance_pricing: str
    backfills_buyer_id: int | None


def unsettled_usage_batch(*, after: int, batch_size: int) -> list[UnsettledUsage]:
    """The next unsettled usage records in (buyer, id) order after record `after` (0: from the
    start), at most `batch_size`, that no other worker holds, locked, with what settlement reads.
    Taken buyer by buyer so that a batch settles many records of each payer in one ledger
    transaction; the partial index `usage_unsettled_by_buyer` serves the order and the position."""
    lock = " FOR UPDATE OF u SKIP LOCKED" if connection.vendor == "postgresql" else ""  # SQLite: one writer
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT u.id, u.instance_id, u.buyer_id, u.organization_id, u.kind, u.seconds, u.rate_per_hour,"
            " i.pricing, b.buyer_id"
            " FROM billing_usagerecord u JOIN orders_instance i ON i.id = u.instance_id"
            " LEFT JOIN orders_instance b ON b.id = i.backfills_id"
            " WHERE u.settled_by_id IS NULL AND (u.buyer_id, u.id) >"
            " (COALESCE((SELECT buyer_id FROM billing_usagerecord WHERE id = %s), 0), %s)"
            f" ORDER BY u.buyer_id, u.id LIMIT %s{lock}",
            [after, after, batch_size],
        )
        rows = cursor.fetchall()
    # SQLite hands back the rate as a float: made a Decimal of the field's places, as the ORM does.
    return [
        UnsettledUsage(
            pk,
            instance,
            buyer,
            organization,
            kind,
            seconds,
            Decimal(str(rate)).quantize(PRICE_QUANTUM),
            pricing,
            backfilled,
        )
        for pk, instance, buyer, organization, kind, seconds, rate, pricing, backfilled in rows
    ]
