"""Buyer pages: rent form with live quote, my instances (htmx rows), instance detail and actions."""

from decimal import Decimal

import pytest
from django.urls import reverse

from marketplace.models import Offer
from orders.buyer_dashboard import InstanceActions
from orders.models import Instance
from orders.supply import host_update
from tests.factories import UserFactory

from .conftest import order

pytestmark = pytest.mark.django_db

RENT = {
    "count": 2,
    "pricing": "on_demand",
    "image": "pytorch/pytorch:2.5.1",
    "command": "",
    "max_price_per_hour": "",
    "term_hours": "",
    "terminate_after_hours": "",
}


@pytest.fixture
def offer(l4_host):
    return Offer.objects.get(host=l4_host, instance_type__name="l4-24g.1x")


def test_live_quote_fragment(client, buyer, offer):
    client.force_login(buyer)
    response = client.post(reverse("orders:offer_quote", args=[offer.pk]), RENT)
    assert response.status_code == 200
    assert response.context["quote"].price_per_hour == Decimal("0.800000")
    assert "$0.8000" in response.content.decode()
    spot = client.post(reverse("orders:offer_quote", args=[offer.pk]), {**RENT, "pricing": "spot"})
    assert "Spot orders need a bid" in spot.content.decode()


def test_rent_places_the_order_and_lists_it(client, buyer, offer):
    client.force_login(buyer)
    response = client.post(reverse("orders:offer_rent", args=[offer.pk]), RENT)
    assert response.status_code == 302 and response["Location"] == reverse("orders:instances")
    assert Instance.objects.filter(buyer=buyer).count() == 2
    listing = client.get(reverse("orders:instances"))
    assert [i.instance_type.name for i in listing.context["instances"]] == ["l4-24g.1x"] * 2
    rows = client.get(reverse("orders:instances"), HTTP_HX_REQUEST="true")
    assert "<html" not in rows.content.decode() and "Provisioning" in rows.content.decode()


def test_rent_errors_are_shown_on_the_form(client, buyer, offer):
    client.force_login(buyer)
    response = client.post(reverse("orders:offer_rent", args=[offer.pk]), {**RENT, "count": 9})
    assert response.status_code == 200
    assert "Not enough capacity" in response.content.decode()
    bad = client.post(reverse("orders:offer_rent", args=[offer.pk]), {**RENT, "pricing": "reserved"})
    assert "Reserved terms are" in bad.content.decode()
    assert not Instance.objects.exists()


def test_instance_detail_actions_and_scoping(client, buyer, l4_host):
    instance = order(buyer).instances.get()
    client.force_login(buyer)
    page = client.get(reverse("orders:instance_detail", args=[instance.pk]))
    assert page.status_code == 200 and "Timeline" in page.content.decode()
    assert f"<title>i-{instance.pk} · Compute marketplace</title>" in page.content.decode()
    assert '<option value="wont_start">Does not start</option>' in page.content.decode()
    assert page.context["actions"] == InstanceActions(stop=True, start=False, terminate=True)
    client.post(reverse("orders:instance_action", args=[instance.pk, "stop"]))
    instance.refresh_from_db()
    assert instance.status == "stopping"
    again = client.post(reverse("orders:instance_action", args=[instance.pk, "stop"]), follow=True)
    assert "cannot become stopping" in again.content.decode()

    client.force_login(UserFactory())
    assert client.get(reverse("orders:instance_detail", args=[instance.pk])).status_code == 404
    assert client.post(reverse("orders:instance_action", args=[instance.pk, "terminate"])).status_code == 404
    instance.refresh_from_db()
    assert instance.status == "stopping"


def test_spend_limit_form(client, buyer):
    client.force_login(buyer)
    client.post(reverse("orders:spend_limit"), {"spend_limit_per_hour": "42.50"})
    buyer.refresh_from_db()
    assert buyer.spend_limit_per_hour == Decimal("42.50")
    response = client.post(reverse("orders:spend_limit"), {"spend_limit_per_hour": "-1"}, follow=True)
    assert "Enter a limit" in response.content.decode()


def test_instance_page_offers_the_new_price(client, buyer, l4_host):

    instance = order(buyer).instances.get()
    host_update(host=l4_host, price_per_unit_hour=Decimal("0.30"))
    client.force_login(buyer)
    page = client.get(reverse("orders:instance_detail", args=[instance.pk])).content.decode()
    assert "Accept new price" in page and "$0.3000/h" in page
    client.post(reverse("orders:instance_action", args=[instance.pk, "accept-price"]))
    instance.refresh_from_db()
    assert instance.price_per_hour == Decimal("0.300000")
    assert "Accept new price" not in client.get(reverse("orders:instance_detail", args=[instance.pk])).content.decode()
