"""Row locks of this app. Every `select_for_update` of the project lives in a `locks.py`.

The global lock order (take locks in this order, never the reverse, so no two transactions wait
on each other): buyer (`accounts.locks`) -> organization -> hosts in id order (`suppliers.locks`)
-> ledger accounts (`billing.locks`) -> instances -> other rows of one instance (`orders.locks`).
Several ledger accounts are locked in id order, before the postings that move their balances.
Settlement is outside the order: it takes usage records and then the accounts it posts to with
SKIP LOCKED, so it never waits for a lock while holding one and leaves busy payers for later.
"""

from __future__ import annotations

from marketplace.errors import NotFound

from .models import User


def user_lock(*, user_id: int) -> User:
    """Lock one user row (a buyer's orders, spend limit and suspension are decided under it);
    NotFound (404) when the account is gone."""
    user = User.objects.select_for_update().filter(pk=user_id).first()
    if user is None:
        raise NotFound("No such account.")
    return user
