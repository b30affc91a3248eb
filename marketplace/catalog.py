"""Reference data for the catalog, and the rule that derives standard instance types from it.

Figures are vendors' published numbers: dense (no sparsity) BF16/FP16 tensor TFLOPS, FP32
TFLOPS, memory and board/module power. For CPUs the unit is one socket and the figures are
peak vector throughput (cores x clock x FLOPs per cycle). Pure data and functions: the data
migration and the `catalog_sync` service both read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

GPU, DSA, CPU = "gpu", "dsa", "cpu"

# Per-accelerator share of host CPU/RAM/disk in the standard family, by class of part.
_HBM_DC = (24, 256, 2000)  # 8-way SXM/OAM training servers
_PCIE_DC = (16, 128, 1000)
_INFERENCE = (8, 48, 500)
_CONSUMER = (8, 32, 500)


@dataclass(frozen=True)
class AcceleratorSpec:
    vendor: str
    name: str
    slug: str
    kind: str
    memory_gb: int
    bf16_tflops: Decimal
    fp32_tflops: Decimal
    tdp_watts: int
    vcpus_per_unit: int
    ram_gb_per_unit: int
    disk_gb_per_unit: int
    cores: int | None = None  # CPUs only: physical cores per socket


def _accel(
    vendor: str,
    name: str,
    slug: str,
    kind: str,
    memory_gb: int,
    bf16: str,
    fp32: str,
    tdp: int,
    share: tuple[int, int, int],
    cores: int | None = None,
) -> AcceleratorSpec:
    vcpus, ram, disk = share
    return AcceleratorSpec(
        vendor, name, slug, kind, memory_gb, Decimal(bf16), Decimal(fp32), tdp, vcpus, ram, disk, cores
    )


ACCELERATORS: tuple[AcceleratorSpec, ...] = (
    _accel("NVIDIA", "H200 SXM 141GB", "h200-141g", GPU, 141, "989.0", "67.0", 700, _HBM_DC),
    _accel("NVIDIA", "H100 SXM 80GB", "h100-80g", GPU, 80, "989.0", "67.0", 700, _HBM_DC),
    _accel("NVIDIA", "H100 PCIe 80GB", "h100-pcie-80g", GPU, 80, "756.0", "51.0", 350, _PCIE_DC),
    _accel("NVIDIA", "A100 SXM 80GB", "a100-80g", GPU, 80, "312.0", "19.5", 400, _PCIE_DC),
    _accel("NVIDIA", "A100 SXM 40GB", "a100-40g", GPU, 40, "312.0", "19.5", 400, _PCIE_DC),
    _accel("NVIDIA", "L40S", "l40s-48g", GPU, 48, "362.0", "91.6", 350, _INFERENCE),
    _accel("NVIDIA", "L4", "l4-24g", GPU, 24, "121.0", "30.3", 72, _INFERENCE),
    _accel("NVIDIA", "GeForce RTX 4090", "rtx4090-24g", GPU, 24, "165.2", "82.6", 450, _CONSUMER),
    _accel("NVIDIA", "GeForce RTX 3090", "rtx3090-24g", GPU, 24, "71.0", "35.6", 350, _CONSUMER),
    _accel("AMD", "Instinct MI300X", "mi300x-192g", GPU, 192, "1307.4", "163.4", 750, _HBM_DC),
    _accel("Intel", "Gaudi 2", "gaudi2-96g", DSA, 96, "432.0", "11.0", 600, _HBM_DC),
    _accel("Huawei", "Ascend 910B", "ascend910b-64g", DSA, 64, "320.0", "80.0", 400, _PCIE_DC),
    _accel("AWS", "Inferentia2", "inf2-32g", DSA, 32, "190.0", "47.5", 130, _INFERENCE),
    # CPUs: one unit is one socket; vCPUs are hardware threads (2 per core).
    _accel("AMD", "EPYC 9654", "epyc-9654", CPU, 0, "14.7", "7.4", 360, (192, 768, 3840), cores=96),
    _accel("Intel", "Xeon Platinum 8480+", "xeon-8480", CPU, 0, "114.7", "7.2", 350, (112, 448, 2240), cores=56),
    _accel("Ampere", "Altra Max M128-30", "altra-m128", CPU, 0, "6.1", "6.1", 250, (128, 512, 2560), cores=128),
)

ACCELERATOR_COUNTS = (1, 2, 4, 8)
CPU_INSTANCE_VCPUS = (2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 224, 256)
CPU_RAM_GB_PER_VCPU = 4
CPU_DISK_GB_PER_VCPU = 20

# Families: complementary shapes, so a high-CPU and a high-memory instance together take exactly
# what two standard ones would, and pack onto the same host without leaving either idle.
FAMILIES = {
    "standard": (Decimal("1"), Decimal("1")),
    "highcpu": (Decimal("1.5"), Decimal("0.5")),
    "highmem": (Decimal("0.5"), Decimal("1.5")),
}


@dataclass(frozen=True)
class InstanceTypeSpec:
    name: str
    accelerator_slug: str | None
    accelerator_count: int
    family: str
    vcpus: int
    ram_gb: int
    disk_gb: int


def _family_suffix(family: str) -> str:
    return "" if family == "standard" else f".{family}"


def instance_type_specs(accelerators: tuple[AcceleratorSpec, ...] = ACCELERATORS) -> list[InstanceTypeSpec]:
    """Standard instance types: every accelerator model x count x family, plus CPU sizes."""
    specs: list[InstanceTypeSpec] = []
    for accel in accelerators:
        if accel.kind == CPU:
            continue
        for count in ACCELERATOR_COUNTS:
            for family, (cpu_factor, ram_factor) in FAMILIES.items():
                specs.append(
                    InstanceTypeSpec(
                        name=f"{accel.slug}.{count}x{_family_suffix(family)}",
                        accelerator_slug=accel.slug,
                        accelerator_count=count,
                        family=family,
                        vcpus=int(accel.vcpus_per_unit * count * cpu_factor),
                        ram_gb=int(accel.ram_gb_per_unit * count * ram_factor),
                        disk_gb=accel.disk_gb_per_unit * count,
                    )
                )
    for vcpus in CPU_INSTANCE_VCPUS:
        for family, (_, ram_factor) in FAMILIES.items():
            if family == "highcpu" and vcpus < 4:
                continue
            specs.append(
                InstanceTypeSpec(
                    name=f"cpu.{vcpus}x{_family_suffix(family)}",
                    accelerator_slug=None,
                    accelerator_count=0,
                    family=family,
                    vcpus=vcpus,
                    ram_gb=int(vcpus * CPU_RAM_GB_PER_VCPU * ram_factor),
                    disk_gb=vcpus * CPU_DISK_GB_PER_VCPU,
                )
            )
    return specs


@dataclass(frozen=True)
class RegionSpec:
    code: str
    name: str
    tier: str
    country: str
    latitude: Decimal
    longitude: Decimal
    zones: tuple[str, ...]


def _region(code: str, name: str, tier: str, country: str, lat: str, lon: str, zones: tuple[str, ...]) -> RegionSpec:
    return RegionSpec(code, name, tier, country, Decimal(lat), Decimal(lon), tuple(zones))


REGIONS: tuple[RegionSpec, ...] = (
    _region("us-east", "US East (Ashburn, VA)", "cloud", "US", "39.0438", "-77.4874", ("us-east-a", "us-east-b")),
    _region("us-west", "US West (Hillsboro, OR)", "cloud", "US", "45.5229", "-122.9898", ("us-west-a", "us-west-b")),
    _region(
        "eu-central", "EU Central (Frankfurt)", "cloud", "DE", "50.1109", "8.6821", ("eu-central-a", "eu-central-b")
    ),
    _region("eu-north", "EU North (Stockholm)", "cloud", "SE", "59.3293", "18.0686", ("eu-north-a",)),
    _region("ap-northeast", "Asia Pacific (Tokyo)", "cloud", "JP", "35.6762", "139.6503", ("ap-northeast-a",)),
    _region("ap-southeast", "Asia Pacific (Singapore)", "cloud", "SG", "1.3521", "103.8198", ("ap-southeast-a",)),
    _region("edge-nyc", "Edge New York", "edge", "US", "40.7128", "-74.0060", ("edge-nyc-1",)),
    _region("edge-lon", "Edge London", "edge", "GB", "51.5072", "-0.1276", ("edge-lon-1",)),
    _region("edge-sgp", "Edge Singapore", "edge", "SG", "1.2903", "103.8519", ("edge-sgp-1",)),
)

# What drivers call each part (nvidia-smi's name, /proc/cpuinfo's model name). An inventory
# matches a model when the reported name contains every word of one of these, ignoring case.
INVENTORY_NAMES: dict[str, tuple[str, ...]] = {
    "h200-141g": ("H200",),
    "h100-80g": ("H100 80GB HBM3", "H100 SXM"),
    "h100-pcie-80g": ("H100 PCIe",),
    "a100-80g": ("A100 SXM4 80GB", "A100-SXM4-80GB", "A100 80GB"),
    "a100-40g": ("A100 SXM4 40GB", "A100-SXM4-40GB", "A100 40GB"),
    "l40s-48g": ("L40S",),
    "l4-24g": ("NVIDIA L4",),
    "rtx4090-24g": ("RTX 4090",),
    "rtx3090-24g": ("RTX 3090",),
    "mi300x-192g": ("MI300X",),
    "gaudi2-96g": ("HL-225", "Gaudi2", "Gaudi 2"),
    "ascend910b-64g": ("Ascend 910B", "Ascend910B"),
    "inf2-32g": ("Inferentia2",),
    "epyc-9654": ("EPYC 9654",),
    "xeon-8480": ("Xeon Platinum 8480",),
    "altra-m128": ("Altra Max", "M128-30"),
}
