"""Ranking and placement maths (pure)."""

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.broker import (
    PACKING_PRICE_BAND,
    Candidate,
    Location,
    Packing,
    Requirements,
    distance_km,
    place,
    rank_capable,
    rank_offers,
)

FRANKFURT = Location(50.11, 8.68)
TOKYO = Location(35.68, 139.65)


def candidate(
    offer_id,
    *,
    host=None,
    kind="gpu",
    memory=80,
    tflops="989",
    price="2.50",
    energy="0.875",
    available=4,
    location=FRANKFURT,
    reliability=None,
):
    return Candidate(
        offer_id=offer_id,
        host_id=host or offer_id,
        instance_type=f"t{offer_id}",
        accelerator_kind=kind,
        memory_gb=memory,
        tflops=Decimal(tflops),
        price_per_hour=Decimal(price),
        energy_kwh_per_hour=Decimal(energy),
        available=available,
        location=location,
        region="r",
        reliability=Decimal(reliability) if reliability else None,
    )


def test_distance_is_great_circle():
    assert distance_km(FRANKFURT, FRANKFURT) == 0
    assert 9_000 < distance_km(FRANKFURT, TOKYO) < 9_500


def test_capability_order_picks_the_dsa_when_it_is_cheapest_per_tflop():
    gpu = candidate(1, kind="gpu", tflops="989", price="2.50")  # 0.00253 $/TFLOP-h
    dsa = candidate(2, kind="dsa", memory=96, tflops="432", price="0.95")  # 0.00220 $/TFLOP-h
    cpu = candidate(3, kind="cpu", memory=768, tflops="14.7", price="3.84")
    ranked = rank_capable([gpu, cpu, dsa], Requirements(min_memory_gb=64))
    assert [c.offer_id for c in ranked] == [2, 1, 3]


def test_capability_filters_incapable_offers():
    small = candidate(1, memory=24, tflops="121", price="0.1")
    ranked = rank_capable([small, candidate(2)], Requirements(min_memory_gb=40, min_tflops=Decimal(200)))
    assert [c.offer_id for c in ranked] == [2]
    only_dsa = rank_capable(
        [candidate(1), candidate(2, kind="dsa")], Requirements(accelerator_kinds=frozenset({"dsa"}))
    )
    assert [c.offer_id for c in only_dsa] == [2]


def test_energy_then_nearest_region_break_ties():
    far = candidate(1, location=TOKYO)
    near = candidate(2, location=FRANKFURT)
    assert [c.offer_id for c in rank_offers([far, near], near=Location(48.85, 2.35))] == [2, 1]
    thrifty = candidate(3, location=TOKYO, energy="0.500")
    assert rank_offers([near, thrifty], near=FRANKFURT)[0].offer_id == 3
    cheaper = candidate(4, location=TOKYO, price="2.40")
    assert rank_offers([near, cheaper], near=FRANKFURT)[0].offer_id == 4


def test_capability_ties_go_to_the_nearest():
    tokyo = candidate(1, location=TOKYO)
    frankfurt = candidate(2, location=FRANKFURT)
    assert rank_capable([tokyo, frankfurt], Requirements(), near=TOKYO)[0].offer_id == 1
    assert rank_capable([tokyo, frankfurt], Requirements(), near=FRANKFURT)[0].offer_id == 2


def test_place_spans_hosts_unless_same_host():
    ranked = [candidate(1, available=2), candidate(2, available=3), candidate(3, available=5)]
    assert [(s.candidate.offer_id, s.count) for s in place(ranked, 4)] == [(1, 2), (2, 2)]
    assert [(s.candidate.offer_id, s.count) for s in place(ranked, 4, same_host=True)] == [(3, 4)]
    assert place(ranked, 11) == []
    assert place(ranked, 6, same_host=True) == []
    with pytest.raises(ValueError):
        place(ranked, 0)


@given(st.lists(st.integers(0, 8), min_size=1, max_size=12), st.integers(1, 40), st.booleans())
def test_place_never_exceeds_availability_and_fills_exactly(availabilities, count, same_host):
    ranked = [candidate(i + 1, available=a) for i, a in enumerate(availabilities)]
    shares = place(ranked, count, same_host=same_host)
    if shares:
        assert sum(s.count for s in shares) == count
        assert all(0 < s.count <= s.candidate.available for s in shares)
        assert len({s.candidate.host_id for s in shares}) == len(shares)
        if same_host:
            assert len(shares) == 1
    else:
        possible = max(availabilities) if same_host else sum(availabilities)
        assert possible < count


def test_packing_policies_order_hosts_of_about_one_price():
    empty = replace(candidate(1, price="2.00"), free_units=8)  # cheapest, an empty 8-way server
    partly = replace(candidate(2, price="2.10"), free_units=3)  # 5% dearer, partly used
    full_ish = replace(candidate(3, price="3.00"), free_units=1)  # 50% dearer, almost full
    offers = [full_ish, partly, empty]
    assert [c.offer_id for c in rank_offers(offers)] == [1, 2, 3]  # the default: strictly by price
    assert [c.offer_id for c in rank_offers(offers, packing=Packing.CHEAPEST)] == [1, 2, 3]
    assert [c.offer_id for c in rank_offers(offers, packing=Packing.BEST_FIT)] == [3, 2, 1]
    # Keep large shapes placeable: the partly used host within the band first, the empty server
    # kept for a large order; a host beyond the band never jumps ahead of a cheaper one.
    assert Decimal("2.10") <= Decimal("2.00") * (1 + PACKING_PRICE_BAND) < Decimal("3.00")
    assert [c.offer_id for c in rank_offers(offers, packing=Packing.KEEP_LARGE)] == [2, 1, 3]
    unknown = replace(candidate(4, price="2.05"), free_units=None)  # no figure: treated as empty
    assert [c.offer_id for c in rank_offers([unknown, partly], packing=Packing.KEEP_LARGE)] == [2, 4]
