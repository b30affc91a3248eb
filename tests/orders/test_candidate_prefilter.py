"""Orders and quotes of one instance type look at the cheapest listed offers only (the offers
table is the remaining capacity), not at every sellable host: the same answer as the full scan,
and a number of queries that does not grow with the market."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from marketplace.models import Region
from orders import candidates
from orders.candidates import order_candidates, prefiltered_host_ids
from orders.quotes import order_plan
from orders.requests import OrderRequest, order_target_resolve
from suppliers.hosts import host_update
from tests.factories import HostFactory, UserFactory, l4_host_data

from .conftest import order

PRICES = ["0.45", "0.30", "0.52", "0.30", "0.41", "0.60", "0.35", "0.38"]


@pytest.fixture
def market(supplier_org):
    hosts = []
    for i, price in enumerate(PRICES):
        extra = {"region": Region.objects.get(code="eu-north"), "zone": None} if i % 3 == 0 else {}
        hosts.append(
            HostFactory(
                organization=supplier_org,
                name=f"l4-{i}",
                verified=i != 1,  # one of the cheapest is unverified
                **l4_host_data(price_per_unit_hour=Decimal(price), min_rental_hours=24 if i == 3 else 0, **extra),
            )
        )
    return hosts


def plan_of(request: OrderRequest, *, full: bool):
    target = order_target_resolve(request, for_quote=True)
    host_ids = None if full else prefiltered_host_ids(target)
    _, plan = order_plan(target, order_candidates(target, host_ids=host_ids))
    return [(hc.host.pk, hc.instance_type.name, n) for hc, n in plan]


@pytest.mark.parametrize(
    "fields",
    [
        {"count": 1},
        {"count": 7},
        {"count": 3, "same_host": True},
        {"count": 2, "region": "eu-north"},
        {"count": 2, "allow_unverified": True},
        {"count": 2, "terminate_after_hours": 2},  # the host with a 24 h minimum is left out
        {"count": 2, "max_price_per_hour": "0.40"},
        {"instance_type": "l4-24g.2x", "count": 3},
        {"instance_type": None, "requirements": {"min_memory_gb": 24, "min_tflops": 100}, "count": 3},
        {"instance_type": None, "requirements": {"min_memory_gb": 40}, "count": 2},
        {"instance_type": None, "requirements": {"min_tflops": 1, "accelerator_kinds": ["gpu"]}, "count": 9},
    ],
)
def test_the_prefilter_plans_as_the_full_scan_does(market, fields):
    fields = {"instance_type": "l4-24g.1x", **fields}
    if fields["instance_type"] is None:
        del fields["instance_type"]
    if "max_price_per_hour" in fields:
        fields["max_price_per_hour"] = Decimal(fields["max_price_per_hour"])
    request = OrderRequest(**fields)
    assert plan_of(request, full=False) == plan_of(request, full=True)
    assert plan_of(request, full=False)  # and it places something


def test_prefilter_leaves_full_hosts_and_unplaceable_orders_to_exact_maths(market):
    filler = UserFactory(email="filler@example.com")
    order(filler, count=8)  # the two cheapest verified hosts are full
    target = order_target_resolve(OrderRequest(instance_type="l4-24g.1x", count=1), for_quote=True)
    ids = prefiltered_host_ids(target)
    full = {i.host_id for i in filler.instances.all()}
    assert not full & set(ids) and len(ids) == 5  # the five verified hosts with room (at most 1 + 5)
    for pricing in ({"pricing": "spot", "max_price_per_hour": Decimal("1")}, {"disk_gb": 900}, {"ports": [22]}):
        target = order_target_resolve(OrderRequest(instance_type="l4-24g.1x", **pricing), for_quote=True)
        assert prefiltered_host_ids(target) is None  # these look at every sellable host


def test_an_order_runs_the_same_queries_in_a_bigger_market(buyer, supplier_org, market):
    order(buyer)  # warm caches (catalog, content types)
    with CaptureQueriesContext(connection) as small:
        order(buyer)
    for i in range(12):
        HostFactory(organization=supplier_org, name=f"more-{i}", **l4_host_data(price_per_unit_hour=Decimal("0.90")))
    host_update(host=market[0], price_per_unit_hour=Decimal("0.45"))
    with CaptureQueriesContext(connection) as large:
        order(buyer)
    assert len(large.captured_queries) == len(small.captured_queries)


def test_an_order_runs_a_fixed_number_of_queries_whatever_its_count(buyer, market):
    order(buyer)  # warm caches (catalog, content types)
    counts = {}
    for count in (1, 6):  # six instances land on several hosts
        with CaptureQueriesContext(connection) as captured:
            placed = order(buyer, count=count)
        counts[count] = len(captured.captured_queries)
        assert placed.instances.count() == count
    assert len({i.host_id for i in placed.instances.all()}) > 1
    assert counts[1] == counts[6] <= 20, counts


def test_ports_and_events_of_a_bulk_order_are_each_instances_own(buyer, supplier_org):
    for i in range(2):
        HostFactory(
            organization=supplier_org,
            name=f"ports-{i}",
            public_address=f"203.0.113.{i + 1}",
            port_range_start=40000,
            port_range_end=40009,
            **l4_host_data(price_per_unit_hour=Decimal("0.2")),
        )
    placed = order(buyer, count=6, ports=[22, 8888])
    instances = list(placed.instances.order_by("pk"))
    assert len(instances) == 6 and len({i.host_id for i in instances}) == 2
    for instance in instances:
        ports = {p.container_port: p.host_port for p in instance.ports.all()}
        assert set(ports) == {22, 8888}
        command = instance.commands.get()
        assert command.payload["ports"] == {str(k): v for k, v in sorted(ports.items())}
        assert [(e.from_status, e.to_status) for e in instance.events.order_by("created_at", "pk")] == [
            ("", "requested"),
            ("requested", "provisioning"),
        ]
        assert instance.status == "provisioning"
    by_host = {}
    for instance in instances:
        for port in instance.ports.all():
            by_host.setdefault(instance.host_id, []).append(port.host_port)
    for host_ports in by_host.values():
        assert len(host_ports) == len(set(host_ports))  # no host port given twice


def test_the_prefilter_reads_further_when_the_best_rows_hold_too_few_hosts(market, monkeypatch):
    request = OrderRequest(requirements={"min_tflops": 1, "accelerator_kinds": ["gpu"]}, count=3)
    target = order_target_resolve(request, for_quote=True)
    wide = candidates.prefiltered_host_rooms(target)
    monkeypatch.setattr(candidates, "PREFILTER_ROWS_PER_HOST", 1)  # the first read: 8 rows, two L4 types a host
    narrow = candidates.prefiltered_host_rooms(target)
    assert narrow == wide and len(wide) == 7  # every verified host (fewer than 3 + the margin)
