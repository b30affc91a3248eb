"""Supplier organizations: onboarding, staff review, members.

Owner of each status (STYLE 4b): the supplier creates and edits its organization (`pending`);
only staff approve, reject or suspend it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import notify_all
from marketplace.audit import audit_record
from marketplace.errors import Conflict, ErrorCode, Forbidden, InvalidInput, validation_fields

from .errors import SupplierErrorCode
from .locks import hosts_lock, organization_lock
from .models import Host, Membership, Organization
from .offers import offers_refresh_for_host

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
        raise InvalidInput("Some fields are not valid.", fields=validation_fields(error)) from error


def unknown_fields_refuse(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"Unknown field(s): {', '.join(unknown)}.",
            code=ErrorCode.UNKNOWN_FIELD,
            fields={name: ["Unknown field."] for name in unknown},
        )


def organization_of_member(user: User) -> Organization:
    membership = Membership.objects.select_related("organization").filter(user=user).first()
    if membership is None:
        raise Forbidden("Set up your supplier organization first.", code=SupplierErrorCode.NOT_A_SUPPLIER)
    return membership.organization


@transaction.atomic
def organization_create(*, owner: User, **data: Any) -> Organization:
    """Start supplier onboarding: the organization is `pending` until staff approve it."""
    unknown_fields_refuse(data, ORGANIZATION_FIELDS)
    if Membership.objects.filter(user=owner).exists():
        raise Conflict("You already belong to a supplier organization.", code=SupplierErrorCode.ALREADY_MEMBER)
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
def organization_update(*, organization: Organization, **data: Any) -> Organization:
    unknown_fields_refuse(data, ORGANIZATION_FIELDS)
    organization = organization_lock(organization_id=organization.pk)
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
        raise InvalidInput("A rejection needs a reason the supplier will see.", fields={"reason": ["Required."]})
    return _organization_set_status(
        organization=organization, status=Organization.Status.REJECTED, reason=reason, actor=actor
    )


@transaction.atomic
def organization_suspend(*, organization: Organization, reason: str, actor: User | None = None) -> Organization:
    """Its offers go; its members are told. Renters are told by `orders.supply.organization_suspend`,
    which entry points call."""
    if not reason.strip():
        raise InvalidInput("A suspension needs a reason.", fields={"reason": ["Required."]})
    organization = _organization_set_status(
        organization=organization, status=Organization.Status.SUSPENDED, reason=reason, actor=actor
    )
    organization_notify_members(organization, "Your organization was suspended", reason)
    return organization


def organization_notify_members(organization: Organization, title: str, body: str) -> None:
    """Tell every member of a supplier organization (in-app and email)."""
    notify_all(
        (m.user for m in organization.memberships.select_related("user")), kind="moderation", title=title, body=body
    )
