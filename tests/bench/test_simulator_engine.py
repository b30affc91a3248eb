"""The simulator runs the product's maths: the seed's example, totals that reconcile with what it
placed, nothing oversold, the same report for the same trace, and scenarios that differ as they
should."""

import csv
import sys
from decimal import Decimal

import pytest

from bench.simulate import __main__ as simulate_command
from bench.simulate.engine import (
    EIGHT,
    Market,
    Scenario,
    host_spec,
    run_market,
    simulate,
    single_model_type,
    type_shape,
)
from bench.simulate.trace import Demand, FleetHost, generate_trace, load_trace
from billing import rating
from marketplace import capacity, catalog

TYPES = {t.name: t for t in catalog.instance_type_specs()}


def twelve_unit_server(slicing: str) -> capacity.HostSpec:
    row = FleetHost(1, "us-east", "ascend910b-64g", "dsa", 12, 12 * 16, 12 * 128, 12 * 1000, Decimal("0.8"))
    spec = host_spec(row, slicing)
    return capacity.HostSpec(spec.capacity, spec.policy, spec.primary, slices=4 if slicing == "equal" else 1)


def shape_of(accelerators: int) -> capacity.Shape:
    return capacity.Shape(
        f"{accelerators}x",
        capacity.Resources.of(
            accelerators=accelerators, vcpus=16 * accelerators, ram_gb=128 * accelerators, disk_gb=1000 * accelerators
        ),
    )


def test_the_seeds_example_one_whole_four_basic_or_six_fine_instances():
    assert capacity.max_instances(twelve_unit_server("whole"), [shape_of(12)]) == 1
    assert capacity.max_instances(twelve_unit_server("equal"), [shape_of(3)]) == 4
    assert capacity.max_instances(twelve_unit_server("fine"), [shape_of(2)]) == 6


@pytest.fixture(scope="module")
def trace():
    return generate_trace(hosts=40, days=1, seed=5)


def test_nothing_is_oversold_at_any_arrival(trace):
    market = Market(trace, Scenario("fine"), minutes=24 * 60)
    for demand in trace.demand:
        market.depart_until(demand.minute)
        market.arrive(demand, demand.minute)
        for host in market.hosts:
            held = capacity.total(capacity.physical_footprint(h) for h in host.holdings.values())
            assert held.fits_in(capacity.effective_capacity(host.spec)), f"host {host.row.host} oversold"
            committed = capacity.total(capacity.committed_footprint(h) for h in host.holdings.values())
            assert committed.fits_in(capacity.effective_capacity(host.spec))


@pytest.mark.parametrize("scenario", [Scenario("fine"), Scenario("whole", slicing="whole")])
def test_the_reports_totals_reconcile_with_every_instance_placed(trace, scenario):
    market = run_market(trace, scenario, days=1)
    report, placed = market.report, market.placed
    assert report.placed == len(placed) and report.orders_served + sum(report.turned_away.values()) == len(trace.demand)
    assert all(i.ended and i.stopped_at is not None and i.start <= i.stopped_at <= i.end for i in placed)
    charges = [rating.charge_for((i.stopped_at - i.start) * 60, i.price_per_hour) for i in placed]
    assert report.charged == sum(charges) > 0
    assert report.platform_take == sum(rating.split(c, Decimal("0.15")).fee for c in charges)
    resold = [
        rating.split(c, Decimal("0.15")).supplier_share for c, i in zip(charges, placed, strict=True) if i.backfills
    ]
    assert report.resale_credit == sum(resold)
    assert report.supplier_revenue + report.platform_take + report.resale_credit == report.charged
    reserved = [c for c, i in zip(charges, placed, strict=True) if i.demand.pricing == "reserved"]
    assert report.reserved_charged == sum(reserved) and report.reserved_net_cost == sum(reserved) - sum(resold)
    minutes = sum((i.stopped_at - i.start) * i.accelerators for i in placed)
    assert report.sold_accelerator_minutes == minutes
    used = sum(i.used_minutes * i.accelerators for i in placed)
    assert report.used_accelerator_minutes == used == sum(report.used_by_model.values()) <= minutes
    assert 0 < report.utilization <= 1 and abs(report.utilization + report.idle_rate - 1) < 1e-9
    assert not any(host.holdings for host in market.hosts)  # everything left by the end of the run


def test_a_run_is_a_pure_function_of_trace_and_scenario(trace):
    first, again = (simulate(trace, Scenario("fine"), days=1) for _ in range(2))
    assert first == again


def test_scenarios_differ_as_they_should(trace):
    fine, equal, whole, no_spot, single = (
        simulate(trace, s, days=1)
        for s in (
            Scenario("fine"),
            Scenario("equal", slicing="equal"),
            Scenario("whole", slicing="whole"),
            Scenario("no spot", spot=False),
            Scenario("single", capability=False),
        )
    )
    assert fine.sold_accelerator_hours >= equal.sold_accelerator_hours
    assert equal.turned_away["size not sold (slicing)"] > 0 and whole.turned_away["size not sold (slicing)"] > 0
    assert no_spot.turned_away["spot not offered"] == sum(1 for d in trace.demand if d.pricing == "spot")
    assert no_spot.utilization < fine.utilization
    assert "size not sold (slicing)" not in fine.turned_away
    assert single.capability_price_per_tflop_hour is not None and fine.capability_price_per_tflop_hour is not None


def test_a_single_model_buyer_orders_the_cheapest_type_that_meets_the_request():
    demand = Demand(0, "b1", "on_demand", "", 80, 300, 1, 60, None)
    name = single_model_type(demand)
    spec = TYPES[name]
    model = {m.slug: m for m in catalog.ACCELERATORS}[spec.accelerator_slug]
    assert model.memory_gb * spec.accelerator_count >= 80 and model.bf16_tflops * spec.accelerator_count >= 300
    assert spec.family == "standard"


def test_type_shapes_are_the_catalogs():
    shape = type_shape(TYPES["h100-80g.2x"])
    assert shape.resources["accelerators"] == 2 and shape.resources["vcpus"] == TYPES["h100-80g.2x"].vcpus
    assert EIGHT == 8


def test_packing_keeps_eight_way_servers_placeable(trace):
    cheapest, best_fit = (simulate(trace, Scenario(p, packing=p), days=1) for p in ("cheapest", "best_fit"))
    assert best_fit.fragmentation < cheapest.fragmentation
    assert best_fit.eight_x_turned_away <= cheapest.eight_x_turned_away


def test_idle_reserved_capacity_is_resold_to_spot_and_reclaimed_from_it():
    """Resale on: spot runs on a stopped reserved server and earns its reserving buyer the supplier
    share; when the buyer starts again the spot is preempted at once. Resale off: the server stays
    held, idle, and no spot backfills it."""
    trace = generate_trace(hosts=200, days=2, seed=1)
    resale = run_market(trace, Scenario("fine"), days=2)
    held = run_market(trace, Scenario("no resale", resale=False), days=2)
    backfills = [i for i in resale.placed if i.backfills is not None]
    assert backfills and all(i.demand.pricing == "spot" for i in backfills)
    assert all(i.backfills.demand.pricing == "reserved" for i in backfills)
    assert resale.report.resale_credit > 0 and held.report.resale_credit == 0
    assert not any(i.backfills for i in held.placed)
    # Reclaimed: some backfilling spot instances were preempted the minute their reserved buyer started again.
    starts = {(w.buyer, w.end) for w in trace.reserved_idle}
    assert any((i.backfills.demand.buyer, i.stopped_at) in starts and i.stopped_at < i.end for i in backfills)
    # A reserved instance runs only outside its buyer's idle windows, whether resold or not.
    for market in (resale, held):
        reserved = [i for i in market.placed if i.demand.pricing == "reserved"]
        assert reserved and all(i.used_minutes < i.stopped_at - i.start for i in reserved)
    assert resale.report.idle_rate < held.report.idle_rate


def test_nothing_is_oversold_while_reserved_servers_stand_idle_and_start_again():
    trace = generate_trace(hosts=80, days=2, seed=2)
    market = Market(trace, Scenario("fine"), minutes=2 * 24 * 60)
    for demand in trace.demand:
        market.depart_until(demand.minute)
        market.arrive(demand, demand.minute)
        if demand.minute % 30:
            continue
        for host in market.hosts:
            held = capacity.total(capacity.physical_footprint(h) for h in host.holdings.values())
            committed = capacity.total(capacity.committed_footprint(h) for h in host.holdings.values())
            room = capacity.effective_capacity(host.spec)
            assert held.fits_in(room) and committed.fits_in(room), f"host {host.row.host} oversold"
    assert any(i.backfills for i in market.placed)


def test_the_command_saves_the_table_the_trace_and_charts(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        sys,
        "argv",
        ["simulate", "--hosts", "30", "--days", "1", "--seed", "3", "--workers", "2", "--out", str(tmp_path)],
    )
    simulate_command.main()
    printed = capsys.readouterr().out
    assert "fine slicing (the product)" in printed and "fine, no reserved resale" in printed
    with (tmp_path / "scenarios.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 1 + len(simulate_command.SCENARIOS) and rows[0][0] == "scenario"
    assert (tmp_path / "utilization.csv").stat().st_size > 0
    assert load_trace(tmp_path / "trace") == generate_trace(hosts=30, days=1, seed=3)
    for name in ("sold_and_idle", "turned_away", "utilization_over_time", "utilization_by_model_and_region"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
