"""JSON bodies are taken at their word (marketplace/api/json_types.py): a value of the wrong JSON type
is a 400 naming the field, never coerced; money is a plain decimal string; an empty filter value is
a 400. Form-encoded bodies, all strings, are left to DRF's own parsing."""

from __future__ import annotations

import pytest

from billing.models import TopUp
from tests.billing import test_stripe
from tests.conftest import bearer_client
from tests.orders import conftest as orders_conftest
from tests.suppliers.test_agent_api import agent_client

pytestmark = pytest.mark.django_db
stripe_api = test_stripe.stripe_api
l4_host = orders_conftest.l4_host


def field_error(response, field: str) -> str:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid", body
    return body["fields"][field][0]


@pytest.mark.parametrize("amount", ["1E+2", "1e2", " 1e1", 100, 12.5, True, "Infinity", "NaN"])
def test_money_is_a_plain_decimal_string(buyer, stripe_api, amount):
    response = bearer_client(buyer).post("/api/v1/billing/top-ups/", {"amount": amount}, format="json")
    assert "decimal" in field_error(response, "amount")
    assert not TopUp.objects.exists()


def test_a_plain_decimal_string_is_money(buyer, stripe_api):
    response = bearer_client(buyer).post("/api/v1/billing/top-ups/", {"amount": "100"}, format="json")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("value", [7, 7.5, True])
def test_a_number_is_not_taken_for_text(buyer, value):
    response = bearer_client(buyer).post("/api/v1/quotes/", {"instance_type": value}, format="json")
    assert field_error(response, "instance_type") == "Expected a string."


def test_an_id_written_as_text_is_refused(buyer, l4_host):
    offer = l4_host.offers.first()
    response = bearer_client(buyer).post("/api/v1/quotes/", {"offer": str(offer.pk)}, format="json")
    assert field_error(response, "offer") == "Expected a whole number."
    assert bearer_client(buyer).post("/api/v1/quotes/", {"offer": offer.pk}, format="json").status_code == 200


def test_a_boolean_is_not_a_number_for_the_agent(l4_host):
    instances = [{"id": 1, "status": "running", "usage": {"gpu_util": True}}]
    response = agent_client(l4_host).post("/api/v1/agent/heartbeat/", {"instances": instances}, format="json")
    assert response.status_code == 400 and "Expected a number." in str(response.json()["fields"])


def test_a_choice_takes_its_text_value_and_nothing_else(buyer):
    client = bearer_client(buyer)
    ok = client.patch("/api/v1/me/", {"spend_limit_per_hour": "7.50"}, format="json")
    assert ok.status_code == 200 and ok.json()["spend_limit_per_hour"] == "7.50"
    assert "decimal" in field_error(
        client.patch("/api/v1/me/", {"spend_limit_per_hour": 7.5}, format="json"), "spend_limit_per_hour"
    )


def test_form_encoded_bodies_are_still_parsed_by_the_fields(buyer, stripe_api):
    response = bearer_client(buyer).post("/api/v1/billing/top-ups/", {"amount": "25.00"})  # multipart
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("query", ["verified=", "ordering=", "region=&verified=true"])
def test_an_empty_filter_value_is_a_400_naming_it(buyer, query):
    response = bearer_client(buyer).get(f"/api/v1/offers/?{query}")
    assert response.status_code == 400 and response.json()["code"] == "invalid_filter", response.content
    assert set(response.json()["fields"]) == {part.split("=")[0] for part in query.split("&") if part.endswith("=")}
