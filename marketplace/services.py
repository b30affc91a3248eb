"""Platform writes: keeping the catalog in step with reference data, and the offers table to what is live.

What a host can carry and the offers derived from it are `suppliers.offers` (they take a host).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from . import catalog
from .models import AcceleratorModel, InstanceType, Offer, Region, Zone
from .walks import Walk, walk_from


def offers_delist_expired(*, after: int = 0, batch_size: int = 500) -> Walk:
    """Take offers past their end date off sale (count 0), one keyset batch of offer ids after
    `after` (see `marketplace.walks`); `done` is how many were taken off.

    Listing already hides them (see `OfferQuerySet.listed`); the row stays so that an order pinned
    to it is told it is no longer listed rather than that it never existed.
    """
    keys = list(
        Offer.objects.filter(pk__gt=after, listed_until__lte=timezone.now(), available_count__gt=0)
        .order_by("pk")
        .values_list("pk", flat=True)[:batch_size]
    )
    taken_off = Offer.objects.filter(pk__in=keys, listed_until__lte=timezone.now()).update(available_count=0)
    return walk_from(keys, batch_size=batch_size, done=taken_off)


@transaction.atomic
def offer_catalog_figures_copy(
    *, instance_type: InstanceType | None = None, accelerator_model: AcceleratorModel | None = None
) -> int:
    """After staff edit a catalog row, the offers' copies of its search figures (`Offer`'s
    accelerator kind, count and memory, vCPUs, RAM) follow in one UPDATE, so search filters on what
    the catalog says now. Prices and TFLOPS follow at each host's next offers refresh (they depend on
    the host's own declaration). Returns the offers updated."""
    updated = 0
    if instance_type is not None:
        updated += Offer.objects.filter(instance_type=instance_type).update(
            accelerator_count=instance_type.accelerator_count, vcpus=instance_type.vcpus, ram_gb=instance_type.ram_gb
        )
    if accelerator_model is not None:
        updated += Offer.objects.filter(accelerator_model=accelerator_model).update(
            accelerator_kind=accelerator_model.kind, accelerator_memory_gb=accelerator_model.memory_gb
        )
    return updated


def catalog_sync() -> dict[str, int]:
    """Create missing reference data (accelerators, regions, zones, instance types). Idempotent.

    Existing rows are left as staff may have edited them.
    """
    created = {"accelerator_models": 0, "regions": 0, "zones": 0, "instance_types": 0}
    models_by_slug: dict[str, AcceleratorModel] = {}
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
    for type_spec in catalog.instance_type_specs():
        _, was_created = InstanceType.objects.get_or_create(
            name=type_spec.name,
            defaults={
                "accelerator_model": (
                    models_by_slug.get(type_spec.accelerator_slug) if type_spec.accelerator_slug else None
                ),
                "accelerator_count": type_spec.accelerator_count,
                "family": type_spec.family,
                "vcpus": type_spec.vcpus,
                "ram_gb": type_spec.ram_gb,
                "disk_gb": type_spec.disk_gb,
            },
        )
        created["instance_types"] += was_created
    for region_spec in catalog.REGIONS:
        region, was_created = Region.objects.get_or_create(
            code=region_spec.code,
            defaults={
                "name": region_spec.name,
                "tier": region_spec.tier,
                "country": region_spec.country,
                "latitude": region_spec.latitude,
                "longitude": region_spec.longitude,
            },
        )
        created["regions"] += was_created
        for zone_code in region_spec.zones:
            _, was_created = Zone.objects.get_or_create(
                code=zone_code, defaults={"region": region, "name": zone_code.upper()}
            )
            created["zones"] += was_created
    return created
