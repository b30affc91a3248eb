"""Listed means placeable: an offer states the terms it can be had on (available until the host's
next maintenance, its minimum rental, verified or not), and search, quote and order agree on them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from marketplace.models import Offer
from marketplace.selectors import instance_type_list_with_market
from orders.errors import InsufficientCapacity, OrderErrorCode
from orders.quotes import quote_create
from orders.requests import OrderRequest
from orders.supply import maintenance_schedule
from tests.conftest import bearer_client
from tests.factories import HostFactory, l4_host_data
from tests.orders.conftest import order

pytestmark = pytest.mark.django_db

IMAGE = "pytorch/pytorch:2.5.1"


def l4_offer(host) -> Offer:
    return Offer.objects.get(host=host, instance_type__name="l4-24g.1x")


def maintenance_in(host, supplier, hours: float) -> None:
    start = timezone.now() + timedelta(hours=hours)
    maintenance_schedule(user=supplier, host=host, starts_at=start, ends_at=start + timedelta(hours=2), reason="Fans")


def error_body(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    return body


# --- Maintenance: available until T --------------------------------------------------------------


def test_an_offer_before_maintenance_says_until_when_it_is_available(buyer, supplier, l4_host):
    maintenance_in(l4_host, supplier, 24)
    window_start = l4_host.maintenance_windows.get().starts_at
    row = bearer_client(buyer).get("/api/v1/offers/", {"instance_type": "l4-24g.1x"}).json()["results"][0]
    assert row["available_until"] is not None
    assert abs(timezone.datetime.fromisoformat(row["available_until"]) - window_start) < timedelta(seconds=1)
    detail = bearer_client(buyer).get(f"/api/v1/offers/{row['id']}/").json()
    assert detail["available_until"] == row["available_until"]


def test_an_offer_without_maintenance_is_available_open_ended(buyer, l4_host):
    row = bearer_client(buyer).get("/api/v1/offers/", {"instance_type": "l4-24g.1x"}).json()["results"][0]
    assert row["available_until"] is None


@pytest.mark.parametrize("path", ["/api/v1/orders/", "/api/v1/quotes/"])
def test_an_open_ended_order_pinned_before_maintenance_is_told_why(buyer, supplier, l4_host, path):
    maintenance_in(l4_host, supplier, 24)
    offer = l4_offer(l4_host)
    body = error_body(
        bearer_client(buyer).post(path, {"offer": offer.pk, "image": IMAGE}, format="json"),
        409,
        OrderErrorCode.RENTAL_PAST_AVAILABILITY,
    )
    assert body["available_until"] and body["max_terminate_after_hours"] == 23
    assert "terminate_after_hours" in body["fields"]


def test_a_pinned_order_that_ends_before_maintenance_is_placed(buyer, supplier, l4_host):
    maintenance_in(l4_host, supplier, 24)
    offer = l4_offer(l4_host)
    client = bearer_client(buyer)
    quote = client.post("/api/v1/quotes/", {"offer": offer.pk, "terminate_after_hours": 12}, format="json").json()
    assert quote["lines"][0]["available_until"] is not None
    response = client.post(
        "/api/v1/orders/", {"offer": offer.pk, "terminate_after_hours": 12, "image": IMAGE}, format="json"
    )
    assert response.status_code == 201, response.content


def test_an_open_ended_order_by_type_goes_to_a_host_without_maintenance(buyer, supplier, supplier_org, l4_host):
    maintenance_in(l4_host, supplier, 24)
    other = HostFactory(
        organization=supplier_org, name="l4-b", **l4_host_data(price_per_unit_hour=l4_host.price_per_unit_hour * 2)
    )
    assert order(buyer).instances.get().host == other


def test_an_open_ended_order_by_type_with_only_maintenance_hosts_says_so(buyer, supplier, l4_host):
    maintenance_in(l4_host, supplier, 24)
    with pytest.raises(InsufficientCapacity) as error:
        order(buyer)
    assert error.value.extra["skipped_hosts"] == {"maintenance": 1}
    assert "maintenance" in error.value.detail


def test_an_offer_too_close_to_maintenance_for_any_rental_is_not_listed(buyer, supplier, l4_host):
    """The shortest order is one hour: within the last hour before maintenance nothing fits."""
    maintenance_in(l4_host, supplier, 0.5)
    assert not Offer.objects.listed().filter(host=l4_host).exists()
    assert not bearer_client(buyer).get("/api/v1/offers/").json()["results"]


def test_an_offer_is_listed_only_while_its_minimum_rental_fits_before_maintenance(buyer, supplier, l4_host):
    l4_host.min_rental_hours = 24
    l4_host.save(update_fields=["min_rental_hours"])
    maintenance_in(l4_host, supplier, 12)  # refreshes the offers
    assert not Offer.objects.listed().filter(host=l4_host).exists()


# --- Verified: the same rule as search -----------------------------------------------------------


@pytest.fixture
def unverified_cheap_host(other_supplier_org):
    return HostFactory(
        organization=other_supplier_org,
        name="l4-unverified",
        verified=False,
        **l4_host_data(price_per_unit_hour=Decimal("0.20")),
    )


def test_an_order_by_type_skips_unverified_hosts_search_hides(buyer, l4_host, unverified_cheap_host):
    offers = bearer_client(buyer).get("/api/v1/offers/", {"instance_type": "l4-24g.1x"}).json()["results"]
    assert {row["host"] for row in offers} == {l4_host.pk}
    assert order(buyer).instances.get().host == l4_host
    assert quote_create(request=OrderRequest(instance_type="l4-24g.1x")).lines[0].host_id == l4_host.pk


def test_the_instance_type_list_prices_what_an_order_by_type_gets(l4_host, unverified_cheap_host):
    l4 = instance_type_list_with_market().get(name="l4-24g.1x")
    assert l4.offer_count == 1 and l4.lowest_price_per_hour == Decimal("0.40")


def test_a_capability_order_skips_unverified_hosts(buyer, l4_host, unverified_cheap_host):
    placed = order(buyer, instance_type=None, requirements={"min_memory_gb": 24, "accelerator_kinds": ["gpu"]})
    assert placed.instances.get().host == l4_host


def test_a_buyer_who_opts_in_gets_the_cheaper_unverified_host(buyer, l4_host, unverified_cheap_host):
    client = bearer_client(buyer)
    body = {"instance_type": "l4-24g.1x", "allow_unverified": True, "image": IMAGE}
    quote = client.post("/api/v1/quotes/", body, format="json").json()
    assert quote["lines"][0]["host_id"] == unverified_cheap_host.pk
    response = client.post("/api/v1/orders/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["instances"][0]["host"] == unverified_cheap_host.pk


def test_only_unverified_capacity_is_a_clear_error(buyer, unverified_cheap_host):
    with pytest.raises(InsufficientCapacity) as error:
        order(buyer)
    assert error.value.extra["skipped_hosts"] == {"unverified": 1}
    assert "allow_unverified" in error.value.detail


@pytest.mark.parametrize("path", ["/api/v1/orders/", "/api/v1/quotes/"])
def test_a_pinned_unverified_offer_needs_the_opt_in(buyer, unverified_cheap_host, path):
    offer = l4_offer(unverified_cheap_host)
    client = bearer_client(buyer)
    body = error_body(
        client.post(path, {"offer": offer.pk, "image": IMAGE}, format="json"), 409, OrderErrorCode.UNVERIFIED_HOST
    )
    assert "allow_unverified" in body["fields"]
    opted_in = client.post(path, {"offer": offer.pk, "image": IMAGE, "allow_unverified": True}, format="json")
    assert opted_in.status_code in (200, 201), opted_in.content


def test_the_schema_documents_the_opt_in(api_client):
    schema = api_client.get("/api/schema/", {"format": "json"}).json()
    field = schema["components"]["schemas"]["OrderInputRequest"]["properties"]["allow_unverified"]
    assert field["type"] == "boolean" and "verified" in field["description"]
    offer = schema["components"]["schemas"]["Offer"]["properties"]
    assert "available_until" in offer and "min_rental_hours" in offer


def test_the_offer_pages_say_until_when_and_the_rent_form_takes_the_opt_in(
    client, buyer, supplier, l4_host, unverified_cheap_host
):
    maintenance_in(l4_host, supplier, 24)
    client.force_login(buyer)
    detail = client.get(f"/offers/{l4_offer(l4_host).pk}/")
    assert b"Available until" in detail.content
    assert b"until " in client.get("/offers/").content
    rent = reverse("orders:offer_rent", args=[l4_offer(unverified_cheap_host).pk])
    form = {"count": 1, "pricing": "on_demand", "image": IMAGE}
    refused = client.post(rent, form)
    assert refused.status_code == 200 and b"accept it explicitly" in refused.content
    placed = client.post(rent, {**form, "allow_unverified": "on"})
    assert placed.status_code == 302
