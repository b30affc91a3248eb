"""What a host can carry under its slicing policy, and the offers derived from it.

The capacity maths is `marketplace.capacity` (pure); this module turns a host row into its inputs.
A host's claims are its active allocations, read through `host.allocations` (orders writes them
under the host lock; this layer only reads them, see docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from django.db.models import Min, OuterRef, Q, Subquery
from django.utils import timezone

from marketplace import capacity
from marketplace.bulk import update_objects
from marketplace.models import AcceleratorKind, InstanceType, Offer
from marketplace.pricing import HostEconomics, OfferFigures, offer_figures

from .models import Host, MaintenanceWindow

DIMENSION_LABELS = {"accelerators": "Accelerators", "vcpus": "vCPUs", "ram_gb": "RAM (GB)", "disk_gb": "Disk (GB)"}


def host_is_cpu_only(host: Host) -> bool:
    return host.accelerator_model.kind == AcceleratorKind.CPU


def host_capacity_spec(host: Host) -> capacity.HostSpec:
    """The pure-maths view of a host: CPU-only hosts are sold by vCPU, the rest by accelerator."""
    cpu_only = host_is_cpu_only(host)
    amounts = {"vcpus": host.vcpus, "ram_gb": host.ram_gb, "disk_gb": host.disk_gb}
    if not cpu_only:
        amounts["accelerators"] = host.accelerator_count
    policy = capacity.SlicingPolicy(host.slicing_policy)
    return capacity.HostSpec(
        capacity=capacity.Resources(amounts),
        policy=policy,
        primary="vcpus" if cpu_only else "accelerators",
        slices=host.equal_slices if policy == capacity.SlicingPolicy.EQUAL else 1,
        oversubscription=Decimal(host.oversubscription_ratio),
    )


def instance_type_shape(instance_type: InstanceType, *, disk_gb: int | None = None) -> capacity.Shape:
    """The type's resources; `disk_gb` replaces its default disk (a buyer may choose a bigger one)."""
    disk = instance_type.disk_gb if disk_gb is None else disk_gb
    amounts = {"vcpus": instance_type.vcpus, "ram_gb": instance_type.ram_gb, "disk_gb": disk}
    if instance_type.accelerator_count:
        amounts["accelerators"] = instance_type.accelerator_count
    return capacity.Shape(name=instance_type.name, resources=capacity.Resources(amounts))


def host_economics(host: Host) -> HostEconomics:
    spec = host_capacity_spec(host)
    model = host.accelerator_model
    return HostEconomics(
        units=capacity.effective_capacity(spec)[spec.primary],
        price_per_unit_hour=Decimal(host.price_per_unit_hour),
        host_power_watts=Decimal(host.power_per_accelerator_watts * host.accelerator_count),
        host_tflops=Decimal(model.bf16_tflops) * host.accelerator_count,
        pue=Decimal(host.pue),
    )


def host_holdings(host: Host) -> list[capacity.Holding]:
    """The host's active allocations for the capacity maths."""
    return [a.as_holding() for a in host.allocations.active().order_by("pk")]


def host_allocated_claims(host: Host) -> list[capacity.Resources]:
    """What on-demand demand cannot take: every committed footprint (spot compute is preemptible)."""
    return [capacity.committed_footprint(h) for h in host_holdings(host)]


def type_fits_host(instance_type: InstanceType, host: Host) -> bool:
    """`InstanceType.objects.compatible_with` for one loaded row: the host's own model, or CPU
    types on CPU hosts."""
    if host.accelerator_model.kind == AcceleratorKind.CPU:
        return instance_type.accelerator_model_id is None
    return instance_type.accelerator_model_id == host.accelerator_model_id


def host_carriable_types(
    host: Host,
    *,
    allocated: list[capacity.Resources] | None = None,
    active_types: list[InstanceType] | None = None,
) -> dict[InstanceType, int]:
    """Each compatible active instance type with how many more the host can carry (0 included).
    `active_types`: every active type, when the caller has read them (no query here then)."""
    spec = host_capacity_spec(host)
    claims = host_allocated_claims(host) if allocated is None else allocated
    if active_types is None:
        types = list(InstanceType.objects.active().compatible_with(host.accelerator_model))
    else:
        types = [t for t in active_types if type_fits_host(t, host)]
    return {t: capacity.available_count(spec, claims, instance_type_shape(t)) for t in types}


def host_is_sellable(host: Host) -> bool:
    """Approved host of an approved organization, before its offer end date, whose agent is not
    offline, whose reported inventory matches its declaration and which is not in maintenance."""
    return _sellable(host, next_maintenance_at=host_rental_terms(host).available_until, now=timezone.now())


def _sellable(host: Host, *, next_maintenance_at: datetime | None, now: datetime) -> bool:
    """`host_is_sellable` given the start of the host's current or next maintenance window (a
    window that started and has not ended means the host is in maintenance now)."""
    return (
        host.status == host.Status.APPROVED
        and host.organization.is_approved
        and (host.offer_ends_at is None or host.offer_ends_at > now)
        and host.agent_status != host.AgentStatus.OFFLINE
        and not host.inventory_mismatch
        and host.hardware_changed_at is None
        and not (next_maintenance_at is not None and next_maintenance_at <= now)
    )


SHORTEST_RENTAL_HOURS = 1  # orders state their length in whole hours, at least one


class TermsRefusal(StrEnum):
    """Why a listed offer cannot be had on an order's terms."""

    UNVERIFIED = "unverified"
    MINIMUM_RENTAL = "minimum_rental"
    MAINTENANCE = "maintenance"


@dataclass(frozen=True)
class RentalTerms:
    """The terms a host's offers can be had on."""

    verified: bool
    min_rental_hours: int
    available_until: datetime | None  # the next maintenance starts: a rental must end by then


def next_maintenance_subquery(host_ref: str = "pk") -> Subquery:
    """The start of the current or next maintenance window of the host `host_ref` names (null when
    none), to annotate many rows in one query."""
    windows = MaintenanceWindow.objects.filter(host=OuterRef(host_ref), ends_at__gt=timezone.now())
    return Subquery(windows.order_by("starts_at").values("starts_at")[:1])


def host_rental_terms(host: Host) -> RentalTerms:
    """The terms the host's offers can be had on now (one query for the next maintenance)."""
    upcoming = (
        host.maintenance_windows.filter(ends_at__gt=timezone.now())
        .order_by("starts_at")
        .values_list("starts_at", flat=True)
        .first()
    )
    return RentalTerms(verified=host.verified, min_rental_hours=host.min_rental_hours, available_until=upcoming)


def rental_terms_refusal(
    terms: RentalTerms,
    *,
    rental_hours: int | None,
    minimum_applies: bool,
    allow_unverified: bool,
    now: datetime,
) -> TermsRefusal | None:
    """Whether a rental of `rental_hours` (None: open-ended) starting `now` can be had on these
    terms. Candidate selection (`orders.candidates`) applies the same rule in SQL.

    An unverified host needs the buyer's opt-in; a stated length below the minimum rental is
    refused where the minimum applies (an open-ended rental is billed at least the minimum instead);
    a rental must end by the next maintenance, so an open-ended one cannot start before it."""
    if not terms.verified and not allow_unverified:
        return TermsRefusal.UNVERIFIED
    if minimum_applies and rental_hours is not None and rental_hours < terms.min_rental_hours:
        return TermsRefusal.MINIMUM_RENTAL
    if terms.available_until is not None and (
        rental_hours is None or now + timedelta(hours=rental_hours) > terms.available_until
    ):
        return TermsRefusal.MAINTENANCE
    return None


def _listed_until(host: Host, terms: RentalTerms) -> datetime | None:
    """The last moment a new rental can start: the supplier's end date, or the latest start from
    which the shortest rental the host takes (its minimum, at least an hour) still ends before the
    next maintenance, whichever is first."""
    latest_start = None
    if terms.available_until is not None:
        shortest = max(SHORTEST_RENTAL_HOURS, terms.min_rental_hours)
        latest_start = terms.available_until - timedelta(hours=shortest)
    candidates = [t for t in (host.offer_ends_at, latest_start) if t is not None]
    return min(candidates) if candidates else None


def host_type_figures(host: Host, instance_type: InstanceType) -> OfferFigures:
    """Price, TFLOPS and energy of one instance of `instance_type` on `host` under its policy."""
    spec = host_capacity_spec(host)
    claimed_units = capacity.claim_for(spec, instance_type_shape(instance_type))[spec.primary]
    return offer_figures(host_economics(host), claimed_units)


OFFER_RELATIONS = frozenset({"accelerator_model", "region", "zone"})


def _differs(offer: Offer, name: str, value: object) -> bool:
    """Whether the stored figure differs (relations by id: no query for the related row)."""
    if name in OFFER_RELATIONS:
        return bool(getattr(offer, f"{name}_id") != getattr(value, "pk", None))
    return bool(getattr(offer, name) != value)


OFFER_FIGURES = (
    "accelerator_model",
    "region",
    "zone",
    "tier",
    "accelerator_kind",
    "accelerator_count",
    "accelerator_memory_gb",
    "vcpus",
    "ram_gb",
    "available_count",
    "price_per_hour",
    "price_per_tflop_hour",
    "tflops",
    "energy_kwh_per_hour",
    "verified",
    "reliability",
    "listed_until",
)


def offers_refresh_for_host(*, host: Host, holdings: list[capacity.Holding] | None = None) -> list[Offer]:
    """Rewrite the host's offers from its remaining capacity; returns those on sale.

    An offer the host can carry keeps its row (and id) at count 0 while it is full or unsellable, so
    an order pinned to it is told it sold out rather than that it never existed; only the rows of
    types the host can no longer carry at all are removed. `holdings` are the host's allocations
    when the caller has them (read under the same lock).

    Precondition: the caller holds the host row lock (`select_for_update`) in the current
    transaction, so what is listed always matches what allocation would accept.
    """
    return offers_refresh_for_hosts(hosts=[host], holdings=None if holdings is None else {host.pk: holdings})


def offers_refresh_for_hosts(
    *,
    hosts: list[Host],
    holdings: dict[int, list[capacity.Holding]] | None = None,
    next_maintenance: dict[int, datetime | None] | None = None,
) -> list[Offer]:
    """`offers_refresh_for_host` for several locked hosts at once, in a fixed number of queries
    whatever their number and types: the next maintenance of each (unless `next_maintenance` gives
    it, read in this transaction), the active types, one read of their offers, then one bulk update
    of the rows that changed, one insert, one delete. `holdings`: every host's allocations, when
    the caller has them (read under the same locks)."""
    if not hosts:
        return []
    now = timezone.now()
    host_ids = [host.pk for host in hosts]
    if next_maintenance is None:
        next_maintenance = dict.fromkeys(host_ids)
        next_maintenance.update(
            MaintenanceWindow.objects.filter(host_id__in=host_ids, ends_at__gt=now)
            .values("host_id")
            .annotate(first=Min("starts_at"))
            .values_list("host_id", "first")
        )
    # Only the types these hosts could carry (their models', and CPU types for CPU hosts).
    fits = Q(accelerator_model_id__in={host.accelerator_model_id for host in hosts})
    if any(host_is_cpu_only(host) for host in hosts):
        fits |= Q(accelerator_model__isnull=True)
    active_types = list(InstanceType.objects.active().filter(fits))
    existing: dict[tuple[int, int], Offer] = {
        (offer.host_id, offer.instance_type_id): offer for offer in Offer.objects.filter(host_id__in=host_ids)
    }
    kept: list[Offer] = []
    changed: list[Offer] = []
    new: list[Offer] = []
    for host in hosts:
        terms = RentalTerms(
            verified=host.verified, min_rental_hours=host.min_rental_hours, available_until=next_maintenance[host.pk]
        )
        sellable = _sellable(host, next_maintenance_at=terms.available_until, now=now)
        listed_until = _listed_until(host, terms)
        claims = None if holdings is None else [capacity.committed_footprint(h) for h in holdings[host.pk]]
        carriable = host_carriable_types(host, allocated=claims, active_types=active_types)
        for instance_type, count in carriable.items():
            offer = existing.get((host.pk, instance_type.pk))
            if offer is None and not (sellable and count > 0):
                continue
            figures = host_type_figures(host, instance_type)
            values = {
                "accelerator_model": host.accelerator_model,
                "region": host.region,
                "zone": host.zone,
                "tier": host.region.tier,
                "accelerator_kind": host.accelerator_model.kind,
                "accelerator_count": instance_type.accelerator_count,
                "accelerator_memory_gb": host.accelerator_model.memory_gb,
                "vcpus": instance_type.vcpus,
                "ram_gb": instance_type.ram_gb,
                "available_count": count if sellable else 0,
                "price_per_hour": figures.price_per_hour,
                "price_per_tflop_hour": figures.price_per_tflop_hour,
                "tflops": figures.tflops,
                "energy_kwh_per_hour": figures.energy_kwh_per_hour,
                "verified": host.verified,
                "reliability": host.reliability,
                "listed_until": listed_until,
            }
            if offer is None:
                offer = Offer(host=host, instance_type=instance_type, **values)
                new.append(offer)
            elif any(_differs(offer, name, value) for name, value in values.items()):
                for name, value in values.items():
                    setattr(offer, name, value)
                offer.updated_at = now
                changed.append(offer)
            kept.append(offer)
    if changed:
        update_objects(changed, [*OFFER_FIGURES, "updated_at"])
    if new:
        Offer.objects.bulk_create(new)
    gone = set(existing) - {(offer.host_id, offer.instance_type_id) for offer in kept}
    if gone:
        Offer.objects.filter(pk__in=[existing[key].pk for key in gone]).delete()
    return [offer for offer in kept if offer.available_count > 0]


def host_capacity_usage(host: Host) -> list[dict]:
    """Per dimension: allocated, effective capacity (after oversubscription) and percent used."""
    limit = capacity.effective_capacity(host_capacity_spec(host))
    allocated = capacity.total(host_allocated_claims(host))
    rows = []
    for dimension, label in DIMENSION_LABELS.items():
        if limit[dimension] == 0:
            continue
        used = allocated[dimension]
        rows.append(
            {
                "label": label,
                "allocated": used,
                "capacity": limit[dimension],
                "percent": round(100 * used / limit[dimension]),
            }
        )
    return rows
