"""The simulator runs the product's maths: the seed's example, totals that reconcile with what it
placed, nothing oversold, the same report for the same trace, and scenarios that differ as they
should."""

from decimal import Decimal

import pytest

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
from bench.simulate.trace import Demand, FleetHost, generate_trace
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
    assert report.supplier_revenue + report.platform_take == report.charged
    minutes = sum((i.stopped_at - i.start) * i.accelerators for i in placed)
    assert report.sold_accelerator_minutes == minutes == sum(report.sold_by_model.values())
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
