"""Dispute credits are bounded by what the buyer paid for the rental (x SLA_CREDIT_MULTIPLE for a
lost host) less what was already given back; report text is bounded and clean; the resolve form
shows its errors next to its fields."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from billing.adjustments import usage_refund
from billing.errors import CreditExceedsPaid
from billing.ledger import supplier_payable
from billing.models import LedgerTransaction
from billing.selectors import account_balance, wallet_balance
from marketplace.errors import ApplicationError, Forbidden, InvalidInput
from orders.disputes import report_answer, report_create, report_resolve
from orders.models import Instance, ProblemReport
from orders.sla import sla_credits_for_outage
from suppliers.models import HostOutage
from tests.conftest import bearer_client
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data
from tests.orders.conftest import usage_paid

from .conftest import order

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return UserFactory(is_staff=True, credit=0)


def report_on(instance, category: str = "performance") -> ProblemReport:
    return report_create(buyer=instance.buyer, instance=instance, category=category, description="It broke")


# --- 2. Credits within what was paid --------------------------------------------------------------


def test_a_billion_dollar_credit_on_a_five_cent_rental_is_refused(buyer, staff, running, supplier_org):
    usage_paid(running, 450)  # 450 s at $0.40/h: $0.05
    report = report_on(running)
    wallet, payable = wallet_balance(buyer), account_balance(supplier_payable(supplier_org))
    response = bearer_client(staff).post(
        f"/api/v1/problem-reports/{report.pk}/resolve/",
        {"credit": "1000000000.00", "reason": "Generous"},
        format="json",
    )
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "credit_exceeds_paid"
    assert body["bound"] == "0.05" and body["paid"] == "0.050000" and body["credited"] == "0"
    assert body["fields"] == {"credit": ["At most $0.05."]}
    assert wallet_balance(buyer) == wallet and account_balance(supplier_payable(supplier_org)) == payable
    report.refresh_from_db()
    assert report.status == "open"
    resolved = report_resolve(staff=staff, report=report, credit=Decimal("0.05"), reason="The whole rental")
    assert resolved.status == "refunded" and wallet_balance(buyer) == wallet + Decimal("0.05")


def test_a_rental_nobody_paid_for_earns_no_credit(buyer, staff, running):
    report = report_on(running)
    with pytest.raises(CreditExceedsPaid) as refused:
        report_resolve(staff=staff, report=report, credit=Decimal("0.01"), reason="x")
    assert refused.value.extra["bound"] == "0.00"


def test_a_lost_host_may_earn_the_sla_multiple(buyer, staff, running, settings):
    settings.SLA_CREDIT_MULTIPLE = Decimal("5")
    usage_paid(running, 3600)  # $0.40: up to $2.00 for a lost host
    performance, lost = report_on(running), report_on(running, "host_lost")
    with pytest.raises(CreditExceedsPaid):
        report_resolve(staff=staff, report=performance, credit=Decimal("0.41"), reason="x")
    with pytest.raises(CreditExceedsPaid) as refused:
        report_resolve(staff=staff, report=lost, credit=Decimal("2.01"), reason="x")
    assert refused.value.extra["bound"] == "2.00" and refused.value.extra["multiple"] == "5"
    report_resolve(staff=staff, report=lost, credit=Decimal("2.00"), reason="Host gone for the hour")


def test_credits_already_given_count(buyer, staff, running):
    usage_paid(running, 3600)  # $0.40
    first, second = report_on(running), report_on(running)
    report_resolve(staff=staff, report=first, credit=Decimal("0.30"), reason="Mostly broken")
    with pytest.raises(CreditExceedsPaid) as refused:
        report_resolve(staff=staff, report=second, credit=Decimal("0.11"), reason="Again")
    assert refused.value.extra["bound"] == "0.10" and refused.value.extra["credited"] == "0.300000"
    report_resolve(staff=staff, report=second, credit=Decimal("0.10"), reason="The rest")


def test_a_usage_refund_counts_as_given_back(buyer, staff, running):
    charge = usage_paid(running, 3600)
    usage_paid(running, 1800)  # $0.40 + $0.20 paid
    usage_refund(record=charge, reason="Host lost", staff=staff)  # $0.40 back
    with pytest.raises(CreditExceedsPaid):
        report_resolve(staff=staff, report=report_on(running), credit=Decimal("0.21"), reason="x")


def test_an_sla_credit_counts_as_given_back(buyer, staff, running, settings):
    settings.SLA_GRACE_SECONDS = 0
    usage_paid(running, 3600)  # $0.40, x5 for a lost host: $2.00
    now = timezone.now()
    Instance.objects.filter(pk=running.pk).update(created_at=now - dt.timedelta(hours=2))
    outage = HostOutage.objects.create(
        host=running.host, started_at=now - dt.timedelta(hours=1), ended_at=now - dt.timedelta(minutes=30)
    )
    (credit,) = sla_credits_for_outage(outage=outage)  # 30 min at $0.40/h x 5 = $1.00
    assert credit.postings.get(account__kind="buyer_wallet").amount == Decimal("1")
    with pytest.raises(CreditExceedsPaid) as refused:
        report_resolve(staff=staff, report=report_on(running, "host_lost"), credit=Decimal("1.01"), reason="x")
    assert refused.value.extra["bound"] == "1.00"


def test_a_reserved_prepayment_counts_as_paid(buyer, staff, l4_host):
    instance = order(buyer, pricing="reserved", term_hours=168).instances.get()
    share = LedgerTransaction.objects.get(key=f"reserved:{instance.order_id}").postings.get(
        account__kind="buyer_wallet"
    )
    paid = -share.amount
    report = report_on(instance)
    with pytest.raises(CreditExceedsPaid):
        report_resolve(
            staff=staff, report=report, credit=(paid + Decimal("0.01")).quantize(Decimal("0.01")), reason="x"
        )
    report_resolve(staff=staff, report=report, credit=Decimal("10.00"), reason="Part of the term lost")


def test_staff_do_not_resolve_their_own_rental(l4_host):
    renting_staff = UserFactory(is_staff=True, credit=100)
    instance = order(renting_staff).instances.get()
    usage_paid(instance, 3600)
    with pytest.raises(Forbidden):
        report_resolve(staff=renting_staff, report=report_on(instance), credit=Decimal("0.10"), reason="Mine")


# --- 4. The resolve form ----------------------------------------------------------------------------


def test_the_resolve_form_shows_the_bound_next_to_the_credit_and_keeps_what_was_typed(client, staff, running):
    usage_paid(running, 450)
    report = report_on(running)
    client.force_login(staff)
    page = client.get(reverse("orders:report_detail", args=[report.pk]))
    assert "A credit is at most <strong>$0.05</strong>" in page.content.decode()
    response = client.post(
        reverse("orders:report_detail", args=[report.pk]),
        {"action": "resolve", "credit": "1000000000", "reason": "Typed reason\r\nsecond line"},
    )
    assert response.status_code == 200  # shown again, not redirected
    assert response.context["resolve_form"].errors == {"credit": ["At most $0.05."]}
    text = response.content.decode()
    assert 'value="1000000000"' in text and "Typed reason" in text and "second line</textarea>" in text
    report.refresh_from_db()
    assert report.status == "open"


def test_the_answer_form_shows_its_errors(client, supplier, running):
    report = report_on(running)
    client.force_login(supplier)
    response = client.post(
        reverse("orders:report_detail", args=[report.pk]), {"action": "answer", "answer": "y" * 4001}
    )
    assert response.status_code == 200
    assert response.context["answer_form"].errors == {"answer": ["At most 4000 characters (this has 4001)."]}
    report.refresh_from_db()
    assert report.supplier_answer == "" and report.status == "open"


# --- 5. Report text: bounded, clean, a field error -------------------------------------------------


@pytest.mark.parametrize("text", ["a\x00b", "\x1b[31mred\x1b[0m", "bell\x07", "c1\x85c1", "del\x7f"])
def test_control_characters_in_a_description_are_a_field_error(running, text):
    with pytest.raises(InvalidInput) as refused:
        report_create(buyer=running.buyer, instance=running, category="other", description=text)
    assert list(refused.value.fields) == ["description"]
    assert not ProblemReport.objects.exists()


def test_text_lengths_are_bounded_by_the_columns(running, supplier, staff):
    with pytest.raises(InvalidInput) as refused:
        report_create(buyer=running.buyer, instance=running, category="other", description="d" * 4001)
    assert refused.value.fields == {"description": ["At most 4000 characters (this has 4001)."]}
    report = report_create(buyer=running.buyer, instance=running, category="other", description="d" * 4000)
    with pytest.raises(InvalidInput) as refused:
        report_answer(user=supplier, report=report, answer="a" * 4001)
    assert list(refused.value.fields) == ["answer"]
    with pytest.raises(InvalidInput) as refused:
        report_answer(user=supplier, report=report, answer="nul\x00")
    assert list(refused.value.fields) == ["answer"]
    with pytest.raises(InvalidInput) as refused:
        report_resolve(staff=staff, report=report, credit=None, reason="r" * 2001)
    assert list(refused.value.fields) == ["reason"]
    with pytest.raises(InvalidInput):
        report_resolve(staff=staff, report=report, credit=None, reason="esc\x1b")
    report.refresh_from_db()
    assert report.status == "open" and report.supplier_answer == ""


def test_newlines_and_tabs_are_text(running):
    report = report_create(
        buyer=running.buyer, instance=running, category="other", description="  line one\r\n\tline two\rthree  "
    )
    assert report.description == "line one\n\tline two\nthree"


def test_over_the_api_a_long_reason_is_a_400_field_error(staff, running):
    report = report_on(running)
    response = bearer_client(staff).post(
        f"/api/v1/problem-reports/{report.pk}/resolve/", {"reason": "r" * 2001}, format="json"
    )
    assert response.status_code == 400 and "reason" in response.json()["fields"]


# --- Concurrency: the bound is decided under the buyer's wallet lock --------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_staff_crediting_one_rental_at_once_cannot_both_fit(catalog):
    organization = OrganizationFactory(status="approved")
    HostFactory(organization=organization, name="l4-race", **l4_host_data())
    buyer = UserFactory()
    instance = order(buyer).instances.get()
    usage_paid(instance, 3600)  # $0.40
    reports = [report_on(instance), report_on(instance)]
    staff_members = [UserFactory(is_staff=True, credit=0), UserFactory(is_staff=True, credit=0)]
    start = threading.Barrier(2)

    def resolve(pair):
        staff_member, report = pair
        try:
            start.wait()
            report_resolve(staff=staff_member, report=report, credit=Decimal("0.40"), reason="All of it")
            return "ok"
        except ApplicationError as error:
            return error.code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(resolve, zip(staff_members, reports, strict=True)))
    assert results == ["credit_exceeds_paid", "ok"]
    assert ProblemReport.objects.filter(status="refunded").count() == 1
