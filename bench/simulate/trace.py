"""Seeded supply and demand traces for the market simulator, saved and replayed as CSV.

Pure Python over the catalog's reference data (`marketplace.catalog`): no database. The same seed
gives the same trace, byte for byte once saved, so scenarios run on exactly the same demand.

Supply: a fleet of hosts across the catalog's regions and accelerator models (GPUs, DSAs and CPU
servers), mostly 8-way servers, each with the standard share of CPU, RAM and disk per accelerator
and a price per accelerator-hour near a reference proportional to the part's TFLOPS.

Demand, over `days` of minutes:
- on-demand arrivals as a Poisson process with a daily cycle (peak mid-afternoon UTC, trough at
  night, 3:1), sized so the fleet is about `load` busy on average;
- sizes 1x to 8x (mostly 1x), of the models in proportion to the fleet, and a share of capability
  requests (a memory and TFLOPS floor, any kind) instead of one type;
- heavy-tailed durations (Pareto, most under an hour, a few for days);
- spot bids below the reference price (30-90% of it);
- a long tail of buyers (Zipf-like), and a few big reserved buyers taking 8x servers for a week.
"""

from __future__ import annotations

import csv
import functools
import math
import random
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from decimal import Decimal
from pathlib import Path

from marketplace import catalog

MINUTES_PER_DAY = 24 * 60
# Fleet mix: (accelerator slug, weight). CPU servers are the three catalog CPUs.
FLEET_MODELS = (
    ("h100-80g", 20),
    ("h200-141g", 5),
    ("a100-80g", 12),
    ("a100-40g", 6),
    ("l40s-48g", 8),
    ("l4-24g", 10),
    ("rtx4090-24g", 10),
    ("rtx3090-24g", 4),
    ("mi300x-192g", 4),
    ("gaudi2-96g", 3),
    ("ascend910b-64g", 6),
    ("inf2-32g", 2),
    ("epyc-9654", 5),
    ("xeon-8480", 3),
    ("altra-m128", 2),
)
SERVER_SIZES = ((8, 60), (4, 25), (2, 10), (1, 5))  # accelerators per server, weight
CPU_SERVER_SOCKETS = ((2, 70), (1, 30))
ORDER_SIZES = ((1, 55), (2, 20), (4, 15), (8, 10))  # accelerators per instance, weight
PRICE_PER_TFLOP_HOUR = Decimal("0.0025")  # reference: an H100 near $2.50 per hour
SPOT_SHARE = 0.2
CAPABILITY_SHARE = 0.15
CAPABILITY_FLOORS = ((24, 100), (48, 300), (80, 300), (80, 900))  # (min memory GB, min TFLOPS)
DURATION_MIN_MINUTES = 20
DURATION_SHAPE = 1.3  # Pareto: heavy tail, mean about 4x the minimum
RESERVED_BUYERS = 3
RESERVED_TERM_MINUTES = 7 * MINUTES_PER_DAY
BUYERS = 2000


@dataclass(frozen=True)
class FleetHost:
    host: int
    region: str
    accelerator: str  # catalog slug (a CPU model for CPU servers)
    kind: str
    units: int  # accelerators, or sockets for CPU servers
    vcpus: int
    ram_gb: int
    disk_gb: int
    price_per_unit_hour: Decimal


@dataclass(frozen=True)
class Demand:
    minute: int  # arrival, from the start of the trace
    buyer: str
    pricing: str  # on_demand, spot or reserved
    instance_type: str  # empty for a capability request
    min_memory_gb: int  # capability requests: the floor of memory (accelerator memory x count)
    min_tflops: int  # capability requests: the floor of TFLOPS
    count: int
    minutes: int  # how long it runs once placed
    bid_per_hour: Decimal | None  # spot: the most paid per instance-hour


@dataclass(frozen=True)
class Trace:
    fleet: list[FleetHost]
    demand: list[Demand]


def _pick(rng: random.Random, weighted: Iterable[tuple[object, int]]) -> object:
    choices, weights = zip(*weighted, strict=True)
    return rng.choices(choices, weights=weights)[0]


@functools.cache
def _specs() -> dict[str, catalog.AcceleratorSpec]:
    return {spec.slug: spec for spec in catalog.ACCELERATORS}


@functools.cache
def _types() -> dict[str, catalog.InstanceTypeSpec]:
    return {spec.name: spec for spec in catalog.instance_type_specs()}


def reference_price_per_unit_hour(spec: catalog.AcceleratorSpec) -> Decimal:
    """What an accelerator-hour of this part is listed at, about: proportional to its TFLOPS."""
    return max(Decimal("0.05"), (spec.bf16_tflops * PRICE_PER_TFLOP_HOUR).quantize(Decimal("0.01")))


def generate_fleet(hosts: int, *, seed: int) -> list[FleetHost]:
    rng = random.Random(f"fleet:{seed}")
    specs = _specs()
    regions = [region.code for region in catalog.REGIONS]
    fleet = []
    for host in range(1, hosts + 1):
        spec = specs[str(_pick(rng, FLEET_MODELS))]
        if spec.kind == catalog.CPU:
            units = int(str(_pick(rng, CPU_SERVER_SOCKETS)))
        else:
            units = int(str(_pick(rng, SERVER_SIZES)))
        price = reference_price_per_unit_hour(spec) * Decimal(str(round(rng.uniform(0.8, 1.3), 2)))
        fleet.append(
            FleetHost(
                host=host,
                region=rng.choice(regions),
                accelerator=spec.slug,
                kind=spec.kind,
                units=units,
                vcpus=spec.vcpus_per_unit * units,
                ram_gb=spec.ram_gb_per_unit * units,
                disk_gb=spec.disk_gb_per_unit * units,
                price_per_unit_hour=price.quantize(Decimal("0.01")),
            )
        )
    return fleet


def daily_cycle(minute: int) -> float:
    """The arrival rate's multiplier at this minute: 1.5 at 15:00 UTC, 0.5 at 03:00."""
    return 1 + 0.5 * math.sin(2 * math.pi * ((minute % MINUTES_PER_DAY) / MINUTES_PER_DAY - 0.375))


def _duration(rng: random.Random, longest: int) -> int:
    return min(longest, int(DURATION_MIN_MINUTES * rng.paretovariate(DURATION_SHAPE)))


def _cpu_type(rng: random.Random) -> catalog.InstanceTypeSpec:
    return _types()[f"cpu.{rng.choice((4, 8, 16, 32, 64))}x"]


def _typed_demand(rng: random.Random, fleet_models: list[tuple[object, int]]) -> tuple[catalog.InstanceTypeSpec, int]:
    """An instance type of a model in proportion to the fleet; its accelerator-hours per hour."""
    spec = _specs()[str(_pick(rng, fleet_models))]
    if spec.kind == catalog.CPU:
        return _cpu_type(rng), 0
    size = int(str(_pick(rng, ORDER_SIZES)))
    return _types()[f"{spec.slug}.{size}x"], size


def generate_demand(fleet: list[FleetHost], *, days: int, seed: int, load: float = 0.8) -> list[Demand]:
    rng = random.Random(f"demand:{seed}")
    specs = _specs()
    longest = days * MINUTES_PER_DAY
    units = sum(host.units for host in fleet if host.kind != catalog.CPU)
    weights: dict[str, int] = {}
    for host in fleet:
        weights[host.accelerator] = weights.get(host.accelerator, 0) + host.units
    fleet_models = sorted(weights.items())
    # Mean accelerator-minutes an on-demand arrival asks for, so the rate fills `load` of the fleet.
    mean_size = sum(size * weight for size, weight in ORDER_SIZES) / sum(w for _, w in ORDER_SIZES)
    mean_minutes = DURATION_MIN_MINUTES * DURATION_SHAPE / (DURATION_SHAPE - 1)
    base_rate = load * units / (mean_size * mean_minutes)  # arrivals per minute, on average
    demand: list[Demand] = []
    for i in range(RESERVED_BUYERS):
        spec = specs[str(_pick(rng, [(slug, w) for slug, w in fleet_models if specs[slug].kind != catalog.CPU]))]
        demand.append(
            Demand(
                minute=rng.randrange(0, 6 * 60),
                buyer=f"reserved-{i + 1}",
                pricing="reserved",
                instance_type=f"{spec.slug}.8x",
                min_memory_gb=0,
                min_tflops=0,
                count=rng.randint(2, 4),
                minutes=RESERVED_TERM_MINUTES,
                bid_per_hour=None,
            )
        )
    minute = 0.0
    peak = 1.5 * base_rate
    while True:
        minute += rng.expovariate(peak)  # thinning: candidates at the peak rate, kept by the cycle
        if minute >= longest:
            break
        if rng.random() > daily_cycle(int(minute)) / 1.5:
            continue
        buyer = f"b{min(BUYERS, int(rng.paretovariate(1.1)))}"
        duration = _duration(rng, longest)
        if rng.random() < CAPABILITY_SHARE:
            memory, tflops = CAPABILITY_FLOORS[rng.randrange(len(CAPABILITY_FLOORS))]
            demand.append(Demand(int(minute), buyer, "on_demand", "", memory, tflops, 1, duration, None))
            continue
        instance_type, size = _typed_demand(rng, fleet_models)
        pricing, bid = "on_demand", None
        if rng.random() < SPOT_SHARE and instance_type.accelerator_slug:
            reference = reference_price_per_unit_hour(specs[instance_type.accelerator_slug]) * size
            pricing, bid = "spot", (reference * Decimal(str(round(rng.uniform(0.3, 0.9), 2)))).quantize(Decimal("0.01"))
        demand.append(Demand(int(minute), buyer, pricing, instance_type.name, 0, 0, 1, duration, bid))
    demand.sort(key=lambda d: (d.minute, d.buyer, d.instance_type))
    return demand


def generate_trace(*, hosts: int, days: int, seed: int, load: float = 0.8) -> Trace:
    fleet = generate_fleet(hosts, seed=seed)
    return Trace(fleet=fleet, demand=generate_demand(fleet, days=days, seed=seed, load=load))


def _write(path: Path, rows: list, row_type: type) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f.name for f in fields(row_type)])
        for row in rows:
            writer.writerow(["" if value is None else str(value) for value in astuple(row)])


def _read(path: Path, row_type: type) -> list:
    types = {f.name: f.type for f in fields(row_type)}
    rows = []
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            values = {}
            for name, raw in record.items():
                kind = types[name]
                if kind == "int":
                    values[name] = int(raw)
                elif kind.startswith("Decimal"):
                    values[name] = Decimal(raw) if raw else None
                else:
                    values[name] = raw
            rows.append(row_type(**values))
    return rows


def save_trace(trace: Trace, directory: Path) -> None:
    """Write `fleet.csv` and `demand.csv` into `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    _write(directory / "fleet.csv", trace.fleet, FleetHost)
    _write(directory / "demand.csv", trace.demand, Demand)


def load_trace(directory: Path) -> Trace:
    """A trace saved by `save_trace`, exactly as it was generated."""
    return Trace(fleet=_read(directory / "fleet.csv", FleetHost), demand=_read(directory / "demand.csv", Demand))
