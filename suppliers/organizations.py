"""Supplier organizations: onboarding, staff review, members.

Owner of each status (STYLE 4b): the supplier creates and edits its organization (`pending`);
only staff approve, reject or suspend it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.errors import AccountErrorCode
from accounts.memberships import (
    IssuedInvitation,
    invitation_take,
    manager_membership,
    member_remove,
    member_role_set,
    members_invitation_revoke,
    members_invite,
)
from accounts.models import User
from accounts.scopes import ACCOUNT, Scope
from accounts.services import hash_api_secret, notify_all
from marketplace.audit import audit_record
from marketplace.errors import Conflict, ErrorCode, Forbidden, InvalidInput, validation_fields

from .errors import SupplierErrorCode
from .locks import hosts_lock, organization_lock
from .models import Host, Membership, Organization, OrganizationInvitation
from .offers import offers_refresh_for_host
from .selectors import membership_for_user, membership_role_require

ORGANIZATION_FIELDS = (
    "name",
    "legal_name",
    "website",
    "description",
    "contact_name",
    "contact_email",
    "contact_phone",
    "country",
    "payout_country",
)


def full_clean_or_invalid(instance: models.Model, *, exclude: list[str] | None = None) -> None:
    try:
        instance.full_clean(exclude=exclude)
    except ValidationError as error:
        raise InvalidInput(_("Some fields are not valid."), fields=validation_fields(error)) from error


def unknown_fields_refuse(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InvalidInput(
            _("Unknown field(s): %(fields)s.") % {"fields": ", ".join(unknown)},
            code=ErrorCode.UNKNOWN_FIELD,
            fields={name: [_("Unknown field.")] for name in unknown},
        )


def organization_of_member(user: User, *, area: str = Scope.SUPPLIER) -> Organization:
    """The organization `user` changes things of `area` for (their role must allow it), else 403."""
    membership = membership_for_user(user=user)
    if membership is None:
        raise Forbidden(_("Set up your supplier organization first."), code=SupplierErrorCode.NOT_A_SUPPLIER)
    membership_role_require(membership, area, write=True)
    return membership.organization


@transaction.atomic
def organization_create(*, owner: User, **data: Any) -> Organization:
    """Start supplier onboarding: the organization is `pending` until staff approve it."""
    unknown_fields_refuse(data, ORGANIZATION_FIELDS)
    if owner.is_team:
        raise Forbidden(
            _("A team rents compute; supplying it is done as a person."), code=AccountErrorCode.ROLE_FORBIDS
        )
    if Membership.objects.filter(user=owner).exists():
        raise Conflict(_("You already belong to a supplier organization."), code=AccountErrorCode.ALREADY_MEMBER)
    for code_field in ("country", "payout_country"):
        if data.get(code_field):
            data[code_field] = str(data[code_field]).upper()
    organization = Organization(**data)
    full_clean_or_invalid(organization)
    organization.save()
    Membership.objects.create(organization=organization, user=owner, role=Membership.Role.OWNER)
    if owner.role != User.Role.SUPPLIER:
        owner.role = User.Role.SUPPLIER
        owner.save(update_fields=["role"])
    return organization


@transaction.atomic
def organization_update(*, by: User, **data: Any) -> Organization:
    """Edit `by`'s organization's profile: owners and admins."""
    unknown_fields_refuse(data, ORGANIZATION_FIELDS)
    organization = organization_lock(organization_id=organization_of_member(by, area=ACCOUNT).pk)
    for key, value in data.items():
        setattr(organization, key, value.upper() if key.endswith("country") and isinstance(value, str) else value)
    full_clean_or_invalid(organization)
    organization.save()
    return organization


def _organization_set_status(
    *, organization: Organization, status: str, reason: str = "", actor: User | None = None
) -> Organization:
    """Change the review status; locks the organization then each of its hosts (id order). Audited."""
    organization = organization_lock(organization_id=organization.pk)
    audit_record(
        action=f"organization.{status}",
        obj=organization,
        actor=actor,
        reason=reason,
        before={"status": organization.status},
        after={"status": status},
    )
    organization.status = status
    organization.status_reason = reason
    organization.reviewed_at = timezone.now()
    organization.save(update_fields=["status", "status_reason", "reviewed_at"])
    for host in hosts_lock(Host.objects.filter(organization=organization)):
        host.organization = organization
        offers_refresh_for_host(host=host)
    return organization


@transaction.atomic
def organization_approve(*, organization: Organization, actor: User | None = None) -> Organization:
    """Staff approve a supplier: its approved hosts are offered from now on."""
    return _organization_set_status(organization=organization, status=Organization.Status.APPROVED, actor=actor)


@transaction.atomic
def organization_reject(*, organization: Organization, reason: str, actor: User | None = None) -> Organization:
    if not reason.strip():
        raise InvalidInput(_("A rejection needs a reason the supplier will see."), fields={"reason": [_("Required.")]})
    return _organization_set_status(
        organization=organization, status=Organization.Status.REJECTED, reason=reason, actor=actor
    )


@transaction.atomic
def organization_suspend(*, organization: Organization, reason: str, actor: User | None = None) -> Organization:
    """Its offers go; its members are told. Renters are told by `orders.supply.organization_suspend`,
    which entry points call."""
    if not reason.strip():
        raise InvalidInput(_("A suspension needs a reason."), fields={"reason": [_("Required.")]})
    organization = _organization_set_status(
        organization=organization, status=Organization.Status.SUSPENDED, reason=reason, actor=actor
    )
    organization_notify_members(organization, _("Your organization was suspended"), reason)
    return organization


def organization_notify_members(organization: Organization, title: str, body: str) -> None:
    """Tell every member of a supplier organization (in-app and email)."""
    notify_all(
        (m.user for m in organization.memberships.select_related("user")), kind="moderation", title=title, body=body
    )


# --- Members and invitations: the rules every group follows (accounts.memberships), under the
# organization's lock. One supplier organization per person.


def _organization_of(by: User) -> Organization:
    membership = membership_for_user(user=by)
    if membership is None:
        raise Forbidden(_("Set up your supplier organization first."), code=SupplierErrorCode.NOT_A_SUPPLIER)
    return organization_lock(organization_id=membership.organization_id)


@transaction.atomic
def organization_invite(*, by: User, email: str | None, role: str | None) -> IssuedInvitation:
    """Email an invitation to join `by`'s organization with `role` (owners and admins)."""
    organization = _organization_of(by)
    return members_invite(
        memberships=organization.memberships,
        invitations=organization.invitations,
        by=by,
        email=email,
        role=role,
        to_what=organization.name,
    )


@transaction.atomic
def organization_invitation_revoke(*, by: User, invitation_id: int) -> None:
    organization = _organization_of(by)
    members_invitation_revoke(
        memberships=organization.memberships, invitations=organization.invitations, by=by, invitation_id=invitation_id
    )


def organization_invitation_for_token(token: str) -> OrganizationInvitation | None:
    """The organization invitation a link's token names (not locked), or None."""
    return (
        OrganizationInvitation.objects.select_related("organization")
        .filter(token_hash=hash_api_secret(token or ""))
        .first()
    )


@transaction.atomic
def organization_invitation_accept(*, token: str, user: User) -> Membership:
    """Join the organization the invitation names, with its role; a person belongs to one."""
    organization, invitation = invitation_take(
        OrganizationInvitation,
        token,
        user=user,
        lock_group=lambda found: organization_lock(organization_id=found.organization_id),
    )
    if Membership.objects.filter(user=user).exists():
        raise Conflict(
            _("You already belong to a supplier organization: leave it first."), code=AccountErrorCode.ALREADY_MEMBER
        )
    membership = Membership.objects.create(organization=organization, user=user, role=invitation.role)
    if user.role != User.Role.SUPPLIER:
        user.role = User.Role.SUPPLIER
        user.save(update_fields=["role"])
    return membership


@transaction.atomic
def organization_member_role_set(*, by: User, user_id: int, role: str | None) -> Membership:
    organization = _organization_of(by)
    changed: Membership = member_role_set(memberships=organization.memberships, by=by, user_id=user_id, role=role)
    return changed


@transaction.atomic
def organization_member_remove(*, by: User, user_id: int) -> None:
    """Remove a member, or leave (`by` is that member); the last owner stays."""
    organization = _organization_of(by)
    member_remove(memberships=organization.memberships, by=by, user_id=user_id)


def organization_members(*, by: User) -> tuple[Organization, QuerySet[Membership]]:
    """`by`'s organization and its members (any role sees who is in it)."""
    membership = membership_for_user(user=by)
    if membership is None:
        raise Forbidden(_("Set up your supplier organization first."), code=SupplierErrorCode.NOT_A_SUPPLIER)
    organization = membership.organization
    return organization, organization.memberships.select_related("user").order_by("user__email")


def organization_invitations(*, by: User) -> QuerySet[OrganizationInvitation]:
    """The organization's invitations, for its owners and admins."""
    organization, _members = organization_members(by=by)
    manager_membership(organization.memberships, by)
    return organization.invitations.all()
