"""Teams: buyer organizations. A team's account (a User with `is_team`) pays and owns; people act
for it by their role (`accounts.roles`). Memberships and invitations change under the team's lock,
by the rules every group follows (`accounts.memberships`)."""

from __future__ import annotations

import uuid

from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from marketplace.errors import Conflict, Forbidden, NotFound

from .errors import AccountErrorCode
from .locks import team_lock
from .memberships import (
    IssuedInvitation,
    invitation_take,
    manager_membership,
    member_remove,
    member_role_set,
    members_invitation_revoke,
    members_invite,
    name_check,
)
from .models import TEAM_ACCOUNT_DOMAIN, Team, TeamInvitation, TeamMembership, User
from .roles import Role
from .services import hash_api_secret

MAX_TEAMS_PER_PERSON = 20


def _room_for_another_team(user: User) -> None:
    if TeamMembership.objects.filter(user=user).count() >= MAX_TEAMS_PER_PERSON:
        raise Conflict(_("One person can belong to at most %(limit)s teams.") % {"limit": MAX_TEAMS_PER_PERSON})


@transaction.atomic
def team_create(*, owner: User, name: str | None) -> Team:
    """A new team with `owner` as its first owner, and the account that will pay for it (no
    password: nobody logs in as a team)."""
    name = name_check(name)
    if owner.is_team:
        raise Forbidden(_("A team cannot create teams."), code=AccountErrorCode.ROLE_FORBIDS)
    _room_for_another_team(owner)
    account = User(email=f"team-{uuid.uuid4().hex}@{TEAM_ACCOUNT_DOMAIN}", full_name=name, is_team=True)
    account.set_unusable_password()
    account.save()
    team = Team.objects.create(name=name, account=account)
    TeamMembership.objects.create(team=team, user=owner, role=Role.OWNER)
    return team


def team_memberships_of(*, user: User) -> QuerySet[TeamMembership]:
    """The teams a person belongs to, with their role in each."""
    return TeamMembership.objects.filter(user=user).select_related("team", "team__account").order_by("team__name")


def team_membership_get(*, user: User, team_id: int | str) -> TeamMembership:
    """The person's membership of this team; 404 (`not_a_member`) when they are not in it."""
    try:
        return TeamMembership.objects.select_related("team", "team__account").get(user=user, team_id=int(team_id))
    except (TeamMembership.DoesNotExist, ValueError, TypeError):
        raise NotFound(_("No such team."), code=AccountErrorCode.NOT_A_MEMBER) from None


@transaction.atomic
def team_rename(*, team_id: int, by: User, name: str | None) -> Team:
    team = team_lock(team_id=team_id)
    manager_membership(team.memberships, by)
    team.name = name_check(name)
    team.save(update_fields=["name"])
    User.objects.filter(pk=team.account_id).update(full_name=team.name)
    return team


@transaction.atomic
def team_invite(*, team_id: int, by: User, email: str | None, role: str | None) -> IssuedInvitation:
    team = team_lock(team_id=team_id)
    return members_invite(
        memberships=team.memberships, invitations=team.invitations, by=by, email=email, role=role, to_what=team.name
    )


@transaction.atomic
def team_invitation_revoke(*, team_id: int, by: User, invitation_id: int) -> None:
    team = team_lock(team_id=team_id)
    members_invitation_revoke(
        memberships=team.memberships, invitations=team.invitations, by=by, invitation_id=invitation_id
    )


def team_invitation_for_token(token: str) -> TeamInvitation | None:
    """The team invitation a link's token names (not locked), or None."""
    return TeamInvitation.objects.select_related("team").filter(token_hash=hash_api_secret(token or "")).first()


@transaction.atomic
def team_invitation_accept(*, token: str, user: User) -> TeamMembership:
    """Join the team the invitation names, with its role."""
    team, invitation = invitation_take(
        TeamInvitation, token, user=user, lock_group=lambda found: team_lock(team_id=found.team_id)
    )
    if team.memberships.filter(user=user).exists():
        raise Conflict(_("You are already in this team."), code=AccountErrorCode.ALREADY_MEMBER)
    _room_for_another_team(user)
    return TeamMembership.objects.create(team=team, user=user, role=invitation.role)


@transaction.atomic
def team_member_role_set(*, team_id: int, by: User, user_id: int, role: str | None) -> TeamMembership:
    team = team_lock(team_id=team_id)
    changed: TeamMembership = member_role_set(memberships=team.memberships, by=by, user_id=user_id, role=role)
    return changed


@transaction.atomic
def team_member_remove(*, team_id: int, by: User, user_id: int) -> None:
    team = team_lock(team_id=team_id)
    member_remove(memberships=team.memberships, by=by, user_id=user_id)
