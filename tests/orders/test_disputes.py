"""Problem reports: buyer files, supplier answers, staff resolve with evidence; scoping."""

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.ledger import supplier_payable
from billing.models import UsageRecord
from billing.selectors import account_balance, wallet_balance
from billing.settlement import settle_usage
from orders.models import ProblemReport
from tests.conftest import bearer_client
from tests.factories import UserFactory

from .conftest import order

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return UserFactory(is_staff=True, credit=0)


@pytest.fixture
def instance(buyer, l4_host):
    return order(buyer).instances.get()


def paid_for(instance, hours: int) -> None:
    """The buyer pays for `hours` of the instance (a settled usage record): what a credit may give back."""
    start = timezone.now() - dt.timedelta(hours=hours)
    UsageRecord.objects.create(
        instance=instance,
        buyer=instance.buyer,
        organization=instance.host.organization,
        kind=UsageRecord.Kind.COMPUTE,
        window_start=start,
        window_end=start + dt.timedelta(hours=hours),
        seconds=3600 * hours,
        rate_per_hour=instance.price_per_hour,
    )
    settle_usage()


def test_report_answer_and_resolve_with_a_credit(buyer, supplier, staff, instance, supplier_org):
    paid_for(instance, hours=10)  # $4.00 paid: a $3.50 credit fits
    buyer_api, supplier_api, staff_api = bearer_client(buyer), bearer_client(supplier), bearer_client(staff)
    created = buyer_api.post(
        "/api/v1/problem-reports/",
        {"instance": instance.pk, "category": "performance", "description": "Half the TFLOPS"},
        format="json",
    )
    assert created.status_code == 201, created.content
    report_id = created.json()["id"]
    assert supplier.notifications.filter(kind="problem_report").exists()

    answered = supplier_api.post(
        f"/api/v1/problem-reports/{report_id}/answer/", {"answer": "Thermal issue, fixed"}, format="json"
    )
    assert answered.json()["status"] == "answered"
    assert (
        buyer_api.post(f"/api/v1/problem-reports/{report_id}/answer/", {"answer": "me"}, format="json").status_code
        == 403
    )
    assert (
        buyer_api.post(
            f"/api/v1/problem-reports/{report_id}/resolve/", {"credit": "5.00", "reason": "x"}, format="json"
        ).status_code
        == 403
    )

    wallet, payable = wallet_balance(buyer), account_balance(supplier_payable(supplier_org))
    resolved = staff_api.post(
        f"/api/v1/problem-reports/{report_id}/resolve/",
        {"credit": "3.50", "reason": "Confirmed throttling"},
        format="json",
    )
    assert resolved.json()["status"] == "refunded"
    assert wallet_balance(buyer) == wallet + Decimal("3.50")
    assert account_balance(supplier_payable(supplier_org)) == payable - Decimal("3.50")
    again = staff_api.post(f"/api/v1/problem-reports/{report_id}/resolve/", {"reason": "twice"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "report_resolved"


def test_rejection_needs_a_reason_and_moves_no_money(buyer, staff, instance):
    report = (
        bearer_client(buyer)
        .post(
            "/api/v1/problem-reports/",
            {"instance": instance.pk, "category": "other", "description": "?"},
            format="json",
        )
        .json()
    )
    before = wallet_balance(buyer)
    staff_api = bearer_client(staff)
    assert (
        staff_api.post(f"/api/v1/problem-reports/{report['id']}/resolve/", {"reason": ""}, format="json").status_code
        == 400
    )
    rejected = staff_api.post(
        f"/api/v1/problem-reports/{report['id']}/resolve/", {"reason": "Works as offered"}, format="json"
    )
    assert rejected.json()["status"] == "rejected"
    assert wallet_balance(buyer) == before


def test_reports_are_visible_only_to_their_parties(buyer, instance):
    bearer_client(buyer).post(
        "/api/v1/problem-reports/", {"instance": instance.pk, "category": "other", "description": "x"}, format="json"
    )
    stranger = bearer_client(UserFactory())
    assert stranger.get("/api/v1/problem-reports/").json()["results"] == []
    report = ProblemReport.objects.get()
    assert stranger.get(f"/api/v1/problem-reports/{report.pk}/").status_code == 404
    other_instance_report = stranger.post(
        "/api/v1/problem-reports/", {"instance": instance.pk, "category": "other", "description": "x"}, format="json"
    )
    assert other_instance_report.status_code == 404


def test_report_pages(client, buyer, staff, instance):
    paid_for(instance, hours=3)  # $1.20 paid: a $1.00 credit fits
    client.force_login(buyer)
    response = client.post(
        reverse("orders:instance_report", args=[instance.pk]),
        {"category": "wont_start", "description": "Stuck provisioning"},
    )
    report = ProblemReport.objects.get()
    assert response["Location"] == reverse("orders:report_detail", args=[report.pk])
    assert "evidence" not in client.get(response["Location"]).context
    client.force_login(staff)
    dashboard = client.get(reverse("moderation")).content.decode()
    assert reverse("orders:report_detail", args=[report.pk]) in dashboard
    page = client.get(reverse("orders:report_detail", args=[report.pk]))
    assert page.context["evidence"]["events"] and "Heartbeat gaps" in page.content.decode()
    client.post(
        reverse("orders:report_detail", args=[report.pk]), {"action": "resolve", "credit": "1.00", "reason": "Sorry"}
    )
    report.refresh_from_db()
    assert report.status == "refunded" and report.credit_amount == Decimal("1.00")
