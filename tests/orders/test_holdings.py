"""Placement with holdings: spot preemption, reserved idle capacity (pure maths)."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.capacity import (
    Holding,
    HoldingKind,
    HostSpec,
    Resources,
    Shape,
    SlicingPolicy,
    committed_footprint,
    effective_capacity,
    physical_footprint,
    plan_placement,
    total,
)

HOST = HostSpec(
    capacity=Resources.of(accelerators=8, vcpus=64, ram_gb=512, disk_gb=800),
    policy=SlicingPolicy.FINE,
    primary="accelerators",
)
GPU2 = Shape("g2", Resources.of(accelerators=2, vcpus=16, ram_gb=128, disk_gb=100))


def held(key, kind=HoldingKind.RUNNING, bid=None):
    return Holding(key=key, claim=GPU2.resources, kind=kind, spot_bid=Decimal(bid) if bid else None)


def test_on_demand_preempts_the_lowest_spot_bid_only_as_needed():
    holdings = [held(1), held(2), held(3, bid="1.00"), held(4, bid="0.50")]
    plan = plan_placement(HOST, holdings, [GPU2])
    assert [v.key for v in plan.preempt] == [4]


def test_spot_preempts_only_lower_bids():
    holdings = [held(1), held(2), held(3, bid="1.00"), held(4, bid="2.00")]
    assert plan_placement(HOST, holdings, [GPU2], spot_bid=Decimal("0.90")) is None
    plan = plan_placement(HOST, holdings, [GPU2], spot_bid=Decimal("1.50"))
    assert [v.key for v in plan.preempt] == [3]


def test_on_demand_cannot_take_committed_capacity():
    holdings = [held(i) for i in range(1, 5)]
    assert plan_placement(HOST, holdings, [GPU2]) is None


def test_idle_reserved_capacity_takes_spot_backfill_but_not_on_demand():
    holdings = [held(1), held(2), held(3), held(4, kind=HoldingKind.RESERVED_IDLE)]
    assert plan_placement(HOST, holdings, [GPU2]) is None  # committed to the reserving buyer
    plan = plan_placement(HOST, holdings, [GPU2], spot_bid=Decimal("0.40"))
    assert plan is not None and plan.preempt == []


def test_reserved_restart_reclaims_from_spot_backfill():
    holdings = [held(1), held(2), held(3), held(4, kind=HoldingKind.RESERVED_IDLE), held(5, bid="0.40")]
    plan = plan_placement(HOST, holdings, [GPU2], replacing=4)
    assert [v.key for v in plan.preempt] == [5]


def test_disk_of_stopped_instances_is_kept():
    tight = HostSpec(
        capacity=Resources.of(accelerators=8, vcpus=64, ram_gb=512, disk_gb=400),
        policy=SlicingPolicy.FINE,
        primary="accelerators",
    )
    holdings = [held(k, kind=HoldingKind.DISK_ONLY) for k in (1, 2, 3, 4)]
    assert plan_placement(tight, holdings, [GPU2]) is None  # all 400 GB of disk is kept


@st.composite
def host_state(draw):
    holdings = []
    for key in range(1, draw(st.integers(0, 8)) + 1):
        kind = draw(st.sampled_from(list(HoldingKind)))
        bid = draw(st.one_of(st.none(), st.decimals(min_value="0.1", max_value="5", places=2)))
        holdings.append(Holding(key=key, claim=GPU2.resources, kind=kind, spot_bid=bid))
    return holdings


def _invariants_hold(holdings):
    limit = effective_capacity(HOST)
    return total(physical_footprint(h) for h in holdings).fits_in(limit) and total(
        committed_footprint(h) for h in holdings
    ).fits_in(limit)


@given(host_state(), st.integers(1, 4), st.one_of(st.none(), st.decimals(min_value="0.1", max_value="5", places=2)))
@settings(max_examples=300, deadline=None)
def test_a_placement_keeps_both_invariants(holdings, n, bid):
    if not _invariants_hold(holdings):
        return  # only valid starting states
    plan = plan_placement(HOST, holdings, [GPU2] * n, spot_bid=bid)
    if plan is None:
        return
    victims = {v.key for v in plan.preempt}
    after = [Holding(h.key, h.claim, HoldingKind.DISK_ONLY, h.spot_bid) if h.key in victims else h for h in holdings]
    after += [Holding(100 + i, c, HoldingKind.RUNNING, bid) for i, c in enumerate(plan.claims)]
    assert _invariants_hold(after)
    assert all(v.is_preemptible for v in plan.preempt)
    if bid is not None:
        assert all(v.spot_bid < bid for v in plan.preempt)
