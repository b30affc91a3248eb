"""The simulator's traces: deterministic for a seed, saved and replayed exactly, and shaped as
described (a daily cycle, heavy-tailed durations, sizes 1x-8x, spot bids, capability requests,
big reserved buyers who stand idle in windows, batch spot work at night, capability budgets)."""

import filecmp
import itertools
from collections import Counter

from bench.simulate.trace import (
    MINUTES_PER_DAY,
    Demand,
    cheapest_capable_type,
    daily_cycle,
    generate_trace,
    load_trace,
    reference_price_per_unit_hour,
    save_trace,
    type_reference_price,
)
from marketplace import catalog

SPECS = {spec.slug: spec for spec in catalog.ACCELERATORS}
TYPES = {t.name: t for t in catalog.instance_type_specs()}


def test_the_same_seed_gives_the_same_trace_byte_for_byte(tmp_path):
    first, again, other = (generate_trace(hosts=50, days=2, seed=s) for s in (1, 1, 2))
    save_trace(first, tmp_path / "a")
    save_trace(again, tmp_path / "b")
    save_trace(other, tmp_path / "c")
    for name in ("fleet.csv", "demand.csv", "reserved_idle.csv"):
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False)
    assert not filecmp.cmp(tmp_path / "a" / "demand.csv", tmp_path / "c" / "demand.csv", shallow=False)


def test_a_saved_trace_replays_exactly(tmp_path):
    trace = generate_trace(hosts=40, days=1, seed=3)
    save_trace(trace, tmp_path)
    assert trace.reserved_idle and load_trace(tmp_path) == trace


def test_the_fleet_is_varied_and_declared_as_the_catalog_shares_it():
    fleet = generate_trace(hosts=300, days=1, seed=1).fleet
    assert len(fleet) == 300 and len({h.region for h in fleet}) >= 5
    assert {h.kind for h in fleet} == {"gpu", "dsa", "cpu"}
    for host in fleet:
        spec = SPECS[host.accelerator]
        assert host.vcpus == spec.vcpus_per_unit * host.units and host.ram_gb == spec.ram_gb_per_unit * host.units
        reference = reference_price_per_unit_hour(spec)
        assert reference * 8 / 10 - 1 <= host.price_per_unit_hour <= reference * 13 / 10 + 1


def test_demand_has_the_described_shape():
    trace = generate_trace(hosts=200, days=7, seed=1)
    demand: list[Demand] = trace.demand
    assert [d.minute for d in demand] == sorted(d.minute for d in demand)
    assert all(0 <= d.minute < 7 * MINUTES_PER_DAY for d in demand)
    on_demand = [d for d in demand if d.pricing != "reserved" and not d.buyer.startswith("batch-")]
    # Daily cycle: the busiest hours (12-18 UTC) see well over the quietest (0-6 UTC).
    by_hour = Counter((d.minute % MINUTES_PER_DAY) // 60 for d in on_demand)
    assert sum(by_hour[h] for h in range(12, 18)) > 2 * sum(by_hour[h] for h in range(0, 6))
    assert daily_cycle(15 * 60) == 1.5 and abs(daily_cycle(3 * 60) - 0.5) < 1e-9
    # Heavy tail: most short, a few very long.
    minutes = sorted(d.minutes for d in on_demand)
    assert minutes[len(minutes) // 2] < 60 and minutes[-1] > 24 * 60
    sizes = Counter(TYPES[d.instance_type].accelerator_count for d in on_demand if d.instance_type)
    assert sizes[1] > sizes[2] > 0 and sizes[4] > 0 and sizes[8] > 0
    spot = [d for d in demand if d.pricing == "spot"]
    assert spot and all(d.bid_per_hour and d.bid_per_hour > 0 for d in spot)
    for d in spot:
        t = TYPES[d.instance_type]
        assert d.bid_per_hour <= reference_price_per_unit_hour(SPECS[t.accelerator_slug]) * t.accelerator_count
    capability = [d for d in demand if not d.instance_type]
    assert capability and all(d.min_memory_gb > 0 and d.min_tflops > 0 for d in capability)
    for d in capability:  # a budget of 1.5-3 times the cheapest type that serves the request
        reference = type_reference_price(cheapest_capable_type(d.min_memory_gb, d.min_tflops))
        assert reference * 3 / 2 - 1 <= d.bid_per_hour <= reference * 3 + 1
    # Batch spot work arrives mostly at night (the daily cycle inverted).
    batch = Counter((d.minute % MINUTES_PER_DAY) // 60 for d in demand if d.buyer.startswith("batch-"))
    assert all(d.pricing == "spot" for d in demand if d.buyer.startswith("batch-"))
    assert sum(batch[h] for h in range(0, 6)) > 2 * sum(batch[h] for h in range(12, 18))
    reserved = [d for d in demand if d.pricing == "reserved"]
    assert len({d.buyer for d in reserved}) == 5 and all(d.instance_type.endswith(".8x") for d in reserved)
    buyers = Counter(d.buyer for d in on_demand)
    assert buyers.most_common(1)[0][1] > 20 * (len(on_demand) / len(buyers))  # a long tail, a few heavy buyers


def test_reserved_buyers_stand_idle_in_windows_within_their_term_about_half_the_time():
    trace = generate_trace(hosts=200, days=7, seed=1)
    terms = {
        d.buyer: (d.minute, min(7 * MINUTES_PER_DAY, d.minute + d.minutes))
        for d in trace.demand
        if d.pricing == "reserved"
    }
    by_buyer: dict[str, list] = {}
    for window in trace.reserved_idle:
        by_buyer.setdefault(window.buyer, []).append(window)
    assert set(by_buyer) == set(terms)
    for buyer, windows in by_buyer.items():
        start, end = terms[buyer]
        assert all(start < w.start < w.end <= end for w in windows)
        assert all(a.end < b.start for a, b in itertools.pairwise(windows))  # disjoint, in order
        idle = sum(w.end - w.start for w in windows) / (end - start)
        assert 0.25 < idle < 0.75
