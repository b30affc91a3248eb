from decimal import Decimal

import pytest

from marketplace.catalog import ACCELERATORS, instance_type_specs
from marketplace.models import AcceleratorModel, InstanceType, Region, Zone
from marketplace.services import catalog_sync

pytestmark = pytest.mark.django_db


def test_catalog_has_the_required_accelerator_models_with_real_figures():
    names = set(AcceleratorModel.objects.values_list("name", flat=True))
    for required in (
        "H200",
        "H100 SXM",
        "H100 PCIe",
        "A100 SXM 80GB",
        "A100 SXM 40GB",
        "L40S",
        "L4",
        "RTX 4090",
        "RTX 3090",
        "MI300X",
    ):
        assert any(required in name for name in names), required
    assert AcceleratorModel.objects.count() >= 12
    assert AcceleratorModel.objects.filter(kind="dsa").count() >= 1
    assert AcceleratorModel.objects.filter(kind="cpu").count() >= 1
    h100 = AcceleratorModel.objects.get(slug="h100-80g")
    assert (h100.memory_gb, h100.bf16_tflops, h100.tdp_watts) == (80, Decimal("989.0"), 700)


def test_catalog_sync_is_idempotent():
    before = (
        AcceleratorModel.objects.count(),
        InstanceType.objects.count(),
        Region.objects.count(),
        Zone.objects.count(),
    )
    assert catalog_sync() == {"accelerator_models": 0, "regions": 0, "zones": 0, "instance_types": 0}
    after = (
        AcceleratorModel.objects.count(),
        InstanceType.objects.count(),
        Region.objects.count(),
        Zone.objects.count(),
    )
    assert before == after


def test_catalog_sync_keeps_staff_edits():
    InstanceType.objects.filter(name="l4-24g.1x").update(ram_gb=64)
    catalog_sync()
    assert InstanceType.objects.get(name="l4-24g.1x").ram_gb == 64


def test_instance_types_have_a_consistent_per_accelerator_share():
    specs = {s.name: s for s in instance_type_specs()}
    for accel in ACCELERATORS:
        if accel.kind == "cpu":
            continue
        one = specs[f"{accel.slug}.1x"]
        for count in (2, 4, 8):
            many = specs[f"{accel.slug}.{count}x"]
            assert (many.vcpus, many.ram_gb, many.disk_gb) == (
                one.vcpus * count,
                one.ram_gb * count,
                one.disk_gb * count,
            )
        # High-CPU plus high-memory take exactly what two standard instances take.
        hc, hm = specs[f"{accel.slug}.2x.highcpu"], specs[f"{accel.slug}.2x.highmem"]
        two = specs[f"{accel.slug}.2x"]
        assert hc.vcpus + hm.vcpus == 2 * two.vcpus
        assert hc.ram_gb + hm.ram_gb == 2 * two.ram_gb


def test_the_issue_names_exist():
    for name in ("h100-80g.1x", "h100-80g.8x", "l4-24g.2x", "cpu.16x"):
        assert InstanceType.objects.filter(name=name).exists(), name


def test_regions_span_cloud_and_edge_with_coordinates():
    assert Region.objects.filter(tier="cloud").count() >= 4
    assert Region.objects.filter(tier="edge").count() >= 1
    assert all(-90 <= r.latitude <= 90 and -180 <= r.longitude <= 180 for r in Region.objects.all())
