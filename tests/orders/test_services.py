"""Ordering through the services: placement, spot, reserved, guards and the state machine."""

from decimal import Decimal

import pytest
from django.utils import timezone
from freezegun import freeze_time

from accounts.services import buyer_set_spend_limit
from marketplace.errors import Conflict, InvalidInput
from marketplace.models import AcceleratorModel, Offer, Region
from orders.agent import instance_agent_report
from orders.errors import InsufficientCapacity, InvalidTransition
from orders.lifecycle import instance_start, instance_stop, instance_terminate, instances_expire
from orders.models import Allocation, HostCommand, Instance, InstanceEvent, InstanceStatus, Order
from orders.state import TRANSITIONS, instance_transition
from orders.supply import host_update
from suppliers.models import Host
from tests.factories import HostFactory, l4_host_data

from .conftest import order

pytestmark = pytest.mark.django_db
S = InstanceStatus


def offer_count(host, type_name="l4-24g.1x") -> int:
    offer = Offer.objects.filter(host=host, instance_type__name=type_name).first()
    return offer.available_count if offer else 0


def test_order_places_instances_and_queues_commands(buyer, l4_host):
    placed = order(buyer, count=3)

    instances = list(placed.instances.order_by("pk"))
    assert len(instances) == 3
    assert {i.status for i in instances} == {S.PROVISIONING}
    assert {i.host_id for i in instances} == {l4_host.pk}
    assert all(i.price_per_hour == Decimal("0.400000") for i in instances)
    assert placed.total_price_per_hour == Decimal("1.200000")
    assert Allocation.objects.active().filter(host=l4_host).count() == 3
    assert HostCommand.objects.filter(kind="start", instance__in=instances).count() == 3
    events = list(InstanceEvent.objects.filter(instance=instances[0]).values_list("from_status", "to_status"))
    assert events == [("", S.REQUESTED), (S.REQUESTED, S.PROVISIONING)]
    assert offer_count(l4_host) == 1  # offers were recomputed in the same transaction


def test_insufficient_capacity_writes_nothing(buyer, l4_host):
    with pytest.raises(InsufficientCapacity) as error:
        order(buyer, count=5)
    assert error.value.extra["available"] == 4
    assert not Order.objects.exists() and not Instance.objects.exists() and not Allocation.objects.exists()
    assert offer_count(l4_host) == 4


def test_order_spans_hosts_unless_same_host(buyer, supplier_org, l4_host):
    HostFactory(organization=supplier_org, name="l4-b", **l4_host_data(price_per_unit_hour=Decimal("0.45")))
    spanning = order(buyer, count=6)
    assert sorted(spanning.instances.values_list("host__name", flat=True)) == ["l4-a"] * 4 + ["l4-b"] * 2
    with pytest.raises(InsufficientCapacity):
        order(buyer, count=3, same_host=True)  # 0 left on l4-a, 2 on l4-b


def test_cheapest_host_first_and_pinned_offer(buyer, supplier_org, l4_host):
    cheap = HostFactory(organization=supplier_org, name="cheap", **l4_host_data(price_per_unit_hour=Decimal("0.30")))
    assert order(buyer).instances.get().host == cheap
    pinned = Offer.objects.get(host=l4_host, instance_type__name="l4-24g.1x")
    assert order(buyer, instance_type=None, offer=pinned.pk).instances.get().host == l4_host


def test_capability_order_picks_the_dsa_when_cheapest_capable(buyer, supplier_org, l4_host):
    HostFactory(organization=supplier_org, name="h100")  # $2.50 for 989 TFLOPS
    gaudi = HostFactory(
        organization=supplier_org,
        name="gaudi",
        accelerator_model=AcceleratorModel.objects.get(slug="gaudi2-96g"),
        price_per_unit_hour=Decimal("0.95"),
    )
    placed = order(buyer, instance_type=None, requirements={"min_memory_gb": 64, "min_tflops": 300})
    instance = placed.instances.get()
    assert instance.host == gaudi and instance.instance_type.name.startswith("gaudi2-96g.1x")
    gpu_only = order(
        buyer, instance_type=None, requirements={"min_memory_gb": 64, "min_tflops": 300, "accelerator_kinds": ["gpu"]}
    )
    assert gpu_only.instances.get().host.name == "h100"


def test_nearest_region_wins_a_tie(buyer, supplier_org):
    east = HostFactory(organization=supplier_org, name="east", **l4_host_data())
    tokyo = HostFactory(
        organization=supplier_org,
        name="tokyo",
        region=Region.objects.get(code="ap-northeast"),
        zone=None,
        **l4_host_data(),
    )
    assert order(buyer, near=(Decimal("35.0"), Decimal("139.0"))).instances.get().host == tokyo
    assert order(buyer, near=(Decimal("40.7"), Decimal("-74.0"))).instances.get().host == east
    assert order(buyer, region="ap-northeast").instances.get().host == tokyo


def test_ceiling_excludes_dearer_offers(buyer, l4_host):
    with pytest.raises(InsufficientCapacity):
        order(buyer, max_price_per_hour=Decimal("0.39"))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"instance_type": None}, "instance_type"),
        ({"offer": 1}, "instance_type"),  # two targets
        ({"instance_type": "l4-24g.99x"}, "instance_type"),
        ({"pricing": "spot"}, "max_price_per_hour"),
        ({"pricing": "reserved"}, "term_hours"),
        ({"pricing": "reserved", "term_hours": 100}, "term_hours"),
        ({"term_hours": 720}, "term_hours"),
        ({"count": 0}, "count"),
        ({"image": "has space"}, "image"),
        ({"image": ""}, "image"),
        ({"region": "moon-1"}, "region"),
        ({"near": (Decimal(95), Decimal(0))}, "near"),
        ({"instance_type": None, "requirements": {"min_memory_gb": -1}}, "requirements"),
        ({"instance_type": None, "requirements": {"accelerator_kinds": ["tpu"]}}, "requirements"),
        ({"instance_type": None, "requirements": {"gpus": 8}}, "requirements"),
        ({"terminate_after_hours": 0}, "terminate_after_hours"),
    ],
)
def test_invalid_orders_name_the_field(buyer, l4_host, fields, field):
    with pytest.raises(InvalidInput) as error:
        order(buyer, **fields)
    assert field in error.value.fields
    assert not Order.objects.exists()


def test_spend_ceiling_is_enforced_inside_the_order(buyer, l4_host):
    buyer_set_spend_limit(buyer=buyer, limit_per_hour=Decimal("1.00"))
    order(buyer, count=2)  # $0.80/h
    with pytest.raises(Conflict) as error:
        order(buyer, count=1)  # would be $1.20/h
    assert error.value.code == "spend_limit_exceeded"
    assert error.value.extra["current_per_hour"] == "0.800000"
    assert Instance.objects.count() == 2
    with pytest.raises(InvalidInput):
        buyer_set_spend_limit(buyer=buyer, limit_per_hour=Decimal("-1"))


# --- Spot --------------------------------------------------------------------------------------


def test_spot_bid_must_meet_the_hosts_floor(buyer, l4_host):
    with pytest.raises(InsufficientCapacity) as error:
        order(buyer, pricing="spot", max_price_per_hour=Decimal("0.19"))  # floor is half of $0.40
    assert error.value.code == "bid_too_low"
    assert error.value.extra["lowest_accepted_bid_per_hour"] == "0.200000"
    spot = order(buyer, pricing="spot", max_price_per_hour=Decimal("0.25")).instances.get()
    assert spot.price_per_hour == Decimal("0.250000")  # spot pays its bid


def test_on_demand_preempts_spot_which_resumes_when_capacity_frees(buyer, l4_host, other_supplier):
    spot_buyer = other_supplier
    spots = list(order(spot_buyer, count=4, pricing="spot", max_price_per_hour=Decimal("0.20")).instances.all())
    assert offer_count(l4_host) == 4  # spot capacity stays on offer for on-demand buyers

    on_demand = order(buyer).instances.get()

    preempted = Instance.objects.filter(pk__in=[s.pk for s in spots], status=S.PREEMPTED)
    assert preempted.count() == 1
    victim = preempted.get()
    assert victim.preemption_deadline is not None
    assert HostCommand.objects.filter(instance=victim, kind="stop", payload__grace_seconds=30).exists()
    assert Allocation.objects.active().get(instance=victim).kind == "disk_only"  # disk kept

    instance_terminate(instance=on_demand, actor_user=buyer)

    victim.refresh_from_db()
    assert victim.status == S.PROVISIONING  # resumed: its bid still stands
    assert victim.events.last().reason.startswith("Capacity freed")
    assert Allocation.objects.active().get(instance=victim).kind == "running"


def test_higher_spot_bid_preempts_lower(buyer, l4_host, other_supplier):
    order(other_supplier, count=4, pricing="spot", max_price_per_hour=Decimal("0.21"))
    with pytest.raises(InsufficientCapacity):
        order(buyer, pricing="spot", max_price_per_hour=Decimal("0.21"))  # equal bid does not preempt
    order(buyer, pricing="spot", max_price_per_hour=Decimal("0.30"))
    assert Instance.objects.filter(buyer=other_supplier, status=S.PREEMPTED).count() == 1


def test_spot_resume_waits_while_the_floor_is_above_the_bid(buyer, l4_host, other_supplier):
    spot = order(other_supplier, count=4, pricing="spot", max_price_per_hour=Decimal("0.20")).instances.first()
    on_demand = order(buyer).instances.get()
    victim = Instance.objects.get(buyer=other_supplier, status=S.PREEMPTED)
    host_update(host=l4_host, spot_min_price_per_unit_hour=Decimal("0.30"))
    instance_terminate(instance=on_demand, actor_user=buyer)
    victim.refresh_from_db()
    assert victim.status == S.PREEMPTED
    assert spot is not None


# --- Reserved ----------------------------------------------------------------------------------


def test_reserved_gets_the_term_discount_and_keeps_capacity_when_stopped(buyer, l4_host, other_supplier):
    reserved = order(buyer, count=4, pricing="reserved", term_hours=720).instances.first()
    assert reserved.price_per_hour == Decimal("0.320000")  # 20% off for a month
    assert reserved.reserved_until is not None

    instance_stop(instance=reserved, actor_user=buyer)
    assert Allocation.objects.active().get(instance=reserved).kind == "reserved_idle"
    with pytest.raises(InsufficientCapacity):
        order(other_supplier)  # idle reserved capacity is not for on-demand

    backfill = order(other_supplier, pricing="spot", max_price_per_hour=Decimal("0.20")).instances.get()
    assert backfill.status == S.PROVISIONING

    instance_agent_report(instance=reserved, status=S.STOPPED)
    instance_start(instance=reserved, actor_user=buyer)

    backfill.refresh_from_db()
    reserved.refresh_from_db()
    assert reserved.status == S.STARTING
    assert backfill.status == S.PREEMPTED
    assert "reserving buyer" in backfill.events.last().reason


def test_terminate_after_hours_and_reserved_term_end(buyer, l4_host):
    short = order(buyer, terminate_after_hours=2).instances.get()
    reserved = order(buyer, pricing="reserved", term_hours=168).instances.get()
    with freeze_time(timezone.now() + timezone.timedelta(hours=3)):
        assert instances_expire().done == 1
    short.refresh_from_db()
    assert short.status == S.TERMINATING
    with freeze_time(timezone.now() + timezone.timedelta(hours=169)):
        assert instances_expire().done == 1
    reserved.refresh_from_db()
    assert reserved.status == S.TERMINATING
    assert "reserved term ended" in reserved.events.last().reason


# --- Lifecycle ----------------------------------------------------------------------------------


def test_stop_releases_compute_keeps_disk_and_start_can_find_it_taken(buyer, l4_host, supplier_org, other_supplier):
    HostFactory(organization=supplier_org, name="elsewhere", **l4_host_data(price_per_unit_hour=Decimal("0.50")))
    mine = order(buyer, count=4).instances.order_by("pk")
    first = mine[0]
    instance_stop(instance=first, actor_user=buyer)
    allocation = Allocation.objects.active().get(instance=first)
    assert (allocation.kind, allocation.accelerators, allocation.disk_gb) == ("disk_only", 1, 500)
    assert offer_count(l4_host) == 1

    instance_agent_report(instance=first, status=S.STOPPED)
    order(
        other_supplier, offer=Offer.objects.get(host=l4_host, instance_type__name="l4-24g.1x").pk, instance_type=None
    )  # someone takes the freed GPU

    with pytest.raises(Conflict) as error:
        instance_start(instance=first, actor_user=buyer)
    assert error.value.code == "capacity_taken"
    assert error.value.extra["offers_elsewhere"] == 1
    assert error.value.extra["cheapest_price_per_hour"] == "0.500000"
    first.refresh_from_db()
    assert first.status == S.STOPPED


def test_agent_reports_drive_the_lifecycle(buyer, l4_host):
    instance = order(buyer).instances.get()
    instance_agent_report(instance=instance, status=S.RUNNING)
    instance_agent_report(instance=instance, status=S.RUNNING)  # repeated: harmless
    instance_stop(instance=instance, actor_user=buyer)
    instance_agent_report(instance=instance, status=S.STOPPED)
    instance_start(instance=instance, actor_user=buyer)
    instance_agent_report(instance=instance, status=S.RUNNING)
    instance_terminate(instance=instance, actor_user=buyer)
    instance_agent_report(instance=instance, status=S.TERMINATED)
    instance.refresh_from_db()
    path = list(instance.events.values_list("to_status", flat=True))
    assert path == [
        S.REQUESTED,
        S.PROVISIONING,
        S.RUNNING,
        S.STOPPING,
        S.STOPPED,
        S.STARTING,
        S.RUNNING,
        S.TERMINATING,
        S.TERMINATED,
    ]
    assert not Allocation.objects.active().filter(instance=instance).exists()
    with pytest.raises(InvalidTransition):
        instance_agent_report(instance=instance, status=S.RUNNING)


@pytest.mark.parametrize("source", list(S.values))
def test_every_illegal_transition_is_rejected(buyer, l4_host, source):
    instance = order(buyer).instances.get()
    for target in S.values:
        if target in TRANSITIONS[source]:
            continue
        Instance.objects.filter(pk=instance.pk).update(status=source)
        instance.refresh_from_db()
        events_before = instance.events.count()
        with pytest.raises(InvalidTransition) as error:
            instance_transition(instance=instance, to=target, reason="test", actor="buyer")
        assert error.value.code == "invalid_transition"
        instance.refresh_from_db()
        assert instance.status == source and instance.events.count() == events_before


def test_offline_or_mismatched_hosts_take_no_orders(buyer, l4_host):

    Host.objects.filter(pk=l4_host.pk).update(agent_status="offline")
    with pytest.raises(InsufficientCapacity):
        order(buyer)
    Host.objects.filter(pk=l4_host.pk).update(agent_status="online", inventory_mismatch=[{"field": "vcpus"}])
    with pytest.raises(InsufficientCapacity):
        order(buyer)
    Host.objects.filter(pk=l4_host.pk).update(inventory_mismatch=None)
    assert order(buyer).instances.get().host == l4_host
