"""Supplier reads, always scoped to the caller."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import Http404

from accounts.models import User

from .models import Host, Membership, Organization


def organization_for_user(*, user: User | AnonymousUser) -> Organization | None:
    if not user.is_authenticated:
        return None
    membership = Membership.objects.select_related("organization").filter(user=user).first()
    return membership.organization if membership else None


def host_list_for_user(*, user: User) -> QuerySet[Host]:
    """Hosts the user may see: their organization's, or all for staff."""
    queryset = Host.objects.select_related("organization", "region", "zone", "accelerator_model").annotate(
        offer_count=Count("offers", distinct=True)
    )
    if user.is_staff:
        return queryset
    organization = organization_for_user(user=user)
    if organization is None:
        return queryset.none()
    return queryset.filter(organization=organization)


def host_get_for_member(*, user: User, host_id: int) -> Host:
    """A host its supplier may change: their organization's, else 404 (403 for staff, who see every
    host but change them only through moderation, where each decision is audited)."""
    host = host_get_for_user(user=user, host_id=host_id)
    if not host.organization.memberships.filter(user=user).exists():
        raise PermissionDenied("Staff change hosts through moderation, where each decision is audited.")
    return host


def host_get_for_user(*, user: User, host_id: int) -> Host:
    """One host the user may see, or 404 (never 403: others' hosts do not exist for them)."""
    try:
        return host_list_for_user(user=user).get(pk=host_id)
    except (Host.DoesNotExist, ValueError, TypeError):
        raise Http404("No such host.") from None
