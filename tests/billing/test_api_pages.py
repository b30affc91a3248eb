"""Billing API and pages: balance/burn/runway, usage, ledger, scoping."""

from decimal import Decimal

import pytest
from django.urls import reverse
from freezegun import freeze_time

from billing.services import meter_usage, settle_usage
from tests.conftest import bearer_client
from tests.factories import UserFactory

from .conftest import at

pytestmark = pytest.mark.django_db


def test_balance_usage_and_ledger_api(running, buyer):
    client = bearer_client(buyer)
    balance = client.get("/api/v1/billing/balance/").json()
    assert balance == {
        "balance": "1000.000000",
        "currency": "USD",
        "burn_per_hour": "0.400000",
        "runway_hours": "2500.00",
    }
    with freeze_time(at(3600)):
        meter_usage()
    settle_usage()
    usage = client.get("/api/v1/billing/usage/").json()["results"]
    assert [(u["instance"], u["kind"], u["charge"], u["settled"]) for u in usage] == [
        (running.pk, "compute", "0.400000", True)
    ]
    ledger = client.get("/api/v1/billing/ledger/").json()["results"]
    assert [(e["kind"], e["amount"]) for e in ledger] == [("usage", "-0.400000"), ("credit", "1000.000000")]


def test_others_see_none_of_it(running, buyer):
    stranger = bearer_client(UserFactory(credit=0))
    with freeze_time(at(600)):
        meter_usage()
    assert stranger.get("/api/v1/billing/usage/").json()["count"] == 0
    assert stranger.get("/api/v1/billing/ledger/").json()["count"] == 0
    assert stranger.get("/api/v1/billing/balance/").json()["balance"] == "0.000000"
    assert stranger.get("/api/v1/billing/payouts/").status_code == 404


def test_billing_page(client, running, buyer):
    with freeze_time(at(600)):
        meter_usage()
    settle_usage()
    client.force_login(buyer)
    page = client.get(reverse("billing:buyer"))
    assert page.status_code == 200
    body = page.content.decode()
    assert "$999.93" in body and "-$0.066667" in body
    assert page.context["summary"]["burn_per_hour"] == Decimal("0.400000")


def test_earnings_page_needs_an_organization(client, buyer, supplier):
    client.force_login(buyer)
    assert client.get(reverse("billing:earnings")).status_code == 302
    client.force_login(supplier)
    assert "Set up payouts with Stripe" in client.get(reverse("billing:earnings")).content.decode()


def test_monthly_statement(client, running, buyer):
    from django.utils import timezone

    with freeze_time(at(3600)):
        meter_usage()
    settle_usage()
    month = f"{timezone.now():%Y-%m}"
    api = bearer_client(buyer)
    assert api.get("/api/v1/billing/statements/").json()["results"][0]["month"] == month
    data = api.get(f"/api/v1/billing/statements/{month}/").json()
    assert data["opening_balance"] == "0.000000"
    assert data["totals"] == {"credit": "1000.000000", "usage": "-0.400000"}
    assert data["closing_balance"] == "999.600000"
    assert api.get("/api/v1/billing/statements/2026-13/").status_code == 400
    client.force_login(buyer)
    page = client.get(reverse("billing:statement", args=[month]))
    assert page.status_code == 200 and "$999.60" in page.content.decode()
