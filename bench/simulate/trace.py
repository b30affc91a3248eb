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
  requests (a memory and TFLOPS floor, any kind, and a price ceiling) instead of one type;
- heavy-tailed durations (Pareto, most under an hour, a few for days);
- spot bids below the reference price (30-90% of it), from buyers as above and from batch buyers
  whose spot work arrives mostly at night, when capacity is cheap and free (`BATCH_SPOT_LOAD`);
- a long tail of buyers (Zipf-like), and a few big reserved buyers taking 8x servers for a week,
  who use them in sessions: the trace lists when each one's servers stand idle (stopped).
"""

from __future__ import annotations

import csv
import functools
import math
import random
from collections.abc import Iterable
from dataclasses import astuple, dataclass, field, fields
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
# Servers carry more local disk than their instance types claim in all (8x NVMe drives for 8 GPUs):
# a stopped instance's disk stays, and spot backfill on idle reserved capacity needs disk of its own.
DISK_HEADROOM = 2
SERVER_SIZES = ((8, 60), (4, 25), (2, 10), (1, 5))  # accelerators per server, weight
CPU_SERVER_SOCKETS = ((2, 70), (1, 30))
ORDER_SIZES = ((1, 55), (2, 20), (4, 15), (8, 10))  # accelerators per instance, weight
PRICE_PER_TFLOP_HOUR = Decimal("0.0025")  # reference: an H100 near $2.50 per hour
SPOT_SHARE = 0.2
CAPABILITY_SHARE = 0.15
CAPABILITY_FLOORS = ((24, 100), (48, 300), (80, 300), (80, 900))  # (min memory GB, min TFLOPS)
CAPABILITY_CEILING = (1.5, 3.0)  # a capability buyer's price ceiling, as a multiple of the cheapest fit's
DURATION_MIN_MINUTES = 20
DURATION_SHAPE = 1.3  # Pareto: heavy tail, mean about 4x the minimum
BATCH_SPOT_LOAD = 0.3  # batch spot work, as a share of the fleet it would keep busy on average
BATCH_BUYERS = 20
HOSTS_PER_RESERVED_BUYER = 40  # 5 reserved buyers in a fleet of 200
RESERVED_SERVERS = (2, 5)  # 8x servers per reserved buyer, fewest and most
RESERVED_TERM_MINUTES = 7 * MINUTES_PER_DAY
RESERVED_RUN_HOURS = (4, 16)  # a reserved buyer's working session, shortest and longest
RESERVED_IDLE_HOURS = (4, 20)  # the gap between two sessions
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
    # The most paid per instance-hour: a spot bid, or a capability buyer's price ceiling (the
    # product's `max_price_per_hour`); None: no ceiling.
    bid_per_hour: Decimal | None


@dataclass(frozen=True)
class ReservedIdle:
    """A window in which a reserved buyer's servers stand stopped (its term is paid all the same)."""

    buyer: str
    start: int  # minute the buyer stops them
    end: int  # minute the buyer starts them again


@dataclass(frozen=True)
class Trace:
    fleet: list[FleetHost]
    demand: list[Demand]
    reserved_idle: list[ReservedIdle] = field(default_factory=list)


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


@functools.cache
def capable_types(min_memory_gb: int, min_tflops: int) -> list[catalog.InstanceTypeSpec]:
    """The catalog's standard accelerator types that meet a capability request."""
    types = []
    for spec in _types().values():
        if spec.family != "standard" or not spec.accelerator_slug:
            continue
        model = _specs()[spec.accelerator_slug]
        if (
            model.memory_gb * spec.accelerator_count >= min_memory_gb
            and model.bf16_tflops * spec.accelerator_count >= min_tflops
        ):
            types.append(spec)
    return types


def type_reference_price(spec: catalog.InstanceTypeSpec) -> Decimal:
    return reference_price_per_unit_hour(_specs()[str(spec.accelerator_slug)]) * spec.accelerator_count


def cheapest_capable_type(min_memory_gb: int, min_tflops: int) -> catalog.InstanceTypeSpec:
    """The type meeting a capability request with the lowest reference price per hour."""
    return min(capable_types(min_memory_gb, min_tflops), key=lambda spec: (type_reference_price(spec), spec.name))


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
                disk_gb=spec.disk_gb_per_unit * units * DISK_HEADROOM,
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
    for i in range(max(1, round(len(fleet) / HOSTS_PER_RESERVED_BUYER))):
        spec = specs[str(_pick(rng, [(slug, w) for slug, w in fleet_models if specs[slug].kind != catalog.CPU]))]
        demand.append(
            Demand(
                minute=rng.randrange(0, 6 * 60),
                buyer=f"reserved-{i + 1}",
                pricing="reserved",
                instance_type=f"{spec.slug}.8x",
                min_memory_gb=0,
                min_tflops=0,
                count=rng.randint(*RESERVED_SERVERS),
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
            # A budget: up to CAPABILITY_CEILING times what the cheapest type that serves it lists at.
            reference = type_reference_price(cheapest_capable_type(memory, tflops))
            ceiling = (reference * Decimal(str(round(rng.uniform(*CAPABILITY_CEILING), 2)))).quantize(Decimal("0.01"))
            demand.append(Demand(int(minute), buyer, "on_demand", "", memory, tflops, 1, duration, ceiling))
            continue
        instance_type, size = _typed_demand(rng, fleet_models)
        pricing, bid = "on_demand", None
        if rng.random() < SPOT_SHARE and instance_type.accelerator_slug:
            reference = reference_price_per_unit_hour(specs[instance_type.accelerator_slug]) * size
            pricing, bid = "spot", (reference * Decimal(str(round(rng.uniform(0.3, 0.9), 2)))).quantize(Decimal("0.01"))
        demand.append(Demand(int(minute), buyer, pricing, instance_type.name, 0, 0, 1, duration, bid))
    demand.extend(_batch_spot(rng, fleet_models, days=days, rate=BATCH_SPOT_LOAD * base_rate / load))
    demand.sort(key=lambda d: (d.minute, d.buyer, d.instance_type))
    return demand


def _batch_spot(rng: random.Random, fleet_models: list[tuple[object, int]], *, days: int, rate: float) -> list[Demand]:
    """Batch buyers' spot orders: the daily cycle inverted (most at night), `rate` a minute on average."""
    longest = days * MINUTES_PER_DAY
    orders = []
    minute = 0.0
    while True:
        minute += rng.expovariate(1.5 * rate)
        if minute >= longest:
            break
        if rng.random() > (2 - daily_cycle(int(minute))) / 1.5:
            continue
        instance_type, size = _typed_demand(rng, fleet_models)
        if not instance_type.accelerator_slug:
            continue
        reference = reference_price_per_unit_hour(_specs()[instance_type.accelerator_slug]) * size
        bid = (reference * Decimal(str(round(rng.uniform(0.3, 0.9), 2)))).quantize(Decimal("0.01"))
        buyer = f"batch-{rng.randrange(1, BATCH_BUYERS + 1)}"
        orders.append(Demand(int(minute), buyer, "spot", instance_type.name, 0, 0, 1, _duration(rng, longest), bid))
    return orders


def generate_reserved_idle(demand: list[Demand], *, days: int, seed: int) -> list[ReservedIdle]:
    """Each reserved buyer's idle windows over its term: sessions of work (4-16 h) and gaps (4-20 h)
    alternate from when the servers are taken, so the servers stand idle about half the time."""
    rng = random.Random(f"reserved:{seed}")
    longest = days * MINUTES_PER_DAY
    windows = []
    for order in (d for d in demand if d.pricing == "reserved"):
        end_of_term = min(longest, order.minute + order.minutes)
        minute = order.minute + int(rng.uniform(*RESERVED_RUN_HOURS) * 60)
        while minute < end_of_term:
            idle_until = min(end_of_term, minute + int(rng.uniform(*RESERVED_IDLE_HOURS) * 60))
            windows.append(ReservedIdle(order.buyer, minute, idle_until))
            minute = idle_until + int(rng.uniform(*RESERVED_RUN_HOURS) * 60)
    windows.sort(key=lambda w: (w.start, w.buyer))
    return windows


def generate_trace(*, hosts: int, days: int, seed: int, load: float = 0.8) -> Trace:
    fleet = generate_fleet(hosts, seed=seed)
    demand = generate_demand(fleet, days=days, seed=seed, load=load)
    return Trace(fleet=fleet, demand=demand, reserved_idle=generate_reserved_idle(demand, days=days, seed=seed))


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
    """Write `fleet.csv`, `demand.csv` and `reserved_idle.csv` into `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    _write(directory / "fleet.csv", trace.fleet, FleetHost)
    _write(directory / "demand.csv", trace.demand, Demand)
    _write(directory / "reserved_idle.csv", trace.reserved_idle, ReservedIdle)


def load_trace(directory: Path) -> Trace:
    """A trace saved by `save_trace`, exactly as it was generated."""
    return Trace(
        fleet=_read(directory / "fleet.csv", FleetHost),
        demand=_read(directory / "demand.csv", Demand),
        reserved_idle=_read(directory / "reserved_idle.csv", ReservedIdle),
    )
