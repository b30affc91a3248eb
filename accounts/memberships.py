"""Members of a group — a team (`accounts.teams`) or a supplier organization
(`suppliers.organizations`) — and the rules both follow: who may invite whom as what, change a
role, remove someone, leave; and invitations by email, issued with a one-time link, accepted once
by the person the email was sent to, before they expire. Callers hold the group's row locked and
pass its `memberships` and `invitations` managers."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from marketplace.errors import ApplicationError, Conflict, Forbidden, InvalidInput, NotFound

from .errors import AccountErrorCode
from .locks import invitation_lock
from .models import TEAM_ACCOUNT_DOMAIN, Invitation, User
from .roles import MANAGERS, Role, may_manage_role
from .services import hash_api_secret

MAX_OPEN_INVITATIONS = 100  # per team or organization: invitations are emails to any address


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Any
    token: str  # shown once (the emailed link carries it)
    url: str


def name_check(name: str | None) -> str:
    """A group's name: 1 to 100 printable characters."""
    name = (name or "").strip()
    if not name or len(name) > 100 or not name.isprintable():
        raise InvalidInput(
            _("A name is 1 to 100 printable characters."), fields={"name": [_("Enter 1 to 100 printable characters.")]}
        )
    return name


def invitation_email_normalize(email: str | None) -> str:
    email = User.objects.normalize_email((email or "").strip()).lower()
    try:
        validate_email(email)
    except ValidationError:
        raise InvalidInput(
            _("Enter the email address to invite."), fields={"email": [_("Enter a valid email address.")]}
        ) from None
    if email.endswith("@" + TEAM_ACCOUNT_DOMAIN):
        raise InvalidInput(_("A team's address receives no mail."), fields={"email": [_("Not a mailbox.")]})
    return email


def invitation_role_check(role: str | None) -> str:
    if role not in Role.values:
        raise InvalidInput(
            _("Unknown role."), fields={"role": [_("Choose one of %(roles)s.") % {"roles": ", ".join(Role.values)}]}
        )
    return role


def invitation_issue(*, invitations: Any, email: str, role: str, invited_by: User, to_what: str) -> IssuedInvitation:
    """A new invitation in `invitations` (a team's or an organization's related manager, whose row
    the caller holds locked). An open invitation to the same address is replaced."""
    now = timezone.now()
    invitations.filter(email=email, accepted_at__isnull=True, revoked_at__isnull=True).update(revoked_at=now)
    if invitations.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now).count() >= (
        MAX_OPEN_INVITATIONS
    ):
        raise Conflict(
            _("At most %(limit)s invitations can be open at once; revoke some first.") % {"limit": MAX_OPEN_INVITATIONS}
        )
    token = secrets.token_urlsafe(32)
    invitation = invitations.create(
        email=email,
        role=role,
        token_hash=hash_api_secret(token),
        invited_by=invited_by,
        expires_at=now + timedelta(days=settings.INVITATION_TTL_DAYS),
    )
    url = settings.SITE_URL + reverse("accounts:invitation", args=[token])
    inviter = invited_by.full_name or invited_by.email
    body = _(
        "%(inviter)s invites you to join %(group)s as %(role)s.\n\n"
        "Log in (or sign up) with this email address, then open:\n%(url)s\n\n"
        "The link works once and expires in %(days)s days."
    ) % {
        "inviter": inviter,
        "group": to_what,
        "role": Role(role).label.lower(),
        "url": url,
        "days": settings.INVITATION_TTL_DAYS,
    }
    subject = _("You are invited to join %(group)s") % {"group": to_what}
    transaction.on_commit(lambda: send_mail(subject, body, None, [email], fail_silently=True))
    return IssuedInvitation(invitation=invitation, token=token, url=url)


def invitation_find(model: type[Invitation], token: str) -> Any:
    """The invitation with this token, locked (the caller is in a transaction), or None."""
    return invitation_lock(model.objects.filter(token_hash=hash_api_secret(token or "")))  # type: ignore[attr-defined]


def invitation_invalid() -> NotFound:
    return NotFound(_("This invitation link is not valid."), code=AccountErrorCode.INVITATION_INVALID)


def invitation_accept(invitation: Any, *, user: User) -> None:
    """Mark `invitation` (locked) accepted by `user`, or refuse: closed, expired, or sent to
    another address."""
    if invitation is None:
        raise invitation_invalid()
    if user.is_team:
        raise Forbidden(_("A team cannot join a team or an organization."), code=AccountErrorCode.ROLE_FORBIDS)
    if not invitation.is_open():
        raise Conflict(
            _("This invitation was already used, revoked, or has expired: ask for a new one."),
            code=AccountErrorCode.INVITATION_CLOSED,
        )
    if invitation.email != user.email.lower():
        raise Forbidden(
            _("This invitation was sent to another email address: log in with that address to accept it."),
            code=AccountErrorCode.INVITATION_FOR_ANOTHER_EMAIL,
        )
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])


def invitation_take(model: type[Invitation], token: str, *, user: User, lock_group: Callable[[Any], Any]) -> Any:
    """Accept the invitation `token` names for `user`: the group it names is locked first
    (`lock_group(invitation)`, the lock order), then the invitation. Returns (group, invitation)."""
    found = model.objects.filter(token_hash=hash_api_secret(token or "")).first()  # type: ignore[attr-defined]
    if found is None:
        raise invitation_invalid()
    group = lock_group(found)
    invitation = invitation_find(model, token)
    invitation_accept(invitation, user=user)
    return group, invitation


def invitation_revoke(invitations: Any, *, invitation_id: int) -> None:
    """Revoke an open invitation of `invitations` (whose owner row the caller holds locked)."""
    updated = invitations.filter(pk=invitation_id, accepted_at__isnull=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    if not updated:
        raise NotFound(_("No such open invitation."), code=AccountErrorCode.INVITATION_INVALID)


def role_refused(role: str) -> ApplicationError:
    return Forbidden(
        _("Your role does not let you give or take away the role '%(role)s'.") % {"role": role},
        code=AccountErrorCode.ROLE_FORBIDS,
    )


def manager_membership(memberships: Any, by: User) -> Any:
    """`by`'s membership, when they may manage members (owners and admins); 404 when they are not
    in the group at all, so groups one does not belong to do not exist for them."""
    membership = memberships.filter(user=by).first()
    if membership is None:
        raise NotFound(_("You are not a member."), code=AccountErrorCode.NOT_A_MEMBER)
    if membership.role not in MANAGERS:
        raise Forbidden(_("Only owners and admins manage members."), code=AccountErrorCode.ROLE_FORBIDS)
    return membership


def members_invite(
    *, memberships: Any, invitations: Any, by: User, email: str | None, role: str | None, to_what: str
) -> IssuedInvitation:
    """Email an invitation with `role`. Owners invite anyone as anything; admins only below admin."""
    manager = manager_membership(memberships, by)
    role = invitation_role_check(role)
    email = invitation_email_normalize(email)
    if not may_manage_role(manager.role, role):
        raise role_refused(role)
    if memberships.filter(user__email__iexact=email).exists():
        raise Conflict(_("This person is already a member."), code=AccountErrorCode.ALREADY_MEMBER)
    return invitation_issue(invitations=invitations, email=email, role=role, invited_by=by, to_what=to_what)


def members_invitation_revoke(*, memberships: Any, invitations: Any, by: User, invitation_id: int) -> None:
    manager = manager_membership(memberships, by)
    invitation = invitations.filter(pk=invitation_id).first()
    if invitation is not None and not may_manage_role(manager.role, invitation.role):
        raise role_refused(invitation.role)
    invitation_revoke(invitations, invitation_id=invitation_id)


def _last_owner() -> Conflict:
    return Conflict(
        _("At least one owner must remain: make someone else owner first."), code=AccountErrorCode.LAST_OWNER
    )


def member_role_set(*, memberships: Any, by: User, user_id: int, role: str | None) -> Any:
    """Change a member's role. Owners change anyone's; admins only roles below admin, to roles below
    admin. The group always keeps an owner."""
    manager = manager_membership(memberships, by)
    role = invitation_role_check(role)
    target = memberships.filter(user_id=user_id).first()
    if target is None:
        raise NotFound(_("No such member."), code=AccountErrorCode.NOT_A_MEMBER)
    for touched in (target.role, role):
        if not may_manage_role(manager.role, touched):
            raise role_refused(touched)
    if target.role == Role.OWNER and role != Role.OWNER and not _other_owner(memberships, user_id):
        raise _last_owner()
    target.role = role
    target.save(update_fields=["role"])
    return target


def member_remove(*, memberships: Any, by: User, user_id: int) -> None:
    """Remove a member, or leave when `by` is that member. The last owner cannot go."""
    target = memberships.filter(user_id=user_id).first()
    if by.pk != user_id:
        manager = manager_membership(memberships, by)
        if target is not None and not may_manage_role(manager.role, target.role):
            raise role_refused(target.role)
    if target is None:
        raise NotFound(_("No such member."), code=AccountErrorCode.NOT_A_MEMBER)
    if target.role == Role.OWNER and not _other_owner(memberships, user_id):
        raise _last_owner()
    target.delete()


def _other_owner(memberships: Any, user_id: int) -> bool:
    return bool(memberships.filter(role=Role.OWNER).exclude(user_id=user_id).exists())
