"""Platform writes: keeping the catalog in step with reference data and offers with capacity."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from . import capacity, catalog
from .models import AcceleratorKind, AcceleratorModel, InstanceType, Offer, Region, Zone
from .pricing import HostEconomics, OfferFigures, offer_figures

logger = logging.getLogger(__name__)


# --- Capacity views of hosts and instance types -------------------------------------------


def host_is_cpu_only(host) -> bool:
    return host.accelerator_model.kind == AcceleratorKind.CPU


def host_capacity_spec(host) -> capacity.HostSpec:
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


def instance_type_shape(instance_type: InstanceType) -> capacity.Shape:
    amounts = {"vcpus": instance_type.vcpus, "ram_gb": instance_type.ram_gb, "disk_gb": instance_type.disk_gb}
    if instance_type.accelerator_count:
        amounts["accelerators"] = instance_type.accelerator_count
    return capacity.Shape(name=instance_type.name, resources=capacity.Resources(amounts))


def host_economics(host) -> HostEconomics:
    spec = host_capacity_spec(host)
    model = host.accelerator_model
    return HostEconomics(
        units=capacity.effective_capacity(spec)[spec.primary],
        price_per_unit_hour=Decimal(host.price_per_unit_hour),
        host_power_watts=Decimal(host.power_per_accelerator_watts * host.accelerator_count),
        host_tflops=Decimal(model.bf16_tflops) * host.accelerator_count,
        pue=Decimal(host.pue),
    )


def host_holdings(host) -> list[capacity.Holding]:
    """The host's active allocations for the capacity maths."""
    from orders.models import Allocation

    return [a.as_holding() for a in Allocation.objects.active().filter(host=host).order_by("pk")]


def host_allocated_claims(host) -> list[capacity.Resources]:
    """What on-demand demand cannot take: every committed footprint (spot compute is preemptible)."""
    return [capacity.committed_footprint(h) for h in host_holdings(host)]


def host_carriable_types(host, *, allocated: list[capacity.Resources] | None = None) -> dict[InstanceType, int]:
    """Each compatible active instance type with how many more the host can carry (0 included)."""
    spec = host_capacity_spec(host)
    claims = host_allocated_claims(host) if allocated is None else allocated
    types = list(InstanceType.objects.active().compatible_with(host.accelerator_model))
    return {t: capacity.available_count(spec, claims, instance_type_shape(t)) for t in types}


def host_is_sellable(host) -> bool:
    """Approved host of an approved organization, before its offer end date, whose agent is not
    offline and whose reported inventory matches its declaration."""
    return (
        host.status == host.Status.APPROVED
        and host.organization.is_approved
        and (host.offer_ends_at is None or host.offer_ends_at > timezone.now())
        and host.agent_status != host.AgentStatus.OFFLINE
        and not host.inventory_mismatch
        and not host.maintenance_windows.filter(starts_at__lte=timezone.now(), ends_at__gt=timezone.now()).exists()
    )


def _listed_until(host):
    """Offers end at the supplier's end date or the next maintenance window, whichever is first."""
    upcoming = host.maintenance_windows.filter(starts_at__gt=timezone.now()).order_by("starts_at").first()
    candidates = [t for t in (host.offer_ends_at, upcoming.starts_at if upcoming else None) if t is not None]
    return min(candidates) if candidates else None


def host_type_figures(host, instance_type: InstanceType) -> OfferFigures:
    """Price, TFLOPS and energy of one instance of `instance_type` on `host` under its policy."""
    spec = host_capacity_spec(host)
    claimed_units = capacity.claim_for(spec, instance_type_shape(instance_type))[spec.primary]
    return offer_figures(host_economics(host), claimed_units)


# --- Offers ---------------------------------------------------------------------------------


def offers_refresh_for_host(*, host) -> list[Offer]:
    """Rewrite the host's offers from its remaining capacity.

    Precondition: the caller holds the host row lock (`select_for_update`) in the current
    transaction, so what is listed always matches what allocation would accept.
    """
    counts = host_carriable_types(host) if host_is_sellable(host) else {}
    kept: list[Offer] = []
    for instance_type, count in counts.items():
        if count <= 0:
            continue
        figures = host_type_figures(host, instance_type)
        offer, _ = Offer.objects.update_or_create(
            host=host,
            instance_type=instance_type,
            defaults={
                "accelerator_model": host.accelerator_model,
                "region": host.region,
                "zone": host.zone,
                "tier": host.region.tier,
                "available_count": count,
                "price_per_hour": figures.price_per_hour,
                "price_per_tflop_hour": figures.price_per_tflop_hour,
                "tflops": figures.tflops,
                "energy_kwh_per_hour": figures.energy_kwh_per_hour,
                "verified": host.verified,
                "reliability": host.reliability,
                "listed_until": _listed_until(host),
            },
        )
        kept.append(offer)
    Offer.objects.filter(host=host).exclude(pk__in=[o.pk for o in kept]).delete()
    return kept


def offers_delist_expired(*, batch_size: int = 500) -> int:
    """Remove offers whose host's offer end date has passed. Returns how many were removed.

    Listing already hides them (see `OfferQuerySet.listed`); this keeps the table to what is live.
    """
    expired_ids = list(Offer.objects.filter(listed_until__lte=timezone.now()).values_list("pk", flat=True)[:batch_size])
    if not expired_ids:
        return 0
    deleted, _ = Offer.objects.filter(pk__in=expired_ids, listed_until__lte=timezone.now()).delete()
    return deleted


# --- Catalog --------------------------------------------------------------------------------


@transaction.atomic
def catalog_sync() -> dict[str, int]:
    """Create missing reference data (accelerators, regions, zones, instance types). Idempotent.

    Existing rows are left as staff may have edited them.
    """
    created = {"accelerator_models": 0, "regions": 0, "zones": 0, "instance_types": 0}
    models_by_slug = {}
    for spec in catalog.ACCELERATORS:
        model, was_created = AcceleratorModel.objects.get_or_create(
            slug=spec.slug,
            defaults={
                "vendor": spec.vendor,
                "name": spec.name,
                "kind": spec.kind,
                "memory_gb": spec.memory_gb,
                "bf16_tflops": spec.bf16_tflops,
                "fp32_tflops": spec.fp32_tflops,
                "tdp_watts": spec.tdp_watts,
                "cores": spec.cores,
                "vcpus_per_unit": spec.vcpus_per_unit,
                "ram_gb_per_unit": spec.ram_gb_per_unit,
                "disk_gb_per_unit": spec.disk_gb_per_unit,
                "inventory_names": list(catalog.INVENTORY_NAMES.get(spec.slug, ())),
            },
        )
        if not model.inventory_names and catalog.INVENTORY_NAMES.get(spec.slug):
            model.inventory_names = list(catalog.INVENTORY_NAMES[spec.slug])
            model.save(update_fields=["inventory_names"])
        models_by_slug[spec.slug] = model
        created["accelerator_models"] += was_created
    for spec in catalog.instance_type_specs():
        _, was_created = InstanceType.objects.get_or_create(
            name=spec.name,
            defaults={
                "accelerator_model": models_by_slug.get(spec.accelerator_slug) if spec.accelerator_slug else None,
                "accelerator_count": spec.accelerator_count,
                "family": spec.family,
                "vcpus": spec.vcpus,
                "ram_gb": spec.ram_gb,
                "disk_gb": spec.disk_gb,
            },
        )
        created["instance_types"] += was_created
    for spec in catalog.REGIONS:
        region, was_created = Region.objects.get_or_create(
            code=spec.code,
            defaults={
                "name": spec.name,
                "tier": spec.tier,
                "country": spec.country,
                "latitude": spec.latitude,
                "longitude": spec.longitude,
            },
        )
        created["regions"] += was_created
        for zone_code in spec.zones:
            _, was_created = Zone.objects.get_or_create(
                code=zone_code, defaults={"region": region, "name": zone_code.upper()}
            )
            created["zones"] += was_created
    return created
