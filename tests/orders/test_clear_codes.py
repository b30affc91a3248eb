"""Clear codes: a sold-out pinned offer, a price ceiling below every price, and staff pages that
send a visitor to log in and show a non-staff user a plain 403."""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils import timezone

from marketplace.models import Offer
from tests.conftest import bearer_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

IMAGE = "pytorch/pytorch:2.5.1"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) >= {"code", "detail", "fields"} and body["code"] == code, body
    return body


def l4_offer(host) -> Offer:
    return Offer.objects.get(host=host, instance_type__name="l4-24g.1x")


# --- A pinned offer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/orders/", "/api/v1/quotes/"])
def test_a_pinned_offer_with_nothing_left_is_a_409_offer_sold_out(buyer, l4_host, path):
    offer = l4_offer(l4_host)
    Offer.objects.filter(pk=offer.pk).update(available_count=0)
    body = assert_error(
        bearer_client(buyer).post(path, {"offer": offer.pk, "image": IMAGE}, format="json"), 409, "offer_sold_out"
    )
    assert body["offer"] == offer.pk and body["instance_type"] == "l4-24g.1x"


def test_an_offer_filled_by_orders_is_still_a_409_offer_sold_out(buyer, l4_host):
    """Filling the host rewrites its offers; the full one keeps its id at count 0, not deleted."""
    offer = l4_offer(l4_host)
    client = bearer_client(buyer)
    for _ in range(4):
        assert client.post("/api/v1/orders/", {"offer": offer.pk, "image": IMAGE}, format="json").status_code == 201
    assert Offer.objects.get(pk=offer.pk).available_count == 0
    assert_error(
        client.post("/api/v1/orders/", {"offer": offer.pk, "image": IMAGE}, format="json"), 409, "offer_sold_out"
    )
    assert_error(client.post("/api/v1/quotes/", {"offer": offer.pk}, format="json"), 409, "offer_sold_out")
    assert not client.get("/api/v1/offers/", {"instance_type": "l4-24g.1x"}).json()["results"]


def test_an_offer_of_a_delisted_host_is_a_409_and_comes_back_with_the_host(buyer, supplier, l4_host):
    offer = l4_offer(l4_host)
    supplier_client = bearer_client(supplier)
    assert supplier_client.post(f"/api/v1/hosts/{l4_host.pk}/delist/").status_code == 200
    assert Offer.objects.get(pk=offer.pk).available_count == 0
    client = bearer_client(buyer)
    assert_error(
        client.post("/api/v1/orders/", {"offer": offer.pk, "image": IMAGE}, format="json"), 409, "offer_sold_out"
    )
    assert supplier_client.post(f"/api/v1/hosts/{l4_host.pk}/relist/").status_code == 200
    assert l4_offer(l4_host).pk == offer.pk and l4_offer(l4_host).available_count == 4
    assert client.post("/api/v1/orders/", {"offer": offer.pk, "image": IMAGE}, format="json").status_code == 201


def test_a_pinned_offer_past_its_end_is_a_409_offer_sold_out(buyer, l4_host):
    offer = l4_offer(l4_host)
    Offer.objects.filter(pk=offer.pk).update(listed_until=timezone.now() - timedelta(minutes=1))
    assert_error(
        bearer_client(buyer).post("/api/v1/orders/", {"offer": offer.pk, "image": IMAGE}, format="json"),
        409,
        "offer_sold_out",
    )


def test_an_offer_that_never_existed_is_a_400_naming_the_field(buyer, l4_host):
    body = assert_error(
        bearer_client(buyer).post("/api/v1/orders/", {"offer": 999_999, "image": IMAGE}, format="json"),
        400,
        "invalid",
    )
    assert body["fields"] == {"offer": ["No such offer."]}


def test_other_field_errors_come_before_sold_out(buyer, l4_host):
    offer = l4_offer(l4_host)
    Offer.objects.filter(pk=offer.pk).update(available_count=0)
    response = bearer_client(buyer).post("/api/v1/orders/", {"offer": offer.pk, "image": ""}, format="json")
    assert assert_error(response, 400, "invalid")["fields"].keys() == {"image"}


# --- A price ceiling --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/orders/", "/api/v1/quotes/"])
def test_a_ceiling_below_every_matching_price_says_so(buyer, l4_host, path):
    response = bearer_client(buyer).post(
        path, {"instance_type": "l4-24g.1x", "max_price_per_hour": "0.10", "image": IMAGE}, format="json"
    )
    body = assert_error(response, 409, "price_ceiling_too_low")
    assert body["lowest_price_per_hour"] == "0.400000"
    assert "max_price_per_hour" in body["fields"]
    assert "$0.40/h" in body["detail"]  # the message speaks money; the field keeps full precision


def test_a_reserved_ceiling_is_compared_with_the_discounted_price(buyer, l4_host):
    response = bearer_client(buyer).post(
        "/api/v1/quotes/",
        {"instance_type": "l4-24g.1x", "pricing": "reserved", "term_hours": 168, "max_price_per_hour": "0.10"},
        format="json",
    )
    body = assert_error(response, 409, "price_ceiling_too_low")
    assert Decimal(body["lowest_price_per_hour"]) < Decimal("0.40")


def test_a_ceiling_that_fits_but_no_capacity_is_still_insufficient_capacity(buyer, l4_host):
    response = bearer_client(buyer).post(
        "/api/v1/quotes/", {"instance_type": "l4-24g.1x", "count": 5, "max_price_per_hour": "1.00"}, format="json"
    )
    assert_error(response, 409, "insufficient_capacity")


def test_a_ceiling_with_no_matching_host_at_all_is_insufficient_capacity(buyer):
    response = bearer_client(buyer).post(
        "/api/v1/quotes/", {"instance_type": "l4-24g.1x", "max_price_per_hour": "0.10"}, format="json"
    )
    assert_error(response, 409, "insufficient_capacity")


def test_a_spot_bid_below_every_floor_is_still_bid_too_low(buyer, l4_host):
    response = bearer_client(buyer).post(
        "/api/v1/quotes/",
        {"instance_type": "l4-24g.1x", "pricing": "spot", "max_price_per_hour": "0.01"},
        format="json",
    )
    assert_error(response, 409, "bid_too_low")


# --- Staff pages ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["moderation", "billing:staff_adjustments"])
def test_an_anonymous_visit_to_a_staff_page_goes_to_the_login_page(client, name):
    path = reverse(name)
    for response in (client.get(path), client.post(path, {"action": "credit"})):
        assert response.status_code == 302
        assert response["Location"] == f"{resolve_url(settings.LOGIN_URL)}?next={path}"


@pytest.mark.parametrize("name", ["moderation", "billing:staff_adjustments"])
def test_a_non_staff_user_gets_a_403_page_and_no_traceback_is_logged(client, buyer, caplog, name):
    client.force_login(buyer)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.get(reverse(name))
        posted = client.post(reverse(name), {"action": "credit", "email": buyer.email, "amount": "5", "reason": "x"})
    assert response.status_code == 403 and posted.status_code == 403
    assert "for marketplace staff" in response.content.decode()
    assert not [record for record in caplog.records if record.exc_info]


def test_staff_still_see_the_staff_pages(client):
    client.force_login(UserFactory(is_staff=True, credit=0))
    assert client.get(reverse("moderation")).status_code == 200
    assert client.get(reverse("billing:staff_adjustments")).status_code == 200
