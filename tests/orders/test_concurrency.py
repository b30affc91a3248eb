"""Real threads racing for the last slots (run on PostgreSQL in CI; SQLite serializes writers)."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connections
from rest_framework.test import APIClient

from marketplace.capacity import committed_footprint, effective_capacity, total
from marketplace.errors import ApplicationError
from marketplace.models import Region
from orders.models import Instance, Order
from orders.placement import order_place
from orders.requests import OrderRequest
from suppliers.models import Host
from suppliers.offers import host_capacity_spec, host_holdings
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data

THREADS = 8


def race(requests):
    """Run (buyer, OrderRequest) pairs at once; return (successes, failures by code)."""
    start = threading.Barrier(len(requests))

    def attempt(pair):
        buyer, request = pair
        try:
            start.wait()
            return ("ok", order_place(buyer=buyer, request=request).pk)
        except ApplicationError as error:
            return ("error", error.code)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(len(requests)) as pool:
        results = list(pool.map(attempt, requests))
    return [r for r in results if r[0] == "ok"], [r[1] for r in results if r[0] == "error"]


def assert_capacity_balances(host):
    """allocated + free = total on every dimension; nothing oversold."""
    host = Host.objects.select_related("accelerator_model").get(pk=host.pk)
    spec = host_capacity_spec(host)
    allocated = total(committed_footprint(h) for h in host_holdings(host))
    capacity = effective_capacity(spec)
    assert allocated.fits_in(capacity)
    free = capacity.minus(allocated)
    for dim in capacity.amounts:
        assert allocated[dim] + free[dim] == capacity[dim]
    return allocated


@pytest.mark.django_db(transaction=True)
def test_threads_ordering_the_last_slots_of_a_host(catalog):
    host = HostFactory(organization=OrganizationFactory(), name="l4", **l4_host_data())
    buyers = [UserFactory() for _ in range(THREADS)]
    requests = [(b, OrderRequest(instance_type="l4-24g.1x", image="img:1")) for b in buyers]

    successes, failures = race(requests)

    assert len(successes) == 4  # exactly the four slots
    assert failures == ["insufficient_capacity"] * (THREADS - 4)
    assert Instance.objects.filter(host=host).count() == 4
    assert assert_capacity_balances(host)["accelerators"] == 4


@pytest.mark.django_db(transaction=True)
def test_orders_spanning_two_hosts_in_opposite_rank_orders(catalog):
    organization = OrganizationFactory()
    east = HostFactory(organization=organization, name="east", **l4_host_data())
    tokyo = HostFactory(
        organization=organization,
        name="tokyo",
        region=Region.objects.get(code="ap-northeast"),
        zone=None,
        **l4_host_data(),
    )
    buyers = [UserFactory() for _ in range(THREADS)]
    near_east, near_tokyo = (Decimal("40.7"), Decimal("-74.0")), (Decimal("35.6"), Decimal("139.7"))
    # Each order needs both hosts (5 > 4 per host); half rank east first, half tokyo first.
    requests = [
        (b, OrderRequest(instance_type="l4-24g.1x", count=5, image="img:1", near=near_east if i % 2 else near_tokyo))
        for i, b in enumerate(buyers)
    ]

    successes, failures = race(requests)

    assert len(successes) == 1  # 8 slots in all: only one order of 5 fits
    assert set(failures) == {"insufficient_capacity"}  # never a deadlock or a 500
    assert assert_capacity_balances(east)["accelerators"] + assert_capacity_balances(tokyo)["accelerators"] == 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_idempotency_key_make_one_order(catalog):

    HostFactory(organization=OrganizationFactory(), name="l4", **l4_host_data())
    buyer = UserFactory()
    start = threading.Barrier(4)
    body = {"instance_type": "l4-24g.1x", "image": "img:1"}

    def post(_):
        try:
            client = APIClient()
            client.force_authenticate(buyer)
            start.wait()
            response = client.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="same-key")
            return response.status_code, response.json().get("id")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(post, range(4)))

    assert {status for status, _ in results} == {201}
    assert len({order_id for _, order_id in results}) == 1
    assert Order.objects.count() == 1 and Instance.objects.count() == 1
