"""Row locks of this app. Every `select_for_update` of the project lives in a `locks.py`.

The global lock order (take locks in this order, never the reverse, so no two transactions wait
on each other): team (its memberships and invitations) -> buyer (`accounts.locks`) -> organization
-> hosts in id order (`suppliers.locks`) -> ledger accounts (`billing.locks`) -> instances -> other
rows of one instance (`orders.locks`).
Several ledger accounts are locked in id order, before the postings that move their balances.
Settlement is outside the order: it takes usage records and then the accounts it posts to with
SKIP LOCKED, so it never waits for a lock while holding one and leaves busy payers for later.
"""

from __future__ import annotations

from typing import TypeVar

from django.db.models import Model, QuerySet
from django.utils.translation import gettext as _

from marketplace.errors import NotFound

from .models import Team, User

InvitationT = TypeVar("InvitationT", bound=Model)


def user_lock(*, user_id: int) -> User:
    """Lock one user row (a buyer's orders, spend limit and suspension are decided under it);
    NotFound (404) when the account is gone."""
    user = User.objects.select_for_update().filter(pk=user_id).first()
    if user is None:
        raise NotFound(_("No such account."))
    return user


def team_lock(*, team_id: int) -> Team:
    """Lock one team row: its memberships and invitations change under it (so two owners demoting
    each other at once cannot leave the team without one). Taken before the team account's row."""
    team = Team.objects.select_for_update().select_related("account").filter(pk=team_id).first()
    if team is None:
        raise NotFound(_("No such team."))
    return team


def invitation_lock(queryset: QuerySet[InvitationT]) -> InvitationT | None:
    """Lock the one invitation `queryset` selects (accepting it happens once)."""
    return queryset.select_for_update().first()
