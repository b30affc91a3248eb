"""Supplier reads, always scoped to the caller."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import Http404
from django.utils.translation import gettext as _

from accounts.errors import AccountErrorCode
from accounts.models import User
from accounts.roles import role_allows
from accounts.scopes import Scope
from marketplace.errors import Forbidden

from .models import Host, Membership, Organization


def membership_for_user(*, user: User | AnonymousUser) -> Membership | None:
    if not user.is_authenticated:
        return None
    return Membership.objects.select_related("organization").filter(user=user).first()


def membership_role_require(membership: Membership, area: str | None, *, write: bool) -> None:
    """Refuse (403 `role_forbids`) what the member's role does not allow in `area` (`accounts.roles`)."""
    if not role_allows(membership.role, area, write=write):
        role = membership.get_role_display().lower()
        raise Forbidden(
            _("Your role in %(organization)s (%(role)s) does not allow this.")
            % {"organization": membership.organization.name, "role": role},
            code=AccountErrorCode.ROLE_FORBIDS,
        )


def organization_for_user(
    *, user: User | AnonymousUser, area: str | None = None, write: bool = False
) -> Organization | None:
    """The person's supplier organization (None without one); with `area`, only when their role
    allows reading it (or, with `write`, changing it), else 403."""
    membership = membership_for_user(user=user)
    if membership is None:
        return None
    if area is not None:
        membership_role_require(membership, area, write=write)
    return membership.organization


def member_may(*, user: User, organization_id: int, area: str, write: bool) -> bool:
    """Whether `user` belongs to the organization with a role allowing `area` (read, or `write`)."""
    membership = Membership.objects.filter(user=user, organization_id=organization_id).first()
    return membership is not None and role_allows(membership.role, area, write=write)


def host_list_for_user(*, user: User) -> QuerySet[Host]:
    """Hosts the user may see: their organization's, or all for staff."""
    queryset = Host.objects.select_related("organization", "region", "zone", "accelerator_model").annotate(
        offer_count=Count("offers", distinct=True)
    )
    if user.is_staff:
        return queryset
    membership = membership_for_user(user=user)
    if membership is None or not role_allows(membership.role, Scope.SUPPLIER, write=False):
        return queryset.none()
    organization = membership.organization
    return queryset.filter(organization=organization)


def host_get_for_member(*, user: User, host_id: int) -> Host:
    """A host its supplier may change: their organization's, else 404 (403 for staff, who see every
    host but change them only through moderation, where each decision is audited; 403
    `role_forbids` for a member whose role does not change hosts)."""
    host = host_get_for_user(user=user, host_id=host_id)
    membership = host.organization.memberships.filter(user=user).select_related("organization").first()
    if membership is None:
        raise PermissionDenied("Staff change hosts through moderation, where each decision is audited.")
    membership_role_require(membership, Scope.SUPPLIER, write=True)
    return host


def host_get_for_user(*, user: User, host_id: int) -> Host:
    """One host the user may see, or 404 (never 403: others' hosts do not exist for them)."""
    try:
        return host_list_for_user(user=user).get(pk=host_id)
    except (Host.DoesNotExist, ValueError, TypeError):
        raise Http404("No such host.") from None
