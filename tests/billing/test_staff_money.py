"""Staff money actions are bounded: credit notes (a ceiling, and a second staff member above a
threshold), usage refunds (once, usage only, within what was paid), and a supplier that owes is
paid nothing until later earnings repay it. The staff page validates like the buyer forms."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connections, transaction
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time

from billing.adjustments import credit_note_approve, credit_note_issue, credit_note_reject, usage_refund
from billing.errors import (
    AlreadyRefunded,
    CreditExceedsPaid,
    CreditNoteDecided,
    CreditNoteTooLarge,
    SecondApproverRequired,
)
from billing.ledger import platform_account, post_transaction, supplier_payable
from billing.models import CreditNoteRequest, LedgerTransaction, Payout, UsageRecord
from billing.payouts import payout_transfer, payouts_create
from billing.selectors import account_balance, supplier_earnings, wallet_balance
from marketplace.errors import ApplicationError, Forbidden, InvalidInput
from marketplace.models import AuditEntry
from orders.disputes import report_resolve
from orders.models import ProblemReport
from tests.billing.test_stripe import stripe_api  # noqa: F401 - the fake Stripe server fixture
from tests.conftest import bearer_client
from tests.factories import UserFactory
from tests.orders.conftest import order, usage_paid
from tests.test_query_counts import assert_constant_queries, body

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return UserFactory(email="first-staff@example.com", is_staff=True, credit=0)


@pytest.fixture
def second_staff(db):
    return UserFactory(email="second-staff@example.com", is_staff=True, credit=0)


def earn(organization, amount: str, key: str) -> None:
    post_transaction(
        kind="usage",
        key=key,
        description="earned",
        postings=[
            (platform_account("platform_revenue"), -Decimal(amount)),
            (supplier_payable(organization), Decimal(amount)),
        ],
    )


def owe(organization, amount: str, key: str) -> None:
    """A credit charged to the supplier beyond its earnings (as a dispute or SLA credit posts)."""
    post_transaction(
        kind="refund",
        key=key,
        description="dispute credit",
        postings=[
            (supplier_payable(organization), -Decimal(amount)),
            (platform_account("credits_expense"), Decimal(amount)),
        ],
    )


# --- 1. Credit notes: a ceiling, and a second staff member above the threshold ---------------------


def test_a_trillion_dollar_credit_note_is_refused(buyer, staff):
    before = wallet_balance(buyer)
    with pytest.raises(CreditNoteTooLarge) as refused:
        credit_note_issue(user=buyer, amount=Decimal("1000000000000.00"), reason="Oops", staff=staff)
    assert refused.value.code == "credit_note_too_large" and refused.value.status_code == 400
    assert refused.value.extra == {"maximum": "10000.00"}
    assert wallet_balance(buyer) == before
    assert not CreditNoteRequest.objects.exists()


def test_the_ceiling_is_a_setting(buyer, staff, second_staff, settings):
    settings.CREDIT_NOTE_MAX = Decimal("500.00")
    with pytest.raises(CreditNoteTooLarge):
        credit_note_issue(user=buyer, amount=Decimal("500.01"), reason="Outage", staff=staff)
    assert isinstance(
        credit_note_issue(user=buyer, amount=Decimal("500.00"), reason="Outage", staff=staff), CreditNoteRequest
    )


def test_a_credit_note_up_to_the_threshold_is_posted_at_once(buyer, staff):
    before = wallet_balance(buyer)
    posted = credit_note_issue(user=buyer, amount=Decimal("100.00"), reason="Outage", staff=staff)
    assert isinstance(posted, LedgerTransaction)
    assert wallet_balance(buyer) == before + Decimal("100.00")


def test_above_the_threshold_a_second_staff_member_approves(buyer, staff, second_staff):
    before = wallet_balance(buyer)
    request = credit_note_issue(user=buyer, amount=Decimal("100.01"), reason="Long outage", staff=staff)
    assert isinstance(request, CreditNoteRequest) and request.status == "pending"
    assert wallet_balance(buyer) == before  # nothing posted while pending
    assert not LedgerTransaction.objects.filter(kind="credit", created_by=staff).exists()

    with pytest.raises(SecondApproverRequired) as own:
        credit_note_approve(request_id=request.pk, staff=staff)
    assert own.value.code == "second_approver_required" and own.value.status_code == 403
    assert wallet_balance(buyer) == before

    approved = credit_note_approve(request_id=request.pk, staff=second_staff)
    assert approved.status == "approved" and approved.decided_by == second_staff
    assert wallet_balance(buyer) == before + Decimal("100.01")
    posted = approved.ledger_transaction
    assert posted.key == f"credit-note-request:{request.pk}" and posted.created_by == second_staff
    assert posted.reference["requested_by"] == staff.pk and posted.reference["approved_by"] == second_staff.pk
    assert posted.reference["requested_by_email"] == staff.email
    assert posted.reference["approved_by_email"] == second_staff.email
    audit = AuditEntry.objects.get(action="credit_note.approved")
    assert audit.actor == second_staff and audit.after["requested_by"] == staff.pk
    assert audit.after["approved_by"] == second_staff.pk and audit.after["ledger_transaction"] == posted.pk
    assert AuditEntry.objects.get(action="credit_note.requested").actor == staff
    assert buyer.notifications.filter(kind="credit_note").count() == 1

    with pytest.raises(CreditNoteDecided) as twice:
        credit_note_approve(request_id=request.pk, staff=second_staff)
    assert twice.value.status_code == 409
    assert wallet_balance(buyer) == before + Decimal("100.01")


def test_the_threshold_is_rolling_so_small_notes_do_not_add_up_past_it(buyer, staff, second_staff):
    """Ten notes of $99 from one staff member are one of $990: past the threshold they wait."""
    first = credit_note_issue(user=buyer, amount=Decimal("60.00"), reason="Outage", staff=staff)
    assert isinstance(first, LedgerTransaction)
    second = credit_note_issue(user=buyer, amount=Decimal("40.01"), reason="Outage", staff=staff)
    assert isinstance(second, CreditNoteRequest) and second.status == "pending"
    other_buyer = UserFactory(email="other-buyer@example.com", credit=0)
    assert isinstance(
        credit_note_issue(user=other_buyer, amount=Decimal("40.01"), reason="x", staff=staff), CreditNoteRequest
    )
    # Another staff member has a threshold of their own; approved notes do not count toward it.
    assert isinstance(
        credit_note_issue(user=buyer, amount=Decimal("99.00"), reason="y", staff=second_staff), LedgerTransaction
    )
    credit_note_approve(request_id=second.pk, staff=second_staff)
    assert isinstance(
        credit_note_issue(user=buyer, amount=Decimal("1.00"), reason="z", staff=second_staff), LedgerTransaction
    )
    # A day later the window has moved on.
    with freeze_time(timezone.now() + timedelta(hours=24, minutes=1)):
        assert isinstance(
            credit_note_issue(user=buyer, amount=Decimal("100.00"), reason="w", staff=staff), LedgerTransaction
        )


@pytest.mark.django_db(transaction=True)
def test_concurrent_small_notes_cannot_both_pass_under_the_threshold(buyer, staff):
    """Eight threads each credit $30 at once: at most three ($90) are posted without approval."""
    barrier = threading.Barrier(8)

    def issue(_: int):
        try:
            barrier.wait()
            return credit_note_issue(user=buyer, amount=Decimal("30.00"), reason="Outage", staff=staff)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(issue, range(8)))
    posted = [r for r in results if isinstance(r, LedgerTransaction)]
    assert len(posted) == 3 and sum(isinstance(r, CreditNoteRequest) for r in results) == 5


def test_the_threshold_is_a_setting(buyer, staff, settings):
    settings.CREDIT_NOTE_APPROVAL_ABOVE = Decimal("10.00")
    assert isinstance(
        credit_note_issue(user=buyer, amount=Decimal("10.01"), reason="x", staff=staff), CreditNoteRequest
    )


def test_a_rejection_needs_a_reason_and_posts_nothing(buyer, staff, second_staff):
    before = wallet_balance(buyer)
    request = credit_note_issue(user=buyer, amount=Decimal("250.00"), reason="Goodwill", staff=staff)
    with pytest.raises(InvalidInput):
        credit_note_reject(request_id=request.pk, staff=second_staff, reason="  ")
    rejected = credit_note_reject(request_id=request.pk, staff=second_staff, reason="Not covered by the SLA")
    assert rejected.status == "rejected" and rejected.decision_reason == "Not covered by the SLA"
    with pytest.raises(CreditNoteDecided):
        credit_note_approve(request_id=request.pk, staff=second_staff)
    assert wallet_balance(buyer) == before
    assert AuditEntry.objects.get(action="credit_note.rejected").actor == second_staff


def test_staff_do_not_credit_themselves(staff, second_staff):
    with pytest.raises(Forbidden):
        credit_note_issue(user=staff, amount=Decimal("5.00"), reason="Me", staff=staff)
    request = credit_note_issue(user=second_staff, amount=Decimal("500.00"), reason="Colleague", staff=staff)
    with pytest.raises(Forbidden):  # the credited staff member cannot be the second approver
        credit_note_approve(request_id=request.pk, staff=second_staff)


def test_non_staff_cannot_approve(buyer, staff):
    request = credit_note_issue(user=UserFactory(), amount=Decimal("500.00"), reason="x", staff=staff)
    with pytest.raises(Forbidden):
        credit_note_approve(request_id=request.pk, staff=buyer)


def test_the_database_refuses_a_self_approved_or_unbounded_request(buyer, staff):
    request = credit_note_issue(user=buyer, amount=Decimal("500.00"), reason="x", staff=staff)
    tx = post_transaction(
        kind="credit",
        key="forged",
        description="forged",
        postings=[
            (platform_account("credits_expense"), Decimal("-1")),
            (platform_account("platform_revenue"), Decimal("1")),
        ],
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditNoteRequest.objects.filter(pk=request.pk).update(
            status="approved", decided_by=staff, decided_at=timezone.now(), ledger_transaction=tx
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditNoteRequest.objects.create(user=buyer, amount=Decimal("1000000.01"), reason="x", requested_by=staff)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditNoteRequest.objects.create(user=buyer, amount=Decimal("0"), reason="x", requested_by=staff)


# --- the staff page --------------------------------------------------------------------------------


def test_the_page_keeps_what_was_typed_and_shows_errors_next_to_fields(client, buyer, staff):
    client.force_login(staff)
    response = client.post(
        reverse("billing:staff_adjustments"),
        {"action": "credit", "email": buyer.email, "amount": "999999999999", "reason": "Typed reason"},
    )
    assert response.status_code == 200  # shown again, not redirected
    form = response.context["credit_form"]
    assert form.errors["amount"] == ["At most $10,000.00."]
    page = response.content.decode()
    assert 'value="Typed reason"' in page and 'value="999999999999"' in page
    assert "At most $10,000.00." in page
    unknown = client.post(
        reverse("billing:staff_adjustments"),
        {"action": "credit", "email": "nobody@example.com", "amount": "5.00", "reason": "x"},
    )
    assert unknown.context["credit_form"].errors["email"] == ["No account with that email."]
    long_reason = client.post(
        reverse("billing:staff_adjustments"),
        {"action": "credit", "email": buyer.email, "amount": "5.00", "reason": "x" * 2001},
    )
    assert long_reason.context["credit_form"].errors["reason"] == ["At most 2000 characters (this has 2001)."]
    assert not LedgerTransaction.objects.filter(created_by=staff).exists()


def test_the_page_lists_pending_requests_to_approve_or_reject(client, buyer, staff, second_staff):
    before = wallet_balance(buyer)
    client.force_login(staff)
    asked = client.post(
        reverse("billing:staff_adjustments"),
        {"action": "credit", "email": buyer.email, "amount": "300.00", "reason": "Week-long outage"},
        follow=True,
    )
    assert "another staff member must approve it" in asked.content.decode()
    request = CreditNoteRequest.objects.get()
    assert list(asked.context["pending"]) == [request]
    assert 'name="decision" value="approve"' not in asked.content.decode()  # not to the requester
    own = client.post(
        reverse("billing:staff_adjustments"), {"action": "decide", "request": request.pk, "decision": "approve"}
    )
    assert own.status_code == 200 and "Another staff member must approve" in own.content.decode()
    assert wallet_balance(buyer) == before

    client.force_login(second_staff)
    page = client.get(reverse("billing:staff_adjustments")).content.decode()
    assert 'name="decision" value="approve"' in page and "Week-long outage" in page
    no_reason = client.post(
        reverse("billing:staff_adjustments"), {"action": "decide", "request": request.pk, "decision": "reject"}
    )
    assert no_reason.status_code == 200 and no_reason.context["decision_form"].errors["reason"]
    assert no_reason.context["decision_row"] == request.pk
    approved = client.post(
        reverse("billing:staff_adjustments"),
        {"action": "decide", "request": request.pk, "decision": "approve"},
        follow=True,
    )
    assert "approved" in approved.content.decode()
    assert wallet_balance(buyer) == before + Decimal("300.00")
    assert list(approved.context["pending"]) == []


def test_a_refund_error_is_shown_on_the_refund_form(client, staff, buyer):
    credit_note_issue(user=buyer, amount=Decimal("5.00"), reason="x", staff=staff)
    client.force_login(UserFactory(is_staff=True, credit=0))
    response = client.post(
        reverse("billing:staff_adjustments"), {"action": "refund", "usage_record": 999999, "reason": "Because"}
    )
    assert response.status_code == 200
    assert response.context["refund_form"].errors["usage_record"] == ["No such usage record."]
    assert 'value="Because"' in response.content.decode()


# --- 2. Usage refunds: usage only, once, within what was paid -----------------------------------


def test_a_usage_charge_is_refunded_once(running, buyer, staff):
    charge = usage_paid(running, 3600)
    before = wallet_balance(buyer)
    refund = usage_refund(record=charge, reason="Host lost", staff=staff)
    assert wallet_balance(buyer) == before + Decimal("0.40")
    assert refund.key == f"reversal:usage:{charge.pk}"
    with pytest.raises(AlreadyRefunded) as twice:
        usage_refund(record=charge, reason="Again", staff=staff)
    assert twice.value.code == "already_refunded" and twice.value.status_code == 409
    assert wallet_balance(buyer) == before + Decimal("0.40")


def test_only_settled_wallet_paid_usage_is_refunded(buyer, staff, l4_host):
    reserved = order(buyer, pricing="reserved", term_hours=168)
    (instance,) = reserved.instances.all()
    before = wallet_balance(buyer)
    prepaid = usage_paid(instance, 3600)  # a reserved term's compute comes from the prepayment
    with pytest.raises(InvalidInput) as refused:  # a reserved term is refunded by terminating, pro rata
        usage_refund(record=prepaid, reason="Give it all back", staff=staff)
    assert refused.value.fields == {"usage_record": ["Not paid from the buyer's wallet."]}
    pending = UsageRecord.objects.create(
        instance=instance,
        buyer=buyer,
        organization=instance.host.organization,
        kind=UsageRecord.Kind.STORAGE,
        window_start=prepaid.window_end,
        window_end=prepaid.window_end + timedelta(seconds=60),
        seconds=60,
        rate_per_hour=Decimal("0.01"),
    )
    with pytest.raises(InvalidInput) as unsettled:
        usage_refund(record=pending, reason="Not yet", staff=staff)
    assert unsettled.value.fields == {"usage_record": ["Not settled yet."]}
    assert wallet_balance(buyer) == before


def test_a_refund_after_a_dispute_credit_may_not_exceed_what_was_paid(running, buyer, staff, supplier_org):
    charge = usage_paid(running, 3600)  # $0.40
    report = ProblemReport.objects.create(instance=running, buyer=buyer, category="performance", description="Slow")
    report_resolve(staff=staff, report=report, credit=Decimal("0.40"), reason="Throttled all hour")
    before = wallet_balance(buyer)
    with pytest.raises(CreditExceedsPaid) as refused:
        usage_refund(record=charge, reason="And a refund", staff=staff)
    assert refused.value.code == "credit_exceeds_paid" and Decimal(refused.value.extra["bound"]) == 0
    assert wallet_balance(buyer) == before


# --- 3. A supplier that owes is paid only after later earnings repay it --------------------------


@pytest.fixture
def connected(supplier_org):
    supplier_org.stripe_account_id = "acct_connected"
    supplier_org.save()
    return supplier_org


def test_a_supplier_that_owes_50_and_earns_80_is_paid_30(connected):
    owe(connected, "50", "owe")
    assert payouts_create(minimum=Decimal("0")) == []
    earn(connected, "80", "earn")
    (payout,) = payouts_create(minimum=Decimal("0"))
    assert payout.amount == Decimal("30.00")
    assert account_balance(supplier_payable(connected)) == 0


def test_nothing_pays_out_while_owed_whatever_the_minimum(connected):
    owe(connected, "50", "owe")
    assert payouts_create(minimum=Decimal("-100")) == []
    earn(connected, "50", "earn")  # repaid exactly: nothing left to pay
    assert payouts_create(minimum=Decimal("0")) == []
    assert not Payout.objects.exists()


def test_earnings_show_what_the_supplier_owes(client, connected, supplier):
    owe(connected, "50", "owe")
    earn(connected, "20.25", "earn")
    earnings = supplier_earnings(organization=connected)
    assert earnings["owed_by_supplier"] == Decimal("29.75") and earnings["payable"] == 0
    client.force_login(supplier)
    page = client.get(reverse("billing:earnings")).content.decode()
    assert "Owed by supplier" in page and "$29.75" in page
    data = bearer_client(supplier).get("/api/v1/billing/earnings/").json()
    assert data["owed_by_supplier"] == "29.750000" and data["payable"] == "0.000000"
    earn(connected, "30", "earn-more")
    assert supplier_earnings(organization=connected)["owed_by_supplier"] == 0
    assert "Owed by supplier" not in client.get(reverse("billing:earnings")).content.decode()


def test_a_payout_not_yet_sent_is_held_when_the_supplier_comes_to_owe(stripe_api, connected):  # noqa: F811
    earn(connected, "100", "earn")
    (payout,) = payouts_create()
    owe(connected, "130", "dispute-after-the-payout")  # payable: -130
    assert payout_transfer(payout_id=payout.pk) == "failed"
    assert stripe_api.calls("/v1/transfers") == []  # nothing sent
    payout.refresh_from_db()
    assert payout.last_error.startswith("Held: the supplier owes $130.00")
    assert account_balance(supplier_payable(connected)) == Decimal("-30")  # the payout netted the debt
    assert supplier_earnings(organization=connected)["owed_by_supplier"] == Decimal("30")


@pytest.mark.django_db(transaction=True)
def test_two_staff_approving_one_request_at_once_credit_it_once(catalog):
    buyer, requester = UserFactory(credit=0), UserFactory(is_staff=True, credit=0)
    approvers = [UserFactory(is_staff=True, credit=0), UserFactory(is_staff=True, credit=0)]
    request = credit_note_issue(user=buyer, amount=Decimal("400.00"), reason="Outage", staff=requester)
    start = threading.Barrier(2)

    def approve(approver):
        try:
            start.wait()
            credit_note_approve(request_id=request.pk, staff=approver)
            return "ok"
        except ApplicationError as error:
            return error.code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(2) as pool:
        results = sorted(pool.map(approve, approvers))
    assert results == ["credit_note_decided", "ok"]
    assert wallet_balance(buyer) == Decimal("400.00")


def test_the_pending_list_has_a_fixed_number_of_queries(client, staff, second_staff):
    serial = iter(range(1, 1000))

    def make(n):
        reasons = []
        for _ in range(n):
            reason = f"qc-request-{next(serial):04d}"
            request = credit_note_issue(user=UserFactory(), amount=Decimal("150.00"), reason=reason, staff=staff)
            if len(reasons) % 2:  # some decided too
                credit_note_approve(request_id=request.pk, staff=second_staff)
            reasons.append(reason)
        return reasons

    client.force_login(second_staff)
    assert_constant_queries(lambda: client.get(reverse("billing:staff_adjustments")), make, body)
