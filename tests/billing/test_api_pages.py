"""Billing API and pages: balance/burn/runway, usage, ledger, scoping."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time

from billing.ledger import supplier_payable
from billing.models import UsageRecord
from billing.selectors import account_balance, wallet_balance
from billing.settlement import settle_usage
from orders.metering import meter_usage
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
    assert stranger.get("/api/v1/billing/usage/").json()["results"] == []
    assert stranger.get("/api/v1/billing/ledger/").json()["results"] == []
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
    daily = page.context["daily"]
    assert len(daily) == 14 and daily[-1]["amount"] == Decimal("0.066667") and daily[-1]["percent"] == 100
    assert "Usage charges per day" in body


def test_earnings_page_needs_an_organization(client, buyer, supplier):
    client.force_login(buyer)
    assert client.get(reverse("billing:earnings")).status_code == 302
    client.force_login(supplier)
    page = client.get(reverse("billing:earnings"))
    assert "Set up payouts with Stripe" in page.content.decode()
    assert page.context["by_host"] == []


def test_monthly_statement(client, running, buyer):

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


def test_staff_credit_notes_and_refunds(client, running, buyer, supplier_org):

    staff = UserFactory(is_staff=True, credit=0)
    with freeze_time(at(3600)):
        meter_usage()
    settle_usage()
    (charge,) = UsageRecord.objects.filter(settled_by__kind="usage")
    before = wallet_balance(buyer)
    client.force_login(staff)
    client.post(
        reverse("billing:staff_adjustments"),
        {"action": "refund", "usage_record": charge.pk, "reason": "Host lost for an hour"},
    )
    assert wallet_balance(buyer) == before + Decimal("0.40")
    assert account_balance(supplier_payable(supplier_org)) == 0
    again = client.post(
        reverse("billing:staff_adjustments"),
        {"action": "refund", "usage_record": charge.pk, "reason": "twice"},
        follow=True,
    )
    assert wallet_balance(buyer) == before + Decimal("0.40")  # reversed once only
    assert again.status_code == 200
    client.post(
        reverse("billing:staff_adjustments"),
        {"action": "credit", "email": buyer.email, "amount": "5.00", "reason": "Sorry about the outage"},
    )
    assert wallet_balance(buyer) == before + Decimal("5.40")
    missing = client.post(
        reverse("billing:staff_adjustments"),
        {"action": "credit", "email": buyer.email, "amount": "5.00", "reason": ""},
        follow=True,
    )
    assert "needs a reason" in missing.content.decode()
    assert buyer.notifications.filter(kind="credit_note").count() == 1


def test_non_staff_cannot_adjust(client, buyer):
    client.force_login(buyer)
    assert client.get(reverse("billing:staff_adjustments")).status_code == 403
    assert (
        client.post(
            reverse("billing:staff_adjustments"),
            {"action": "credit", "email": buyer.email, "amount": "100", "reason": "me"},
        ).status_code
        == 403
    )


def test_supplier_earnings_by_host(running, supplier):
    with freeze_time(at(3600)):
        meter_usage()
    settle_usage()

    browser = Client()
    browser.force_login(supplier)
    assert "l4-a" in browser.get(reverse("billing:earnings")).content.decode()
    data = bearer_client(supplier).get("/api/v1/billing/earnings/").json()
    assert data["payable"] == "0.340000"
    assert data["revenue_by_host"] == [{"host": running.host_id, "name": "l4-a", "earned": "0.340000", "seconds": 3600}]
