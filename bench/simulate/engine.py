"""The market over simulated minutes, on the product's own maths: a trace's orders are ranked by
the broker (`marketplace.broker`), fitted and preempted by the capacity maths
(`marketplace.capacity.plan_placement`), priced as offers are (`marketplace.pricing`) and charged
as usage is (`billing.rating`). The adapters here only turn trace rows into the inputs those
functions take, as `suppliers.offers` does for host rows.

No database: one run is a pure function of (trace, scenario), so scenarios compare exactly.

Reserved buyers stop their servers in the trace's idle windows and start them again after. With
resale, a stopped reserved instance's compute goes back to the market as the product does it
(`orders.lifecycle.instance_stop`: an idle reserved holding, backfilled by spot and reclaimed by
preempting it, the spot revenue credited to the reserving buyer, `billing.settlement.earner_owner`);
without resale it stays held, idle.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import cast

from billing import rating
from marketplace import broker, capacity, catalog
from marketplace.pricing import HostEconomics, OfferFigures, offer_figures

from .adapters import _capable_types, _economics, host_spec, single_model_type, type_shape
from .report import Report
from .trace import Demand, FleetHost, Trace, _specs, _types

TAKE_RATE = Decimal("0.15")  # the platform's default take (settings.PLATFORM_TAKE_RATE)
SPOT_FLOOR_SHARE = Decimal("0.35")  # hosts' lowest spot bid, as a share of their on-demand price
RESERVED_DISCOUNT = Decimal("0.20")  # a week's term
EIGHT = 8  # fragmentation: free accelerators that no 8x order can use


@dataclass(frozen=True)
class Scenario:
    name: str
    slicing: str = "fine"  # accelerator hosts' policy: whole, equal (2-accelerator slices) or fine
    spot: bool = True  # spot orders are served (else turned away)
    capability: bool = True  # capability requests served as such (else as the cheapest single model)
    packing: str = broker.Packing.CHEAPEST  # how the broker spreads orders over hosts of about one price
    resale: bool = True  # idle reserved capacity is resold to spot (else it stays held, idle)


@dataclass
class _Host:
    row: FleetHost
    spec: capacity.HostSpec
    economics: HostEconomics
    holdings: dict[int, capacity.Holding] = field(default_factory=dict)
    # Primary units held, kept beside the holdings only to skip hosts that are plainly full
    # before asking the capacity maths (which decides).
    committed: int = 0  # by non-spot instances, idle reserved ones included
    idle: int = 0  # by idle reserved instances (committed, physically free)
    spot: int = 0  # by running spot instances
    lowest_bid: Decimal | None = None
    version: int = 0  # changes with the holdings: the capacity maths' answers are cached per version

    def hold(self, key: int, holding: capacity.Holding) -> None:
        self.holdings[key] = holding
        self._count(holding, 1)

    def release(self, key: int) -> None:
        self._count(self.holdings.pop(key), -1)

    def _count(self, holding: capacity.Holding, sign: int) -> None:
        self.version += 1
        units = holding.claim[self.spec.primary] * sign
        if holding.spot_bid is None:
            self.committed += units
            if holding.kind == capacity.HoldingKind.RESERVED_IDLE:
                self.idle += units
        else:
            self.spot += units
            bids = [h.spot_bid for h in self.holdings.values() if h.spot_bid is not None]
            self.lowest_bid = min(bids) if bids else None

    def plainly_full(self, units: int, spot_bid: Decimal | None) -> bool:
        size = self.spec.capacity[self.spec.primary]
        if spot_bid is None:  # may preempt any spot
            return self.committed + units > size
        if self.committed - self.idle + self.spot + units <= size:
            return False
        return self.lowest_bid is None or self.lowest_bid >= spot_bid

    def free_units(self, spot: bool) -> int:
        """The primary units an order could have without preempting anyone: for spot, those not
        running (idle reserved ones included); for others, those not committed (spot gives way)."""
        size = self.spec.capacity[self.spec.primary]
        if spot:
            return size - self.committed + self.idle - self.spot
        return size - self.committed


@dataclass
class _Instance:
    id: int
    host: _Host
    demand: Demand
    shape: capacity.Shape
    accelerators: int
    tflops: Decimal
    price_per_hour: Decimal
    start: int
    end: int  # when it is due to leave
    ended: bool = False
    stopped_at: int | None = None  # when it left (its end, a preemption or the end of the run)
    running_since: int | None = None  # None while a reserved instance stands idle
    used_minutes: int = 0  # minutes it ran (a reserved instance's idle windows excluded)
    backfills: _Instance | None = None  # spot on idle reserved capacity: the reserved instance credited


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
        # Reserved buyers stopping (0) and starting (1) their servers: (minute, 0 or 1, buyer).
        self.reserved_events: list[tuple[int, int, str]] = []
        for window in trace.reserved_idle:
            heapq.heappush(self.reserved_events, (window.start, 0, window.buyer))
            heapq.heappush(self.reserved_events, (window.end, 1, window.buyer))
        self.reserved: dict[str, list[_Instance]] = defaultdict(list)
        self.next_id = 1
        self._offers: dict[tuple[int, str], tuple[int, OfferFigures] | None] = {}
        self._placeable: dict[tuple[int, str, Decimal | None, int], tuple[int, int]] = {}

    # --- candidates, as `orders.candidates` builds them for the broker -------------------------

    def _candidates(self, demand: Demand, types: list[catalog.InstanceTypeSpec], spot_bid: Decimal | None):
        """The broker's candidates with room for the order, where each is, and whether any host sells
        the shape at all under its slicing policy."""
        self.eligible_any = False
        self.priced_out = False  # a host had room, but only above the buyer's price ceiling
        ceiling = demand.bid_per_hour if demand.pricing != "spot" else None
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
                available = self._placeable_count(host, type_spec.name, shape, spot_bid, demand.count)
                if available <= 0:
                    continue
                if ceiling is not None and price > ceiling:
                    self.priced_out = True
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
                        free_units=host.free_units(spot_bid is not None),
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

    def _placeable_count(
        self, host: _Host, type_name: str, shape: capacity.Shape, spot_bid: Decimal | None, limit: int
    ) -> int:
        """`capacity.placeable_count` on the host's holdings, remembered until they change."""
        key = (host.row.host, type_name, spot_bid, limit)
        known = self._placeable.get(key)
        if known is not None and known[0] == host.version:
            return known[1]
        count = capacity.placeable_count(host.spec, list(host.holdings.values()), shape, spot_bid=spot_bid, limit=limit)
        self._placeable[key] = (host.version, count)
        return count

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
            elif self.priced_out:
                reason = "over the price ceiling"
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
                    shape=shape,
                    accelerators=type_spec.accelerator_count,
                    tflops=share.candidate.tflops,
                    price_per_hour=price,
                    start=now,
                    end=min(self.minutes, now + demand.minutes),
                    running_since=now,
                )
                if spot_bid is not None:
                    reserved = capacity.backfilled_holding(host.spec, list(host.holdings.values()), claim)
                    instance.backfills = None if reserved is None else self.instances[cast(int, reserved.key)]
                if demand.pricing == "reserved":
                    self.reserved[demand.buyer].append(instance)
                self.next_id += 1
                self.instances[instance.id] = instance
                self.placed.append(instance)
                host.hold(instance.id, capacity.Holding(key=instance.id, claim=claim, spot_bid=spot_bid))
                heapq.heappush(self.departures, (instance.end, instance.id))
                report.placed += 1

    def reserved_stop(self, buyer: str, now: int) -> None:
        """A reserved buyer stops its servers: with resale their compute goes back to the market
        (an idle reserved holding, as `orders.lifecycle.instance_stop` leaves it)."""
        for instance in self.reserved[buyer]:
            if instance.ended or instance.running_since is None:
                continue
            instance.used_minutes += now - instance.running_since
            instance.running_since = None
            if self.scenario.resale:
                holding = instance.host.holdings[instance.id]
                instance.host.release(instance.id)
                instance.host.hold(instance.id, dataclasses.replace(holding, kind=capacity.HoldingKind.RESERVED_IDLE))

    def reserved_start(self, buyer: str, now: int) -> None:
        """A reserved buyer starts its servers again, reclaiming them from spot backfill at once
        (`orders.lifecycle.instance_start`)."""
        for instance in self.reserved[buyer]:
            if instance.ended or instance.running_since is not None:
                continue
            instance.running_since = now
            if not self.scenario.resale:
                continue
            host = instance.host
            plan = capacity.plan_placement(
                host.spec, list(host.holdings.values()), [instance.shape], replacing=instance.id
            )
            if plan is None:  # cannot happen: the committed room was kept for it
                raise AssertionError("a reserved instance could not reclaim its capacity")
            for victim in plan.preempt:
                self._end(self.instances[cast(int, victim.key)], now, preempted=True)
            host.release(instance.id)
            host.hold(instance.id, capacity.Holding(key=instance.id, claim=plan.claims[0]))

    def _end(self, instance: _Instance, now: int, *, preempted: bool = False) -> None:
        if instance.ended:
            return
        instance.ended = True
        instance.stopped_at = now
        instance.host.release(instance.id)
        if instance.running_since is not None:
            instance.used_minutes += now - instance.running_since
            instance.running_since = None
        minutes = max(0, now - instance.start)
        report = self.report
        charge = rating.charge_for(minutes * 60, instance.price_per_hour)
        split = rating.split(charge, TAKE_RATE)
        report.charged += charge
        report.platform_take += split.fee
        if instance.backfills is not None:
            report.resale_credit += split.supplier_share
        if instance.demand.pricing == "reserved":
            report.reserved_charged += charge
        report.tflop_minutes += instance.tflops * minutes
        if not instance.demand.instance_type or instance.demand.min_memory_gb:
            report.capability_charged += charge
            report.capability_tflop_minutes += instance.tflops * minutes
        report.sold_accelerator_minutes += minutes * instance.accelerators
        used = instance.used_minutes * instance.accelerators
        report.used_accelerator_minutes += used
        report.used_by_model[instance.host.row.accelerator] += used
        report.used_by_region[instance.host.row.region] += used
        if preempted:
            report.preemptions += 1
            report.preempted_minutes_lost += instance.end - now

    def depart_until(self, now: int) -> None:
        """Everything due by `now`, in time order: departures, and reserved buyers stopping and
        starting their servers (departures first within a minute)."""
        while True:
            departure = self.departures[0][0] if self.departures else None
            toggle = self.reserved_events[0][0] if self.reserved_events else None
            if departure is not None and departure <= now and (toggle is None or departure <= toggle):
                _, instance_id = heapq.heappop(self.departures)
                instance = self.instances.pop(instance_id, None)
                if instance is not None:
                    self._end(instance, instance.end)
            elif toggle is not None and toggle <= now:
                minute, starting, buyer = heapq.heappop(self.reserved_events)
                (self.reserved_start if starting else self.reserved_stop)(buyer, minute)
            else:
                return

    def sample_fragmentation(self) -> None:
        """The share of free accelerators that no 8x order can use (on hosts with fewer than 8 free),
        and the share of the fleet's accelerators running."""
        free_total = stranded = running = 0
        for host in self.hosts:
            if host.row.kind == catalog.CPU:
                continue
            used = capacity.total(capacity.physical_footprint(h) for h in host.holdings.values())["accelerators"]
            free = host.row.units - used
            running += used
            free_total += free
            stranded += free % EIGHT if host.row.units >= EIGHT else free
        if free_total:
            self.report.fragmentation_samples.append(stranded / free_total)
        self.report.utilization_samples.append(running / self.report.fleet_accelerators)


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
    while next_sample < minutes:
        market.sample_fragmentation()
        next_sample += 60
    for instance in list(market.instances.values()):
        market._end(instance, minutes)
    return market
