"""Hosts: declaring, changing and removing them, staff decisions, and checking the agent's
inventory against the declaration. Every capacity change recomputes the host's offers in the
same transaction, under the host row lock (`suppliers.locks`).

Owner of each status (STYLE 4b): the supplier declares a host (`pending`) and may pause and
resume an approved one (`delisted` <-> `approved`); staff approve, reject and delist.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from marketplace import capacity
from marketplace.audit import audit_record, snapshot
from marketplace.errors import Conflict, ErrorCode, Forbidden, InvalidInput
from marketplace.models import AcceleratorModel, Zone

from .errors import SupplierErrorCode
from .inventory import Declaration, inventory_differences, inventory_is_evidence
from .locks import host_lock
from .models import MAX_PORT_RANGE_SIZE, Host, Organization
from .offers import (
    host_allocated_claims,
    host_capacity_spec,
    host_carriable_types,
    host_holdings,
    offers_refresh_for_host,
)
from .organizations import full_clean_or_invalid, organization_of_member, unknown_fields_refuse

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
    "no_accelerator_price_per_vcpu_hour",
    "min_rental_hours",
    "offer_ends_at",
    "slicing_policy",
    "equal_slices",
    "oversubscription_ratio",
    "public_address",
    "port_range_start",
    "port_range_end",
)

# Changing these changes what the host can carry or what it costs: offers must be recomputed.
CAPACITY_FIELDS = frozenset(HOST_FIELDS) - {"name"}
# What verification confirmed: a change takes a reviewed host back to unverified and unoffered
# until the agent's inventory confirms it (and staff, for another accelerator model).
HARDWARE_FIELDS = ("accelerator_model", "accelerator_count", "vcpus", "ram_gb", "disk_gb")


def _validate_host(host: Host, *, holdings: list[capacity.Holding], original_policy: str | None = None) -> None:
    """Field, cross-field and capacity checks; raises InvalidInput/Conflict with field errors."""
    errors: dict[str, list[str]] = _port_range_errors(host)  # before full_clean: it names the fields
    if errors:
        raise InvalidInput(_("Some fields are not valid."), fields=errors)
    full_clean_or_invalid(host, exclude=["organization"])
    if host.zone_id and cast(Zone, host.zone).region_id != host.region_id:
        errors["zone"] = [
            _("Zone %(zone)s is not in region %(region)s.")
            % {"zone": cast(Zone, host.zone).code, "region": host.region.code}
        ]
    if not host.accelerator_model.is_active:
        errors["accelerator_model"] = [_("This model is no longer accepted.")]
    if host.offer_ends_at and host.offer_ends_at <= timezone.now():
        errors["offer_ends_at"] = [_("The offer end date must be in the future.")]
    if host.slicing_policy == capacity.SlicingPolicy.EQUAL:
        units = host.vcpus if host.accelerator_model.kind == "cpu" else host.accelerator_count
        if units % host.equal_slices:
            message = (
                _("%(slices)s equal slices do not divide %(units)s vCPUs.")
                if host.accelerator_model.kind == "cpu"
                else _("%(slices)s equal slices do not divide %(units)s accelerators.")
            )
            errors["equal_slices"] = [message % {"slices": host.equal_slices, "units": units}]
    if errors:
        raise InvalidInput(_("Some fields are not valid."), fields=errors)

    spec = host_capacity_spec(host)
    if not _holdings_fit(spec, holdings):
        raise Conflict(
            _("The host would have less capacity than its instances already hold."),
            code=SupplierErrorCode.CAPACITY_IN_USE,
            extra={"allocated": capacity.total(capacity.committed_footprint(h) for h in holdings).amounts},
        )
    if holdings and host.pk is not None:
        _ports_in_use_check(host)
    if holdings and original_policy and host.slicing_policy != original_policy:
        raise Conflict(
            _("The slicing policy cannot change while instances are allocated."),
            code=SupplierErrorCode.CAPACITY_IN_USE,
        )
    carriable = host_carriable_types(host, allocated=[])
    if not any(carriable.values()):
        raise InvalidInput(
            _(
                "No standard instance type fits this host under its slicing policy: "
                "give it more vCPU/RAM/disk per accelerator, or choose another policy."
            ),
            code=SupplierErrorCode.NO_SELLABLE_INSTANCE_TYPE,
            fields={"slicing_policy": [_("No standard instance type fits this host under this policy.")]},
        )


def _port_range_errors(host: Host) -> dict[str, list[str]]:
    """Inbound ports: an address with a whole range of at most MAX_PORT_RANGE_SIZE ports, or none."""
    start, end = host.port_range_start, host.port_range_end
    if (start is None) != (end is None):
        return {
            "port_range_end" if end is None else "port_range_start": [_("Give both ends of the range, or neither.")]
        }
    if start is not None and end is not None:
        if end < start:
            return {"port_range_end": [_("The range ends before it starts.")]}
        if end - start + 1 > MAX_PORT_RANGE_SIZE:
            return {"port_range_end": [_("At most %(limit)s ports.") % {"limit": MAX_PORT_RANGE_SIZE}]}
        if not host.public_address:
            return {"public_address": [_("Forwarded ports need the address buyers connect to.")]}
    return {}


def _ports_in_use_check(host: Host) -> None:
    """Host ports held by its instances stay inside the range (and inbound stays on) until released."""
    held = host.instance_ports.filter(released_at__isnull=True)  # orders.InstancePort
    if host.accepts_inbound:
        held = held.exclude(host_port__range=(host.port_range_start, host.port_range_end))
    outside = sorted(held.values_list("host_port", flat=True)[:20])
    if outside:
        raise Conflict(
            _(
                "Instances hold host ports outside the new range (or the host would stop accepting inbound "
                "connections): %(ports)s. Keep them in the range until those instances end."
            )
            % {"ports": ", ".join(map(str, outside))},
            code=SupplierErrorCode.CAPACITY_IN_USE,
            fields={"port_range_start": [_("Ports in use fall outside this range.")]},
            extra={"ports_in_use": outside},
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
        raise InvalidInput(_("Unknown accelerator model."), fields={"accelerator_model": [_("Unknown model.")]})


@transaction.atomic
def host_create(*, user: User, **data: Any) -> Host:
    """Declare a host for the user's organization. It is `pending` until staff approve it.

    `power_per_accelerator_watts` defaults to the model's TDP.
    """
    unknown_fields_refuse(data, HOST_FIELDS)
    _resolve_model(data)
    organization = organization_of_member(user)
    if organization.status in (Organization.Status.REJECTED, Organization.Status.SUSPENDED):
        raise Forbidden(
            _("Your organization is %(status)s; it cannot add hosts.")
            % {"status": organization.get_status_display().lower()},
            code=SupplierErrorCode.ORGANIZATION_INACTIVE,
        )
    if data.get("accelerator_model") is not None and not data.get("power_per_accelerator_watts"):
        data["power_per_accelerator_watts"] = data["accelerator_model"].tdp_watts
    if Host.objects.filter(organization=organization, name=data.get("name")).exists():
        raise InvalidInput(_("You already have a host with this name."), fields={"name": [_("Already used.")]})
    host = Host(organization=organization, **data)
    required_missing = [f for f in ("region", "accelerator_model") if getattr(host, f"{f}_id") is None]
    if required_missing:
        raise InvalidInput(
            _("Some fields are not valid."), fields={f: [_("This field is required.")] for f in required_missing}
        )
    _validate_host(host, holdings=[])
    host.save()
    return host


@transaction.atomic
def host_update(*, host: Host, **data: Any) -> Host:
    """Change a host's declaration. Locks the host row; capacity may not drop below what is
    allocated; offers are recomputed in the same transaction. Entry points call
    `orders.supply.host_update`, which also tells renters about a new price."""
    unknown_fields_refuse(data, HOST_FIELDS)
    _resolve_model(data)
    host = host_lock(host_id=host.pk)
    holdings = host_holdings(host)
    original_policy = host.slicing_policy
    if "accelerator_model" in data and holdings and data["accelerator_model"].pk != host.accelerator_model_id:
        raise Conflict(
            _("The accelerator model cannot change while instances are allocated."),
            code=SupplierErrorCode.CAPACITY_IN_USE,
        )
    if (
        "name" in data
        and Host.objects.filter(organization=host.organization, name=data["name"]).exclude(pk=host.pk).exists()
    ):
        raise InvalidInput(_("You already have a host with this name."), fields={"name": [_("Already used.")]})
    before = snapshot(host, list(HARDWARE_FIELDS))
    for key, value in data.items():
        setattr(host, key, value)
    _validate_host(host, holdings=holdings, original_policy=original_policy)
    changed = [name for name in HARDWARE_FIELDS if snapshot(host, [name])[name] != before[name]]
    if changed and (host.status != Host.Status.PENDING or host.verified):
        _hardware_changed(host, changed, before)
    host.save()
    if host.inventory:
        host_check_inventory(host)  # the declaration may now match (or contradict) the inventory
    elif CAPACITY_FIELDS & set(data):
        offers_refresh_for_host(host=host)
    return host


def _hardware_changed(host: Host, changed: list[str], before: dict[str, Any]) -> None:
    """A reviewed host declares other hardware: unverified and unoffered until the agent's
    inventory confirms it; another accelerator model also goes back to staff review. Audited."""
    host.verified = False
    host.hardware_changed_at = timezone.now()
    if "accelerator_model" in changed and host.status == Host.Status.APPROVED:
        host.status = Host.Status.PENDING
        host.status_reason = "The accelerator model changed: our staff review the host again."
        host.status_decided_by = Host.DecidedBy.PLATFORM
    audit_record(
        action="host.hardware_changed",
        obj=host,
        reason=f"Declared hardware changed: {', '.join(changed)}",
        before=before,
        after=snapshot(host, list(HARDWARE_FIELDS)),
    )


@transaction.atomic
def host_delete(*, host: Host) -> None:
    """Remove a host that holds no allocations."""
    host = host_lock(host_id=host.pk)
    if host_allocated_claims(host):
        raise Conflict(_("The host still holds instances; stop them first."), code=SupplierErrorCode.CAPACITY_IN_USE)
    host.offers.all().delete()
    host.delete()


@transaction.atomic
def host_approve(*, host: Host, verified: bool = True, actor: User | None = None) -> Host:
    """Staff approve a host (and, by default, mark the declaration verified): offers appear.

    Staff cannot mark verified a host whose agent inventory contradicts its declaration, or
    whose changed hardware the agent has not confirmed yet."""
    host = host_lock(host_id=host.pk)
    if verified and host.inventory_mismatch:
        raise Conflict(
            _("The agent's inventory contradicts this host's declaration; it cannot be marked verified."),
            code=SupplierErrorCode.INVENTORY_CONTRADICTS_DECLARATION,
            extra={"differences": host.inventory_mismatch},
        )
    if verified and host.hardware_changed_at:
        raise Conflict(
            _("The host's declared hardware changed and its agent has not confirmed it yet."),
            code=SupplierErrorCode.HARDWARE_UNCONFIRMED,
        )
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
    host.status_decided_by = Host.DecidedBy.STAFF
    host.save(update_fields=["status", "verified", "status_reason", "status_decided_by", "updated_at"])
    offers_refresh_for_host(host=host)
    return host


@transaction.atomic
def host_reject(*, host: Host, reason: str, actor: User | None = None) -> Host:
    if not reason.strip():
        raise InvalidInput(_("A rejection needs a reason the supplier will see."), fields={"reason": [_("Required.")]})
    return host_set_status(host=host, status=Host.Status.REJECTED, reason=reason, actor=actor, action="host.reject")


@transaction.atomic
def host_set_status(*, host: Host, status: str, reason: str, actor: User | None, action: str) -> Host:
    """A staff decision on a host: lock it, audit, record the reason the supplier sees, recompute
    offers. Only staff can undo it (`host_set_listed` refuses the supplier)."""
    host = host_lock(host_id=host.pk)
    audit_record(
        action=action, obj=host, actor=actor, reason=reason, before={"status": host.status}, after={"status": status}
    )
    host.status = status
    host.status_reason = reason
    host.status_decided_by = Host.DecidedBy.STAFF
    host.save(update_fields=["status", "status_reason", "status_decided_by", "updated_at"])
    offers_refresh_for_host(host=host)
    return host


@transaction.atomic
def host_set_listed(*, host: Host, listed: bool) -> Host:
    """The supplier pauses (delists) or resumes an approved host's offers. A host our staff
    delisted stays delisted until staff reinstate it (403 `staff_decision`, with the reason)."""
    host = host_lock(host_id=host.pk)
    if listed and host.status == Host.Status.DELISTED and host.status_decided_by != Host.DecidedBy.SUPPLIER:
        raise Forbidden(
            _("Our staff delisted this host: %(reason)s. Only staff can list it again; to appeal, write to %(email)s.")
            % {"reason": host.status_reason or _("no reason given"), "email": settings.APPEALS_EMAIL},
            code=SupplierErrorCode.STAFF_DECISION,
            extra={"reason": host.status_reason, "appeal": settings.APPEALS_EMAIL},
        )
    if listed and host.status == Host.Status.DELISTED:
        host.status = Host.Status.APPROVED
    elif not listed and host.status == Host.Status.APPROVED:
        host.status = Host.Status.DELISTED
    else:
        raise Conflict(
            (_("A %(status)s host cannot be listed.") if listed else _("A %(status)s host cannot be delisted."))
            % {"status": host.get_status_display().lower()},
            code=ErrorCode.INVALID_TRANSITION,
        )
    host.status_reason = ""
    host.status_decided_by = Host.DecidedBy.SUPPLIER
    host.save(update_fields=["status", "status_reason", "status_decided_by", "updated_at"])
    offers_refresh_for_host(host=host)
    return host


@transaction.atomic
def host_set_reliability(*, host: Host, reliability: Decimal | None) -> Host:
    """Record a host's reliability score (0-1; None = not measured) and refresh its offers."""
    if reliability is not None and not Decimal(0) <= reliability <= Decimal(1):
        raise InvalidInput(
            _("Reliability is a fraction between 0 and 1."), fields={"reliability": [_("Out of range.")]}
        )
    host = host_lock(host_id=host.pk)
    host.reliability = reliability
    host.save(update_fields=["reliability", "updated_at"])
    offers_refresh_for_host(host=host)
    return host


def host_declaration(host: Host) -> Declaration:
    model = host.accelerator_model
    return Declaration(
        accelerator_kind=model.kind,
        accelerator_names=tuple(model.inventory_names or [model.name]),
        accelerator_count=host.accelerator_count,
        accelerator_memory_gb=model.memory_gb,
        vcpus=host.vcpus,
        ram_gb=host.ram_gb,
        disk_gb=host.disk_gb,
    )


def host_check_inventory(host: Host) -> list[dict]:
    """Compare the stored inventory with the declaration; set or clear the mismatch. A measured
    inventory (not a file) that matches confirms a hardware change. Lock held."""
    declaration = host_declaration(host)
    inventory: dict[str, Any] = host.inventory or {}
    differences = inventory_differences(declaration, inventory) if inventory else []
    host.inventory_mismatch = differences or None
    confirms = (
        host.hardware_changed_at is not None
        and bool(inventory)
        and not differences
        and inventory_is_evidence(declaration, inventory)
    )
    if confirms:
        audit_record(
            action="host.hardware_confirmed",
            obj=host,
            reason=f"The agent's {inventory.get('source')} inventory matches the new declaration",
            before={"hardware_changed_at": str(host.hardware_changed_at)},
            after={"hardware_changed_at": None},
        )
        host.hardware_changed_at = None
    host.save(update_fields=["inventory_mismatch", "hardware_changed_at", "updated_at"])
    offers_refresh_for_host(host=host)
    return differences
