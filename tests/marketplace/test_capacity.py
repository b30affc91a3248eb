"""The slicing maths: the field example from DESIGN.md, unit cases and properties."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.capacity import (
    HostSpec,
    Resources,
    Shape,
    SlicingPolicy,
    available_count,
    carriable,
    claim_for,
    effective_capacity,
    fits,
    max_instances,
    place_in_order,
    total,
)


def shape(name: str, cores: int, gbps: int) -> Shape:
    return Shape(name, Resources.of(cores=cores, gbps=gbps))


FIELD_HOST = Resources.of(cores=12, gbps=12)


class TestFieldExample:
    """A server with 12 CPU cores and a 12 Gbps NIC, sold three ways."""

    def test_whole_sells_one_instance_of_the_entire_server(self):
        host = HostSpec(capacity=FIELD_HOST, policy=SlicingPolicy.WHOLE, primary="cores")

        accepted = place_in_order(host, [shape("full", 12, 12), shape("full", 12, 12), shape("small", 4, 4)])

        assert [s.name for s in accepted] == ["full"]
        assert claim_for(host, accepted[0]) == FIELD_HOST

    def test_basic_sells_four_instances_keeping_the_1_to_1_ratio(self):
        host = HostSpec(capacity=FIELD_HOST, policy=SlicingPolicy.EQUAL, primary="cores", slices=4)
        quarter = shape("quarter", 3, 3)

        accepted = place_in_order(host, [quarter] * 6)

        assert len(accepted) == 4
        assert total(claim_for(host, s) for s in accepted) == FIELD_HOST
        # Another size is not sold under this policy; a smaller shape of the slice's size still
        # takes a whole slice, so the host never carries more than four.
        assert available_count(host, [], shape("half", 6, 6)) == 0
        assert claim_for(host, shape("lean", 3, 1)) == Resources.of(cores=3, gbps=3)
        assert available_count(host, [], shape("lean", 3, 1)) == 4

    def test_basic_mix_of_ratio_keeping_sizes_fills_the_server_with_four(self):
        # The DESIGN's basic example: (4,4) (4,4) (2,2) (2,2) -> 4 instances, the server exactly full.
        host = HostSpec(capacity=FIELD_HOST, policy=SlicingPolicy.FINE, primary="cores")
        mix = [shape("b4", 4, 4), shape("b4", 4, 4), shape("b2", 2, 2), shape("b2", 2, 2)]

        assert len(place_in_order(host, mix)) == 4
        assert total(s.resources for s in mix) == FIELD_HOST

    def test_fine_sells_six_leaning_shapes_with_every_dimension_exactly_full(self):
        host = HostSpec(capacity=FIELD_HOST, policy=SlicingPolicy.FINE, primary="cores")
        leaning = [
            shape("c4n1", 4, 1),
            shape("c1n4", 1, 4),
            shape("c3n1", 3, 1),
            shape("c1n3", 1, 3),
            shape("c2n1", 2, 1),
            shape("c1n2", 1, 2),
        ]

        accepted = place_in_order(host, leaning)

        assert len(accepted) == 6
        used = total(s.resources for s in accepted)
        assert used == FIELD_HOST  # 12 cores and 12 Gbps, nothing idle
        # Instance sizes 4-4-3-3-2-2 in their leading dimension, as in the field example.
        assert sorted(max(s.resources.amounts.values()) for s in accepted) == [2, 2, 3, 3, 4, 4]
        # Nothing more fits, not even the smallest shape.
        assert not fits(host, [s.resources for s in accepted], [shape("tiny", 1, 1)])

    def test_one_whole_four_basic_six_fine(self):
        whole = HostSpec(capacity=FIELD_HOST, policy=SlicingPolicy.WHOLE, primary="cores")
        basic = HostSpec(capacity=FIELD_HOST, policy=SlicingPolicy.EQUAL, primary="cores", slices=4)
        fine = HostSpec(capacity=FIELD_HOST, policy=SlicingPolicy.FINE, primary="cores")
        leaning = [shape(f"s{i}", c, n) for i, (c, n) in enumerate([(4, 1), (1, 4), (3, 1), (1, 3), (2, 1), (1, 2)])]

        assert len(place_in_order(whole, [shape("full", 12, 12)] * 3)) == 1
        assert len(place_in_order(basic, [shape("q", 3, 3)] * 8)) == 4
        assert len(place_in_order(fine, leaning)) == 6


class TestUnits:
    def test_oversubscription_applies_to_cpu_and_ram_only(self):
        host = HostSpec(
            capacity=Resources.of(accelerators=8, vcpus=100, ram_gb=1000, disk_gb=500),
            policy=SlicingPolicy.FINE,
            primary="accelerators",
            oversubscription=Decimal("1.5"),
        )
        assert effective_capacity(host) == Resources.of(accelerators=8, vcpus=150, ram_gb=1500, disk_gb=500)

    def test_whole_host_is_never_oversubscribed(self):
        host = HostSpec(
            capacity=Resources.of(accelerators=2, vcpus=10),
            policy=SlicingPolicy.WHOLE,
            primary="accelerators",
            oversubscription=Decimal("2.0"),
        )
        assert effective_capacity(host)["vcpus"] == 10

    def test_available_count_takes_the_tightest_dimension(self):
        host = HostSpec(
            capacity=Resources.of(accelerators=8, vcpus=64, ram_gb=512),
            policy=SlicingPolicy.FINE,
            primary="accelerators",
        )
        one_gpu = Shape("g1", Resources.of(accelerators=1, vcpus=16, ram_gb=64))
        assert available_count(host, [], one_gpu) == 4  # vCPUs run out before GPUs
        assert available_count(host, [Resources.of(accelerators=1, vcpus=16, ram_gb=64)], one_gpu) == 3

    def test_whole_host_with_anything_allocated_carries_nothing(self):
        host = HostSpec(
            capacity=Resources.of(accelerators=4, vcpus=32), policy=SlicingPolicy.WHOLE, primary="accelerators"
        )
        full = Shape("g4", Resources.of(accelerators=4, vcpus=32))
        assert available_count(host, [], full) == 1
        assert available_count(host, [effective_capacity(host)], full) == 0

    def test_shapes_without_the_primary_dimension_are_not_sold(self):
        host = HostSpec(
            capacity=Resources.of(accelerators=4, vcpus=32), policy=SlicingPolicy.FINE, primary="accelerators"
        )
        assert available_count(host, [], Shape("cpu", Resources.of(vcpus=4))) == 0

    def test_equal_slices_must_divide_the_primary_dimension(self):
        with pytest.raises(ValueError, match="do not divide"):
            HostSpec(
                capacity=Resources.of(accelerators=8), policy=SlicingPolicy.EQUAL, primary="accelerators", slices=3
            )

    def test_oversubscription_outside_range_is_refused(self):
        with pytest.raises(ValueError):
            HostSpec(
                capacity=Resources.of(vcpus=8),
                policy=SlicingPolicy.FINE,
                primary="vcpus",
                oversubscription=Decimal("2.5"),
            )

    def test_resources_refuse_floats_and_negatives(self):
        with pytest.raises(TypeError):
            Resources.of(vcpus=1.5)
        with pytest.raises(ValueError):
            Resources.of(vcpus=-1)


# --- Properties -----------------------------------------------------------------------------

DIMS = ("accelerators", "vcpus", "ram_gb", "disk_gb")


@st.composite
def linear_catalog_and_host(draw):
    """A catalog like the real one (linear families per accelerator count) and a host that fits it."""
    per_unit = {
        "vcpus": draw(st.integers(1, 32)),
        "ram_gb": draw(st.integers(1, 256)),
        "disk_gb": draw(st.integers(1, 2000)),
    }
    counts = sorted(draw(st.sets(st.sampled_from([1, 2, 3, 4, 6, 8, 16]), min_size=1, max_size=5)))
    families = {"standard": (1, 1), "highcpu": (3, 1), "highmem": (1, 3)}  # numerators over 2 for non-standard
    shapes = []
    for count in counts:
        for family, (cpu_num, ram_num) in families.items():
            div = 1 if family == "standard" else 2
            amounts = {
                "accelerators": count,
                "vcpus": max(1, per_unit["vcpus"] * count * cpu_num // div),
                "ram_gb": max(1, per_unit["ram_gb"] * count * ram_num // div),
                "disk_gb": per_unit["disk_gb"] * count,
            }
            shapes.append(Shape(f"{count}x.{family}", Resources(amounts)))
    accelerators = draw(st.sampled_from(counts))
    headroom = {d: draw(st.integers(0, 64)) for d in ("vcpus", "ram_gb", "disk_gb")}
    capacity = Resources(
        {
            "accelerators": accelerators,
            **{d: per_unit[d] * accelerators + headroom[d] for d in ("vcpus", "ram_gb", "disk_gb")},
        }
    )
    divisors = [s for s in range(1, accelerators + 1) if accelerators % s == 0 and accelerators // s in counts]
    slices = draw(st.sampled_from(divisors))
    oversubscription = draw(st.sampled_from([Decimal("1.0"), Decimal("1.25"), Decimal("1.5"), Decimal("2.0")]))
    return shapes, capacity, slices, oversubscription


@given(linear_catalog_and_host(), st.sampled_from(list(SlicingPolicy)), st.lists(st.integers(0, 100), max_size=40))
@settings(max_examples=300, deadline=None)
def test_no_dimension_is_ever_exceeded(setup, policy, picks):
    shapes, capacity, slices, oversubscription = setup
    host = HostSpec(
        capacity=capacity, policy=policy, primary="accelerators", slices=slices, oversubscription=oversubscription
    )
    requested = [shapes[i % len(shapes)] for i in picks]

    accepted = place_in_order(host, requested)
    claims = [claim_for(host, s) for s in accepted]

    used = total(claims)
    limit = effective_capacity(host)
    for dim in DIMS:
        assert used[dim] <= limit[dim]
    assert used["accelerators"] <= capacity["accelerators"]  # accelerators never oversubscribed
    # Every count reported as available can really be placed, all at once.
    for s in shapes:
        n = available_count(host, claims, s)
        assert fits(host, claims, [s] * n)
        assert not fits(host, claims, [s] * (n + 1))


@given(linear_catalog_and_host())
@settings(max_examples=300, deadline=None)
def test_fine_sells_at_least_as_many_as_equal_and_equal_as_whole(setup):
    shapes, capacity, slices, oversubscription = setup

    def most(policy):
        host = HostSpec(
            capacity=capacity, policy=policy, primary="accelerators", slices=slices, oversubscription=oversubscription
        )
        return max_instances(host, shapes)

    whole, equal, fine = most(SlicingPolicy.WHOLE), most(SlicingPolicy.EQUAL), most(SlicingPolicy.FINE)
    assert whole == 1
    assert fine >= equal >= whole


@given(linear_catalog_and_host(), st.sampled_from(list(SlicingPolicy)))
@settings(max_examples=200, deadline=None)
def test_carriable_is_consistent_with_available_count(setup, policy):
    shapes, capacity, slices, oversubscription = setup
    host = HostSpec(
        capacity=capacity, policy=policy, primary="accelerators", slices=slices, oversubscription=oversubscription
    )
    result = carriable(host, [], shapes)
    assert result == {s.name: available_count(host, [], s) for s in shapes}
    assert all(n >= 0 for n in result.values())
