"""Supplier operations: onboarding, review, and declaring hosts. Every capacity change recomputes
the host's offers in the same transaction, under the host row lock."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import User
from marketplace import capacity
from marketplace.audit import audit_record, snapshot
from marketplace.errors import Conflict, Forbidden, InvalidInput, validation_fields
from marketplace.models import AcceleratorModel
from marketplace.services import (
    host_allocated_claims,
    host_capacity_spec,
    host_carriable_types,
    host_holdings,
    offers_refresh_for_host,
)

from .models import Host, Membership, Organization

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
HOST_FIELDS = (
    "name",
    "region",
    "zone",
    "pue",
    "accelerator_model",
    "accelerator_count",
    "vcpus",
    "ram_gb",
    "disk_gb",
    "network_up_mbps",
    "network_down_mbps",
    "power_per_accelerator_watts",
    "price_per_unit_hour",
    "spot_min_price_per_unit_hour",
    "reserved_discount_week",
    "reserved_discount_month",
    "reserved_discount_quarter",
    "storage_price_per_gb_month",
    "min_rental_hours",
    "offer_ends_at",
    "slicing_policy",
    "equal_slices",
    "oversubscription_ratio",
)
# Changing these changes what the host can carry or what it costs: offers must be recomputed.
CAPACITY_FIELDS = frozenset(HOST_FIELDS) - {"name"}


def _full_clean(instance, *, exclude: list[str] | None = None) -> None:
    try:
        instance.full_clean(exclude=exclude)
    except ValidationError as error:
        raise InvalidInput("Some fields are not valid.", fields=validation_fields(error)) from error


def _unknown_fields(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"Unknown field(s): {', '.join(unknown)}.",
            code="unknown_field",
            fields={name: ["Unknown field."] for name in unknown},
        )


# --- Organizations --------------------------------------------------------------------------


@transaction.atomic
def organization_create(*, owner: User, **data: Any) -> Organization:
    """Start supplier onboarding: the organization is `pending` until staff approve it."""
    _unknown_fields(data, ORGANIZATION_FIELDS)
    if Membership.objects.filter(user=owner).exists():
        raise Conflict("You already belong to a supplier organization.", code="already_member")
    for code_field in ("country", "payout_country"):
        if data.get(code_field):
            data[code_field] = str(data[code_field]).upper()
    organization = Organization(**data)
    _full_clean(organization)
    organization.save()
    Membership.objects.create(organization=organization, user=owner, role=Membership.Role.OWNER)
    if owner.role != User.Role.SUPPLIER:
        owner.role = User.Role.SUPPLIER
        owner.save(update_fields=["role"])
    return organization


@transaction.atomic
def organization_update(*, organization: Organization, **data: Any) -> Organization:
    _unknown_fields(data, ORGANIZATION_FIELDS)
    organization = Organization.objects.select_for_update().get(pk=organization.pk)
    for key, value in data.items():
        setattr(organization, key, value.upper() if key.endswith("country") and isinstance(value, str) else value)
    _full_clean(organization)
    organization.save()
    return organization


def _organization_set_status(
    *, organization: Organization, status: str, reason: str = "", actor: User | None = None
) -> Organization:
    """Change the review status; locks the organization then each of its hosts (id order). Audited."""
    organization = Organization.objects.select_for_update().get(pk=organization.pk)
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
    for host in _locked_hosts(Host.objects.filter(organization=organization)):
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
    if not reason.strip():
        raise InvalidInput("A suspension needs a reason.", fields={"reason": ["Required."]})
    organization = _organization_set_status(
        organization=organization, status=Organization.Status.SUSPENDED, reason=reason, actor=actor
    )
    organization_notify_members(organization, "Your organization was suspended", reason)
    from accounts.services import notify_all
    from orders.selectors import renters

    notify_all(
        renters(host__organization=organization),
        kind="moderation",
        title="A supplier you rent from was suspended",
        body="Its offers are delisted; your running instances are not interrupted by us.",
    )
    return organization


def organization_notify_members(organization: Organization, title: str, body: str) -> None:
    """Tell every member of a supplier organization (in-app and email)."""
    from accounts.services import notify_all

    notify_all(
        (m.user for m in organization.memberships.select_related("user")), kind="moderation", title=title, body=body
    )


# --- Hosts ----------------------------------------------------------------------------------


def _locked_hosts(queryset) -> list[Host]:
    """Lock host rows in id order (the one lock order used everywhere, so no deadlocks)."""
    return list(
        queryset.select_for_update(of=("self",))
        .select_related("organization", "accelerator_model", "region", "zone")
        .order_by("pk")
    )


def host_lock(*, host_id: int) -> Host:
    """Lock one host row for a capacity change and return it fresh."""
    return _locked_hosts(Host.objects.filter(pk=host_id))[0]


def _require_member(user: User) -> Organization:
    membership = Membership.objects.select_related("organization").filter(user=user).first()
    if membership is None:
        raise Forbidden("Set up your supplier organization first.", code="not_a_supplier")
    return membership.organization


def _validate_host(host: Host, *, holdings: list[capacity.Holding], original_policy: str | None = None) -> None:
    """Field, cross-field and capacity checks; raises InvalidInput/Conflict with field errors."""
    _full_clean(host, exclude=["organization"])
    errors: dict[str, list[str]] = {}
    if host.zone_id and host.zone.region_id != host.region_id:
        errors["zone"] = [f"Zone {host.zone.code} is not in region {host.region.code}."]
    if not host.accelerator_model.is_active:
        errors["accelerator_model"] = ["This model is no longer accepted."]
    if host.offer_ends_at and host.offer_ends_at <= timezone.now():
        errors["offer_ends_at"] = ["The offer end date must be in the future."]
    if host.slicing_policy == capacity.SlicingPolicy.EQUAL:
        units = host.vcpus if host.accelerator_model.kind == "cpu" else host.accelerator_count
        if units % host.equal_slices:
            unit_name = "vCPUs" if host.accelerator_model.kind == "cpu" else "accelerators"
            errors["equal_slices"] = [f"{host.equal_slices} equal slices do not divide {units} {unit_name}."]
    if errors:
        raise InvalidInput("Some fields are not valid.", fields=errors)

    spec = host_capacity_spec(host)
    if not _holdings_fit(spec, holdings):
        raise Conflict(
            "The host would have less capacity than its instances already hold.",
            code="capacity_in_use",
            extra={"allocated": capacity.total(capacity.committed_footprint(h) for h in holdings).amounts},
        )
    if holdings and original_policy and host.slicing_policy != original_policy:
        raise Conflict("The slicing policy cannot change while instances are allocated.", code="capacity_in_use")
    carriable = host_carriable_types(host, allocated=[])
    if not any(carriable.values()):
        raise InvalidInput(
            "No standard instance type fits this host under its slicing policy: "
            "give it more vCPU/RAM/disk per accelerator, or choose another policy.",
            code="no_sellable_instance_type",
            fields={"slicing_policy": ["No standard instance type fits this host under this policy."]},
        )


def _holdings_fit(spec: capacity.HostSpec, holdings: list[capacity.Holding]) -> bool:
    """Both invariants of capacity.py hold: what runs fits, and what is committed fits."""
    limit = capacity.effective_capacity(spec)
    physical = capacity.total(capacity.physical_footprint(h) for h in holdings)
    committed = capacity.total(capacity.committed_footprint(h) for h in holdings)
    return physical.fits_in(limit) and committed.fits_in(limit)


def _resolve_model(data: dict[str, Any]) -> None:
    model = data.get("accelerator_model")
    if model is not None and not isinstance(model, AcceleratorModel):
        raise InvalidInput("Unknown accelerator model.", fields={"accelerator_model": ["Unknown model."]})


@transaction.atomic
def host_create(*, user: User, **data: Any) -> Host:
    """Declare a host for the user's organization. It is `pending` until staff approve it.

    `power_per_accelerator_watts` defaults to the model's TDP.
    """
    _unknown_fields(data, HOST_FIELDS)
    _resolve_model(data)
    organization = _require_member(user)
    if organization.status in (Organization.Status.REJECTED, Organization.Status.SUSPENDED):
        raise Forbidden(
            f"Your organization is {organization.status}; it cannot add hosts.", code="organization_inactive"
        )
    if data.get("accelerator_model") is not None and not data.get("power_per_accelerator_watts"):
        data["power_per_accelerator_watts"] = data["accelerator_model"].tdp_watts
    if Host.objects.filter(organization=organization, name=data.get("name")).exists():
        raise InvalidInput("You already have a host with this name.", fields={"name": ["Already used."]})
    host = Host(organization=organization, **data)
    required_missing = [f for f in ("region", "accelerator_model") if getattr(host, f"{f}_id") is None]
    if required_missing:
        raise InvalidInput(
            "Some fields are not valid.", fields={f: ["This field is required."] for f in required_missing}
        )
    _validate_host(host, holdings=[])
    host.save()
    return host


@transaction.atomic
def host_update(*, host: Host, **data: Any) -> Host:
    """Change a host's declaration. Locks the host row; capacity may not drop below what is
    allocated; offers are recomputed in the same transaction."""
    _unknown_fields(data, HOST_FIELDS)
    _resolve_model(data)
    host = host_lock(host_id=host.pk)
    holdings = host_holdings(host)
    original_policy = host.slicing_policy
    if "accelerator_model" in data and holdings and data["accelerator_model"].pk != host.accelerator_model_id:
        raise Conflict("The accelerator model cannot change while instances are allocated.", code="capacity_in_use")
    if (
        "name" in data
        and Host.objects.filter(organization=host.organization, name=data["name"]).exclude(pk=host.pk).exists()
    ):
        raise InvalidInput("You already have a host with this name.", fields={"name": ["Already used."]})
    for key, value in data.items():
        setattr(host, key, value)
    _validate_host(host, holdings=holdings, original_policy=original_policy)
    host.save()
    if "price_per_unit_hour" in data:
        from orders.services import renters_notify_price_change

        renters_notify_price_change(host=host)
    if host.inventory:
        from .agent_services import host_check_inventory

        host_check_inventory(host)  # the declaration may now match (or contradict) the inventory
    elif CAPACITY_FIELDS & set(data):
        offers_refresh_for_host(host=host)
    return host


@transaction.atomic
def host_delete(*, host: Host) -> None:
    """Remove a host that holds no allocations."""
    host = host_lock(host_id=host.pk)
    if host_allocated_claims(host):
        raise Conflict("The host still holds instances; stop them first.", code="capacity_in_use")
    host.offers.all().delete()
    host.delete()


@transaction.atomic
def host_approve(*, host: Host, verified: bool = True, actor: User | None = None) -> Host:
    """Staff approve a host (and, by default, mark the declaration verified): offers appear."""
    host = host_lock(host_id=host.pk)
    audit_record(
        action="host.approve",
        obj=host,
        actor=actor,
        before=snapshot(host, ["status", "verified"]),
        after={"status": Host.Status.APPROVED, "verified": verified},
    )
    host.status = Host.Status.APPROVED
    host.verified = verified
    host.status_reason = ""
    host.save(update_fields=["status", "verified", "status_reason", "updated_at"])
    offers_refresh_for_host(host=host)
    return host


@transaction.atomic
def host_reject(*, host: Host, reason: str, actor: User | None = None) -> Host:
    if not reason.strip():
        raise InvalidInput("A rejection needs a reason the supplier will see.", fields={"reason": ["Required."]})
    return host_set_status(host=host, status=Host.Status.REJECTED, reason=reason, actor=actor, action="host.reject")


@transaction.atomic
def host_set_status(*, host: Host, status: str, reason: str, actor: User | None, action: str) -> Host:
    """A staff decision on a host: lock it, audit, record the reason the supplier sees, recompute offers."""
    host = host_lock(host_id=host.pk)
    audit_record(
        action=action, obj=host, actor=actor, reason=reason, before={"status": host.status}, after={"status": status}
    )
    host.status = status
    host.status_reason = reason
    host.save(update_fields=["status", "status_reason", "updated_at"])
    offers_refresh_for_host(host=host)
    return host


@transaction.atomic
def host_set_listed(*, host: Host, listed: bool) -> Host:
    """The supplier pauses (delists) or resumes an approved host's offers."""
    host = host_lock(host_id=host.pk)
    if listed and host.status == Host.Status.DELISTED:
        host.status = Host.Status.APPROVED
    elif not listed and host.status == Host.Status.APPROVED:
        host.status = Host.Status.DELISTED
    else:
        raise Conflict(
            f"A {host.get_status_display().lower()} host cannot be {'listed' if listed else 'delisted'}.",
            code="invalid_transition",
        )
    host.save(update_fields=["status", "updated_at"])
    offers_refresh_for_host(host=host)
    return host


@transaction.atomic
def host_set_reliability(*, host: Host, reliability: Decimal | None) -> Host:
    """Record a host's reliability score (0-1; None = not measured) and refresh its offers."""
    if reliability is not None and not Decimal(0) <= reliability <= Decimal(1):
        raise InvalidInput("Reliability is a fraction between 0 and 1.", fields={"reliability": ["Out of range."]})
    host = host_lock(host_id=host.pk)
    host.reliability = reliability
    host.save(update_fields=["reliability", "updated_at"])
    offers_refresh_for_host(host=host)
    return host


# --- Maintenance windows ------------------------------------------------------------------

MAX_MAINTENANCE = timedelta(days=7)


@transaction.atomic
def maintenance_schedule(*, user: User, host: Host, starts_at, ends_at, reason: str):
    """Schedule maintenance on the user's host; every current renter is notified now."""
    from accounts.services import notify_all
    from orders.selectors import renters

    from .models import MaintenanceWindow

    errors = {}
    now = timezone.now()
    if starts_at is None or starts_at <= now:
        errors["starts_at"] = ["Maintenance is scheduled in the future."]
    if starts_at and ends_at and ends_at <= starts_at:
        errors["ends_at"] = ["The end comes after the start."]
    elif starts_at and ends_at and ends_at - starts_at > MAX_MAINTENANCE:
        errors["ends_at"] = ["At most 7 days."]
    if not (reason or "").strip():
        errors["reason"] = ["Tell renters why."]
    if errors:
        raise InvalidInput("The maintenance window is not valid.", fields=errors)
    host = host_lock(host_id=host.pk)
    if not host.organization.memberships.filter(user=user).exists() and not user.is_staff:
        raise Forbidden("Only the host's supplier schedules maintenance.")
    window = MaintenanceWindow.objects.create(host=host, starts_at=starts_at, ends_at=ends_at, reason=reason.strip())
    offers_refresh_for_host(host=host)
    notify_all(
        renters(host=host),
        kind="maintenance",
        title=f"Planned maintenance on your host {starts_at:%Y-%m-%d %H:%M}-{ends_at:%H:%M} UTC",
        body=f"{window.reason}. Your instances on host {host.pk} may be interrupted during the window.",
    )
    return window


def maintenance_refresh(*, within: timedelta = timedelta(minutes=10)) -> int:
    """Beat: re-offer hosts whose maintenance just ended, hide those where it just began."""
    from .models import MaintenanceWindow

    now = timezone.now()
    host_ids = set(
        MaintenanceWindow.objects.filter(
            Q(starts_at__range=(now - within, now)) | Q(ends_at__range=(now - within, now))
        ).values_list("host_id", flat=True)
    )
    for host_id in sorted(host_ids):
        with transaction.atomic():
            offers_refresh_for_host(host=host_lock(host_id=host_id))
    return len(host_ids)


# --- Verification documents ---------------------------------------------------------------

MAX_DOCUMENT_BYTES = 10 * 1024 * 1024
DOCUMENT_SIGNATURES = {b"%PDF-": "application/pdf", b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def document_content_type(head: bytes) -> str | None:
    """The type from the file's first bytes (never trust the name or the browser's claim)."""
    for signature, content_type in DOCUMENT_SIGNATURES.items():
        if head.startswith(signature):
            return content_type
    return None


@transaction.atomic
def organization_document_upload(*, user: User, kind: str, upload):
    """Attach a verification document (PDF, PNG or JPEG, at most 10 MB) to the user's organization."""
    from .models import OrganizationDocument

    organization = _require_member(user)
    errors = {}
    if kind not in OrganizationDocument.Kind.values:
        errors["kind"] = ["Choose a document kind."]
    if upload is None:
        errors["file"] = ["Choose a file."]
    elif upload.size > MAX_DOCUMENT_BYTES:
        errors["file"] = ["Files are at most 10 MB."]
    content_type = None
    if upload is not None and "file" not in errors:
        head = upload.read(16)
        upload.seek(0)
        content_type = document_content_type(head)
        if content_type is None:
            errors["file"] = ["Upload a PDF, PNG or JPEG."]
    if errors:
        raise InvalidInput("The document was not accepted.", fields=errors)
    return OrganizationDocument.objects.create(
        organization=organization,
        kind=kind,
        file=upload,
        original_name=upload.name[:255],
        content_type=content_type,
        size_bytes=upload.size,
        uploaded_by=user,
    )
