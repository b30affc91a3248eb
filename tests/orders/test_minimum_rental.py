"""The host's minimum rental is enforced the same way in quote, order and billing.

On-demand and reserved: an order whose stated length (terminate_after_hours, or the reserved term)
is below the minimum skips the host (a pinned offer: 409 `rental_below_minimum`); the quote shows
the minimum charge; a buyer who terminates before the minimum is billed compute up to it. Spot is
preemptible, so no minimum applies to it.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time

from billing.errors import InsufficientFunds
from billing.models import LedgerTransaction, UsageRecord
from marketplace.models import Offer
from orders.agent import instance_agent_report
from orders.errors import InsufficientCapacity, InvalidTransition, OrderErrorCode
from orders.lifecycle import instance_terminate
from orders.quotes import quote_create
from orders.requests import OrderRequest
from orders.state import Actor
from suppliers.hosts import host_update
from tests.conftest import bearer_client
from tests.factories import HostFactory, UserFactory, l4_host_data
from tests.orders.conftest import order

pytestmark = pytest.mark.django_db

IMAGE = "pytorch/pytorch:2.5.1"
DAY = 24


@pytest.fixture
def day_host(supplier_org):
    """4 x L4 at $0.40 per instance-hour, rented for at least a day."""
    return HostFactory(organization=supplier_org, name="l4-day", **l4_host_data(min_rental_hours=DAY))


@pytest.fixture
def staff_user(db):
    return UserFactory(email="staff@example.com", is_staff=True, credit=0)


def l4_offer(host) -> Offer:
    return Offer.objects.get(host=host, instance_type__name="l4-24g.1x")


def compute_seconds(instance) -> int:
    total = UsageRecord.objects.filter(instance=instance, kind=UsageRecord.Kind.COMPUTE).aggregate(s=Sum("seconds"))
    return total["s"] or 0


# --- Quote and order agree ------------------------------------------------------------------------


def test_the_quote_shows_the_minimum_charge(day_host):
    quote = quote_create(request=OrderRequest(instance_type="l4-24g.1x", count=2))
    assert quote.lines[0].min_rental_hours == DAY
    assert quote.minimum_charge == Decimal("0.40") * 2 * DAY


def test_the_quote_api_and_the_rent_form_show_the_minimum(buyer, client, day_host):
    body = bearer_client(buyer).post("/api/v1/quotes/", {"instance_type": "l4-24g.1x"}, format="json").json()
    assert body["minimum_charge"] == "9.600000" and body["lines"][0]["min_rental_hours"] == DAY
    client.force_login(buyer)
    page = client.post(
        reverse("orders:offer_quote", args=[l4_offer(day_host).pk]),
        {"count": 1, "pricing": "on_demand", "image": IMAGE},
    )
    assert b"Minimum charge" in page.content and b"24 h" in page.content


@pytest.mark.parametrize("path", ["/api/v1/orders/", "/api/v1/quotes/"])
def test_a_pinned_order_shorter_than_the_minimum_is_refused(buyer, day_host, path):
    response = bearer_client(buyer).post(
        path, {"offer": l4_offer(day_host).pk, "terminate_after_hours": 2, "image": IMAGE}, format="json"
    )
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["code"] == OrderErrorCode.RENTAL_BELOW_MINIMUM and body["min_rental_hours"] == DAY
    assert "terminate_after_hours" in body["fields"]


def test_an_order_by_type_shorter_than_the_minimum_skips_the_host(buyer, supplier_org, day_host):
    with pytest.raises(InsufficientCapacity) as error:
        order(buyer, terminate_after_hours=2)
    assert error.value.extra["skipped_hosts"] == {"minimum_rental": 1}
    pricier = l4_host_data(price_per_unit_hour=Decimal("0.80"))
    hourly = HostFactory(organization=supplier_org, name="l4-hourly", **pricier)
    quote = quote_create(request=OrderRequest(instance_type="l4-24g.1x", terminate_after_hours=2))
    assert quote.lines[0].host_id == hourly.pk
    assert order(buyer, terminate_after_hours=2).instances.get().host == hourly


def test_a_reserved_term_below_the_minimum_skips_the_host(buyer, day_host):
    host_update(host=day_host, min_rental_hours=200)
    with pytest.raises(InsufficientCapacity):
        order(buyer, pricing="reserved", term_hours=168)
    assert order(buyer, pricing="reserved", term_hours=720).instances.get().host == day_host


def test_the_wallet_must_cover_the_minimum_charge(day_host):
    poor = UserFactory(email="five-dollars@example.com", credit=Decimal("5.00"))  # a day is $9.60
    with pytest.raises(InsufficientFunds):
        order(poor)
    assert order(poor, pricing="spot", max_price_per_hour=Decimal("0.30"))  # no minimum on spot


# --- Billing --------------------------------------------------------------------------------------


def test_placement_records_the_minimum(buyer, day_host, l4_host):
    placed = order(buyer, count=5).instances.order_by("pk")
    on_day_host = [i for i in placed if i.host_id == day_host.pk]
    on_hourly_host = [i for i in placed if i.host_id == l4_host.pk]
    assert on_day_host and on_hourly_host
    for instance in on_day_host:
        assert instance.minimum_billed_until == instance.created_at + timedelta(hours=DAY)
    assert all(i.minimum_billed_until is None for i in on_hourly_host)


def test_a_buyer_who_terminates_early_is_billed_up_to_the_minimum(buyer, day_host):
    instance = order(buyer).instances.get()
    instance_agent_report(instance=instance, status="running")
    with freeze_time(timezone.now() + timedelta(hours=1)):
        instance_terminate(instance=instance, actor_user=buyer)
    instance.refresh_from_db()
    assert abs(compute_seconds(instance) - DAY * 3600) <= 2
    rates = set(UsageRecord.objects.filter(instance=instance).values_list("rate_per_hour", flat=True))
    assert rates == {Decimal("0.40")}


def test_terminating_twice_bills_the_minimum_once(buyer, day_host):
    instance = order(buyer).instances.get()
    instance_agent_report(instance=instance, status="running")
    instance_terminate(instance=instance, actor_user=buyer)
    with pytest.raises(InvalidTransition):
        instance_terminate(instance=instance, actor_user=buyer)
    assert abs(compute_seconds(instance) - DAY * 3600) <= 2


def test_a_buyer_terminating_after_the_minimum_pays_only_usage(buyer, day_host):
    instance = order(buyer).instances.get()
    instance_agent_report(instance=instance, status="running")
    with freeze_time(timezone.now() + timedelta(hours=DAY + 2)):
        instance_terminate(instance=instance, actor_user=buyer)
    assert abs(compute_seconds(instance) - (DAY + 2) * 3600) <= 2


def test_the_platform_ending_an_instance_charges_no_minimum(buyer, staff_user, day_host):
    instance = order(buyer).instances.get()
    instance_agent_report(instance=instance, status="running")
    with freeze_time(timezone.now() + timedelta(hours=1)):
        instance_terminate(instance=instance, actor_user=staff_user)
    assert abs(compute_seconds(instance) - 3600) <= 2


def test_an_instance_that_never_ran_charges_no_minimum(buyer, day_host):
    instance = order(buyer).instances.get()  # provisioning: the host never started it
    instance_terminate(instance=instance, actor_user=buyer)
    assert compute_seconds(instance) == 0


def test_spot_has_no_minimum(buyer, day_host):
    instance = order(buyer, pricing="spot", max_price_per_hour=Decimal("0.30"), terminate_after_hours=1).instances.get()
    assert instance.minimum_billed_until is None
    instance_agent_report(instance=instance, status="running")
    with freeze_time(timezone.now() + timedelta(minutes=30)):
        instance_terminate(instance=instance, actor_user=buyer)
    assert abs(compute_seconds(instance) - 1800) <= 2


def test_a_reserved_cancellation_refunds_only_past_the_minimum(buyer, day_host):
    host_update(host=day_host, min_rental_hours=200)
    instance = order(buyer, pricing="reserved", term_hours=720).instances.get()
    assert instance.minimum_billed_until == instance.created_at + timedelta(hours=200)
    instance_agent_report(instance=instance, status="running")
    with freeze_time(timezone.now() + timedelta(hours=1)):
        instance_terminate(instance=instance, actor_user=buyer, actor=Actor.BUYER)
    assert abs(compute_seconds(instance) - 200 * 3600) <= 2
    refund = LedgerTransaction.objects.get(kind=LedgerTransaction.Kind.REFUND, key=f"reserved-cancel:{instance.pk}")
    unused = Decimal(refund.reference["unused"])
    assert abs(unused - instance.price_per_hour * 520) < Decimal("0.01")
