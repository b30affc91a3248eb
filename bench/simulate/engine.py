"""The market over simulated minutes, on the product's own maths: a trace's orders are ranked by
the broker (`marketplace.broker`), fitted and preempted by the capacity maths
(`marketplace.capacity.plan_placement`), priced as offers are (`marketplace.pricing`) and charged
as usage is (`billing.rating`). The adapters here only turn trace rows into the inputs those
functions take, as `suppliers.offers` does for host rows.

No database: one run is a pure function of (trace, scenario), so scenarios compare exactly.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import cast

from billing import rating
from marketplace import broker, capacity, catalog
from marketplace.pricing import HostEconomics, OfferFigures, offer_figures

from .trace import Demand, FleetHost, Trace, _specs, _types, reference_price_per_unit_hour

TAKE_RATE = Decimal("0.15")  # the platform's default take (settings.PLATFORM_TAKE_RATE)
SPOT_FLOOR_SHARE = Decimal("0.35")  # hosts' lowest spot bid, as a share of their on-demand price
RESERVED_DISCOUNT = Decimal("0.20")  # a week's term
PUE = Decimal("1.2")
EIGHT = 8  # fragmentation: free accelerators that no 8x order can use


@dataclass(frozen=True)
class Scenario:
    name: str
    slicing: str = "fine"  # accelerator hosts' policy: whole, equal (2-accelerator slices) or fine
    spot: bool = True  # spot orders are served (else turned away)
    capability: bool = True  # capability requests served as such (else as the cheapest single model)
    packing: str = broker.Packing.CHEAPEST  # how the broker spreads orders over hosts of about one price


@dataclass
class _Host:
    row: FleetHost
    spec: capacity.HostSpec
    economics: HostEconomics
    holdings: dict[int, capacity.Holding] = field(default_factory=dict)
    # Primary units held, kept beside the holdings only to skip hosts that are plainly full
    # before asking the capacity maths (which decides).
    committed: int = 0  # by non-spot instances
    spot: int = 0  # by running spot instances
    lowest_bid: Decimal | None = None

    def hold(self, key: int, holding: capacity.Holding, delta: int) -> None:
        self.holdings[key] = holding
        self._count(holding, delta)

    def release(self, key: int) -> None:
        holding = self.holdings.pop(key)
        self._count(holding, -1)

    def _count(self, holding: capacity.Holding, sign: int) -> None:
        units = holding.claim[self.spec.primary] * (1 if sign > 0 else -1)
        if holding.spot_bid is None:
            self.committed += units
        else:
            self.spot += units
            bids = [h.spot_bid for h in self.holdings.values() if h.spot_bid is not None]
            self.lowest_bid = min(bids) if bids else None

    def plainly_full(self, units: int, spot_bid: Decimal | None) -> bool:
        size = self.spec.capacity[self.spec.primary]
        if spot_bid is None:  # may preempt any spot
            return self.committed + units > size
        if self.committed + self.spot + units <= size:
            return False
        return self.lowest_bid is None or self.lowest_bid >= spot_bid


@dataclass
class _Instance:
    id: int
    host: _Host
    demand: Demand
    accelerators: int
    tflops: Decimal
    price_per_hour: Decimal
    start: int
    end: int  # when it is due to leave
    ended: bool = False
    stopped_at: int | None = None  # when it left (its end, a preemption or the end of the run)


@dataclass
class Report:
    scenario: str
    minutes: int
    fleet_accelerators: int
    # Exact sums in minutes (accelerator-minutes, TFLOP-minutes); hours are derived for reports.
    sold_accelerator_minutes: int = 0
    sold_by_model: Counter = field(default_factory=Counter)  # accelerator-minutes
    sold_by_region: Counter = field(default_factory=Counter)
    accelerators_by_model: Counter = field(default_factory=Counter)
    accelerators_by_region: Counter = field(default_factory=Counter)
    placed: int = 0  # instances
    orders_served: int = 0
    turned_away: Counter = field(default_factory=Counter)
    eight_x_turned_away: int = 0
    charged: Decimal = Decimal(0)
    platform_take: Decimal = Decimal(0)
    tflop_minutes: Decimal = Decimal(0)
    capability_charged: Decimal = Decimal(0)
    capability_tflop_minutes: Decimal = Decimal(0)
    preemptions: int = 0
    preempted_minutes_lost: int = 0
    fragmentation_samples: list[float] = field(default_factory=list)

    @property
    def sold_accelerator_hours(self) -> Decimal:
        return Decimal(self.sold_accelerator_minutes) / 60

    @property
    def preempted_instance_hours_lost(self) -> Decimal:
        return Decimal(self.preempted_minutes_lost) / 60

    @property
    def utilization(self) -> float:
        capacity_minutes = self.fleet_accelerators * self.minutes
        return self.sold_accelerator_minutes / capacity_minutes if capacity_minutes else 0.0

    @property
    def idle_rate(self) -> float:
        return 1 - self.utilization

    @property
    def supplier_revenue(self) -> Decimal:
        return self.charged - self.platform_take

    @property
    def price_per_tflop_hour(self) -> Decimal | None:
        if not self.tflop_minutes:
            return None
        return (self.charged * 60 / self.tflop_minutes).quantize(Decimal("0.0001"))

    @property
    def capability_price_per_tflop_hour(self) -> Decimal | None:
        if not self.capability_tflop_minutes:
            return None
        return (self.capability_charged * 60 / self.capability_tflop_minutes).quantize(Decimal("0.0001"))

    @property
    def fragmentation(self) -> float:
        samples = self.fragmentation_samples
        return sum(samples) / len(samples) if samples else 0.0


def host_spec(row: FleetHost, slicing: str) -> capacity.HostSpec:
    """The capacity maths' view of a fleet row (`suppliers.offers.host_capacity_spec` for a trace)."""
    cpu = row.kind == catalog.CPU
    amounts = {"vcpus": row.vcpus, "ram_gb": row.ram_gb, "disk_gb": row.disk_gb}
    if not cpu:
        amounts["accelerators"] = row.units
    policy = capacity.SlicingPolicy.FINE if cpu else capacity.SlicingPolicy(slicing)
    slices = max(1, row.units // 2) if policy == capacity.SlicingPolicy.EQUAL else 1
    return capacity.HostSpec(
        capacity=capacity.Resources(amounts), policy=policy, primary="vcpus" if cpu else "accelerators", slices=slices
    )


def type_shape(spec: catalog.InstanceTypeSpec) -> capacity.Shape:
    """`suppliers.offers.instance_type_shape` for a catalog type."""
    amounts = {"vcpus": spec.vcpus, "ram_gb": spec.ram_gb, "disk_gb": spec.disk_gb}
    if spec.accelerator_count:
        amounts["accelerators"] = spec.accelerator_count
    return capacity.Shape(name=spec.name, resources=capacity.Resources(amounts))


def _economics(row: FleetHost, spec: capacity.HostSpec) -> HostEconomics:
    model = _specs()[row.accelerator]
    units = capacity.effective_capacity(spec)[spec.primary]
    price = row.price_per_unit_hour
    if row.kind == catalog.CPU:  # CPU hosts are priced per vCPU-hour
        price = (row.price_per_unit_hour * row.units / row.vcpus).quantize(Decimal("0.0001"))
    return HostEconomics(
        units=units,
        price_per_unit_hour=price,
        host_power_watts=Decimal(model.tdp_watts * row.units),
        host_tflops=model.bf16_tflops * row.units,
        pue=PUE,
    )


def _capable_types(demand: Demand) -> list[catalog.InstanceTypeSpec]:
    requirements = broker.Requirements(min_memory_gb=demand.min_memory_gb, min_tflops=Decimal(demand.min_tflops))
    types = []
    for spec in _types().values():
        if spec.family != "standard" or not spec.accelerator_slug:
            continue
        model = _specs()[spec.accelerator_slug]
        memory = model.memory_gb * spec.accelerator_count
        tflops = model.bf16_tflops * spec.accelerator_count
        if memory >= requirements.min_memory_gb and tflops >= requirements.min_tflops:
            types.append(spec)
    return types


def single_model_type(demand: Demand) -> str:
    """What a buyer who must name one model orders for a capability request: the type meeting it
    with the lowest reference price per hour."""

    def reference(spec: catalog.InstanceTypeSpec) -> Decimal:
        return reference_price_per_unit_hour(_specs()[cast(str, spec.accelerator_slug)]) * spec.accelerator_count

    return min(_capable_types(demand), key=lambda spec: (reference(spec), spec.name)).name


class Market:
    def __init__(self, trace: Trace, scenario: Scenario, *, minutes: int) -> None:
        self.scenario = scenario
        self.minutes = minutes
        self.hosts: list[_Host] = []
        self.by_model: dict[str, list[_Host]] = defaultdict(list)
        for row in trace.fleet:
            spec = host_spec(row, scenario.slicing)
            host = _Host(row, spec, _economics(row, spec))
            self.hosts.append(host)
            self.by_model[row.accelerator].append(host)
        accelerator_hosts = [h for h in self.hosts if h.row.kind != catalog.CPU]
        self.report = Report(
            scenario=scenario.name, minutes=minutes, fleet_accelerators=sum(h.row.units for h in accelerator_hosts)
        )
        for host in accelerator_hosts:
            self.report.accelerators_by_model[host.row.accelerator] += host.row.units
            self.report.accelerators_by_region[host.row.region] += host.row.units
        self.instances: dict[int, _Instance] = {}  # until they leave
        self.placed: list[_Instance] = []  # every instance placed, for reconciliation
        self.departures: list[tuple[int, int]] = []
        self.next_id = 1
        self._offers: dict[tuple[int, str], tuple[int, OfferFigures] | None] = {}

    # --- candidates, as `orders.candidates` builds them for the broker -------------------------

    def _candidates(self, demand: Demand, types: list[catalog.InstanceTypeSpec], spot_bid: Decimal | None):
        """The broker's candidates with room for the order, where each is, and whether any host sells
        the shape at all under its slicing policy."""
        self.eligible_any = False
        candidates = []
        where: dict[int, tuple[_Host, catalog.InstanceTypeSpec, capacity.Shape]] = {}
        for type_spec in types:
            shape = type_shape(type_spec)
            hosts = self.by_model[type_spec.accelerator_slug] if type_spec.accelerator_slug else self._cpu_hosts()
            for host in hosts:
                sold = self._sold(host, type_spec.name, shape)
                if sold is None:
                    continue
                self.eligible_any = True
                claimed, figures = sold
                if host.plainly_full(claimed, spot_bid):
                    continue
                price = figures.price_per_hour
                if demand.pricing == "spot":
                    floor = (price * SPOT_FLOOR_SHARE).quantize(Decimal("0.000001"))
                    if spot_bid is None or spot_bid < floor:
                        continue
                    price = floor
                elif demand.pricing == "reserved":
                    price = (price * (1 - RESERVED_DISCOUNT)).quantize(Decimal("0.000001"))
                available = capacity.placeable_count(
                    host.spec, list(host.holdings.values()), shape, spot_bid=spot_bid, limit=demand.count
                )
                if available <= 0:
                    continue
                offer_id = host.row.host * 100000 + len(where)
                where[offer_id] = (host, type_spec, shape)
                model = _specs()[host.row.accelerator]
                candidates.append(
                    broker.Candidate(
                        offer_id=offer_id,
                        host_id=host.row.host,
                        instance_type=type_spec.name,
                        accelerator_kind=host.row.kind,
                        memory_gb=model.memory_gb * type_spec.accelerator_count or type_spec.ram_gb,
                        tflops=figures.tflops,
                        price_per_hour=price,
                        energy_kwh_per_hour=figures.energy_kwh_per_hour,
                        available=available,
                        location=broker.Location(0.0, 0.0),
                        region=host.row.region,
                        free_units=host.spec.capacity[host.spec.primary] - host.committed - host.spot,
                    )
                )
        return candidates, where

    def _sold(self, host: _Host, type_name: str, shape: capacity.Shape) -> tuple[int, OfferFigures] | None:
        """Whether the host sells the shape under its policy: the units it claims and the offer's
        figures (cached: both depend on the host and the type only)."""
        key = (host.row.host, type_name)
        if key not in self._offers:
            if capacity.is_eligible(host.spec, shape):
                claimed = capacity.claim_for(host.spec, shape)[host.spec.primary]
                self._offers[key] = (claimed, offer_figures(host.economics, claimed))
            else:
                self._offers[key] = None
        return self._offers[key]

    def _cpu_hosts(self) -> list[_Host]:
        return [h for h in self.hosts if h.row.kind == catalog.CPU]

    # --- events ---------------------------------------------------------------------------------

    def arrive(self, demand: Demand, now: int) -> None:
        report = self.report
        if demand.pricing == "spot" and not self.scenario.spot:
            report.turned_away["spot not offered"] += 1
            return
        capability = not demand.instance_type
        if capability and not self.scenario.capability:
            demand = dataclasses.replace(demand, instance_type=single_model_type(demand))
            capability = False
        if capability:
            types = _capable_types(demand)
            requirements = broker.Requirements(
                min_memory_gb=demand.min_memory_gb, min_tflops=Decimal(demand.min_tflops)
            )
        else:
            types = [_types()[demand.instance_type]]
        spot_bid = demand.bid_per_hour if demand.pricing == "spot" else None
        candidates, where = self._candidates(demand, types, spot_bid)
        if capability:
            ranked = broker.rank_capable(candidates, requirements)
        else:
            ranked = broker.rank_offers(candidates, packing=broker.Packing(self.scenario.packing))
        shares = broker.place(ranked, demand.count)
        if not shares:
            if not self.eligible_any:
                reason = "size not sold (slicing)"
            else:
                reason = "no capacity at the bid" if spot_bid is not None else "no capacity"
            report.turned_away[reason] += 1
            if not capability and _types()[demand.instance_type].accelerator_count == EIGHT:
                report.eight_x_turned_away += 1
            return
        report.orders_served += 1
        for share in shares:
            host, type_spec, shape = where[share.candidate.offer_id]
            plan = capacity.plan_placement(
                host.spec, list(host.holdings.values()), [shape] * share.count, spot_bid=spot_bid
            )
            if plan is None:  # cannot happen: `available` came from the same holdings
                raise AssertionError("placement disagrees with its own estimate")
            for victim in plan.preempt:
                self._end(self.instances[cast(int, victim.key)], now, preempted=True)
            price = spot_bid if spot_bid is not None else share.candidate.price_per_hour
            for claim in plan.claims:
                instance = _Instance(
                    id=self.next_id,
                    host=host,
                    demand=demand,
                    accelerators=type_spec.accelerator_count,
                    tflops=share.candidate.tflops,
                    price_per_hour=price,
                    start=now,
                    end=min(self.minutes, now + demand.minutes),
                )
                self.next_id += 1
                self.instances[instance.id] = instance
                self.placed.append(instance)
                host.hold(instance.id, capacity.Holding(key=instance.id, claim=claim, spot_bid=spot_bid), 1)
                heapq.heappush(self.departures, (instance.end, instance.id))
                report.placed += 1

    def _end(self, instance: _Instance, now: int, *, preempted: bool = False) -> None:
        if instance.ended:
            return
        instance.ended = True
        instance.stopped_at = now
        instance.host.release(instance.id)
        minutes = max(0, now - instance.start)
        report = self.report
        charge = rating.charge_for(minutes * 60, instance.price_per_hour)
        split = rating.split(charge, TAKE_RATE)
        report.charged += charge
        report.platform_take += split.fee
        report.tflop_minutes += instance.tflops * minutes
        if not instance.demand.instance_type or instance.demand.min_memory_gb:
            report.capability_charged += charge
            report.capability_tflop_minutes += instance.tflops * minutes
        sold = minutes * instance.accelerators
        report.sold_accelerator_minutes += sold
        report.sold_by_model[instance.host.row.accelerator] += sold
        report.sold_by_region[instance.host.row.region] += sold
        if preempted:
            report.preemptions += 1
            report.preempted_minutes_lost += instance.end - now

    def depart_until(self, now: int) -> None:
        while self.departures and self.departures[0][0] <= now:
            _, instance_id = heapq.heappop(self.departures)
            instance = self.instances.pop(instance_id, None)
            if instance is not None:
                self._end(instance, instance.end)

    def sample_fragmentation(self) -> None:
        """The share of free accelerators that no 8x order can use (on hosts with fewer than 8 free)."""
        free_total = stranded = 0
        for host in self.hosts:
            if host.row.kind == catalog.CPU:
                continue
            used = capacity.total(capacity.physical_footprint(h) for h in host.holdings.values())["accelerators"]
            free = host.row.units - used
            free_total += free
            stranded += free % EIGHT if host.row.units >= EIGHT else free
        if free_total:
            self.report.fragmentation_samples.append(stranded / free_total)


def simulate(trace: Trace, scenario: Scenario, *, days: int) -> Report:
    """Run the trace's demand through the market under `scenario`; returns its report."""
    return run_market(trace, scenario, days=days).report


def run_market(trace: Trace, scenario: Scenario, *, days: int) -> Market:
    """`simulate`, returning the market at the end (its instances, hosts and report)."""
    minutes = days * 24 * 60
    market = Market(trace, scenario, minutes=minutes)
    next_sample = 0
    for demand in trace.demand:
        if demand.minute >= minutes:
            break
        market.depart_until(demand.minute)
        while next_sample <= demand.minute:
            market.sample_fragmentation()
            next_sample += 60
        market.arrive(demand, demand.minute)
    market.depart_until(minutes)
    for instance in list(market.instances.values()):
        market._end(instance, minutes)
    return market
