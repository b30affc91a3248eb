"""The ordering API: quotes, Idempotency-Key, scoping, actions and errors."""

from decimal import Decimal

import pytest

from orders.models import Instance, Order
from tests.conftest import bearer_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

BODY = {"instance_type": "l4-24g.1x", "count": 2, "image": "pytorch/pytorch:2.5.1", "command": "python train.py"}


@pytest.fixture
def buyer_client(buyer):
    return bearer_client(buyer)


def test_quote_shows_price_fee_energy_hosts_and_expiry(buyer_client, l4_host):
    response = buyer_client.post("/api/v1/quotes/", {"instance_type": "l4-24g.1x", "count": 2}, format="json")
    assert response.status_code == 200, response.content
    quote = response.json()
    assert quote["price_per_hour"] == "0.800000"
    assert quote["platform_fee_per_hour"] == "0.120000"  # 15% take rate
    assert Decimal(quote["energy_kwh_per_hour"]) == Decimal("0.18")  # 2 x 72 W x PUE 1.25
    assert quote["lines"] == [
        {
            "host_id": l4_host.pk,
            "supplier": "Alpha Compute",
            "region": "us-east",
            "instance_type": "l4-24g.1x",
            "count": 2,
            "price_per_hour": "0.400000",
            "energy_kwh_per_hour": "0.0900",
            "disk_gb": 500,
            "min_rental_hours": 0,
            "available_until": None,
        }
    ]
    assert quote["minimum_charge"] == "0.000000"
    assert quote["expires_at"]
    assert not Order.objects.exists()


def test_reserved_quote_includes_the_term_total(buyer_client, l4_host):
    body = {"instance_type": "l4-24g.1x", "pricing": "reserved", "term_hours": 720}
    quote = buyer_client.post("/api/v1/quotes/", body, format="json").json()
    assert quote["price_per_hour"] == "0.320000"
    assert quote["term_total"] == "230.400000"


def test_order_and_idempotent_replay(buyer_client, l4_host):
    first = buyer_client.post("/api/v1/orders/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.status_code == 201, first.content
    again = buyer_client.post("/api/v1/orders/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Order.objects.count() == 1 and Instance.objects.count() == 2

    reused = buyer_client.post("/api/v1/orders/", {**BODY, "count": 1}, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    assert reused.status_code == 409
    assert reused.json()["code"] == "idempotency_key_reused"
    assert Order.objects.count() == 1


def test_keys_are_per_buyer(buyer_client, l4_host, other_supplier):
    buyer_client.post("/api/v1/orders/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    other = bearer_client(other_supplier).post("/api/v1/orders/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert other.status_code == 201
    assert Order.objects.count() == 2


def test_failed_order_is_not_remembered(buyer_client, l4_host):
    too_many = {**BODY, "count": 9}
    assert buyer_client.post("/api/v1/orders/", too_many, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 409
    assert buyer_client.post("/api/v1/orders/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201


def test_bad_idempotency_key(buyer_client, l4_host):
    response = buyer_client.post("/api/v1/orders/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="x" * 300)
    assert response.status_code == 400 and response.json()["code"] == "invalid_idempotency_key"


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"count": 2, "image": "x"}, 400, "invalid", "instance_type"),
        ({**BODY, "count": 0}, 400, "invalid", "count"),
        ({**BODY, "count": "many"}, 400, "invalid", "count"),
        ({**BODY, "pricing": "auction"}, 400, "invalid", "pricing"),
        ({**BODY, "pricing": "spot"}, 400, "invalid", "max_price_per_hour"),
        ({**BODY, "pricing": "reserved", "term_hours": 5}, 400, "invalid", "term_hours"),
        ({**BODY, "near": {"lat": 100, "lon": 0}}, 400, "invalid", "near"),
        ({**BODY, "instance_type": "nope.1x"}, 400, "invalid", "instance_type"),
        ({"requirements": {"min_memory_gb": "lots"}, "image": "x"}, 400, "invalid", "requirements"),
        ({**BODY, "count": 50}, 409, "insufficient_capacity", None),
    ],
)
def test_bad_orders(buyer_client, l4_host, body, status, code, field):
    response = buyer_client.post("/api/v1/orders/", body, format="json")
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    if field:
        assert field in response.json()["fields"]
    assert not Order.objects.exists()


def test_instance_actions_and_timeline(buyer_client, l4_host):
    order = buyer_client.post("/api/v1/orders/", {**BODY, "count": 1}, format="json").json()
    instance_id = order["instances"][0]["id"]
    stopped = buyer_client.post(f"/api/v1/instances/{instance_id}/stop/")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopping"
    again = buyer_client.post(f"/api/v1/instances/{instance_id}/stop/")
    assert again.status_code == 409 and again.json()["code"] == "invalid_transition"
    start = buyer_client.post(f"/api/v1/instances/{instance_id}/start/")
    assert start.status_code == 409 and start.json()["code"] == "invalid_transition"  # still stopping
    detail = buyer_client.get(f"/api/v1/instances/{instance_id}/").json()
    assert [e["to_status"] for e in detail["events"]] == ["requested", "provisioning", "stopping"]
    terminated = buyer_client.post(f"/api/v1/instances/{instance_id}/terminate/")
    assert terminated.json()["status"] == "terminating"


def test_buyers_cannot_see_or_touch_each_others_orders(buyer_client, l4_host):
    order = buyer_client.post("/api/v1/orders/", {**BODY, "count": 1}, format="json").json()
    instance_id = order["instances"][0]["id"]
    stranger = bearer_client(UserFactory())
    assert stranger.get("/api/v1/orders/").json()["results"] == []
    assert stranger.get("/api/v1/instances/").json()["results"] == []
    assert stranger.get(f"/api/v1/orders/{order['id']}/").status_code == 404
    assert stranger.get(f"/api/v1/instances/{instance_id}/").status_code == 404
    for action in ("stop", "start", "terminate"):
        response = stranger.post(f"/api/v1/instances/{instance_id}/{action}/")
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert Instance.objects.get(pk=instance_id).status == "provisioning"
    assert len(buyer_client.get("/api/v1/instances/").json()["results"]) == 1


def test_spend_limit_is_settable_by_the_buyer(buyer_client, l4_host):
    assert buyer_client.patch("/api/v1/me/", {"spend_limit_per_hour": "0.50"}, format="json").status_code == 200
    response = buyer_client.post("/api/v1/orders/", BODY, format="json")
    assert response.status_code == 409 and response.json()["code"] == "spend_limit_exceeded"
    bad = buyer_client.patch("/api/v1/me/", {"spend_limit_per_hour": "-3"}, format="json")
    assert bad.status_code == 400 and "spend_limit_per_hour" in bad.json()["fields"]


def test_anonymous_cannot_order(api_client, l4_host):
    assert api_client.post("/api/v1/orders/", BODY, format="json").status_code == 401
    assert api_client.post("/api/v1/quotes/", BODY, format="json").status_code == 401
