"""No input gives a 5xx: odd page numbers, control characters in paths and bodies, deep JSON,
dates out of range, non-finite money, malformed signed Stripe events, and a delete racing an update.

Each class is refused at one root: `marketplace.api.inputs` (whole numbers, control characters,
path lookups), `marketplace.api.parsers` (every request body), `marketplace.money.parse_money`,
`billing.payments.stripe_event_handle`, and the `*/locks.py` functions (a row gone is a 404)."""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.urls import reverse
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.locks import user_lock
from billing.locks import ledger_account_lock, payout_lock
from billing.models import StripeEvent, TopUp
from billing.payments import top_up_create
from billing.selectors import wallet_balance
from marketplace.api.inputs import body_problem, whole_number
from marketplace.api.parsers import PARSER_CLASSES, FormParser, JSONParser, MultiPartParser
from marketplace.errors import NotFound
from marketplace.models import InstanceType, Offer
from marketplace.money import parse_money
from orders.locks import instance_and_host_lock, instance_lock, problem_report_lock
from orders.models import ProblemReport
from suppliers import hosts
from suppliers.agent_services import agent_register, host_registration_token_issue
from suppliers.locks import host_lock, organization_lock
from suppliers.models import Host, MaintenanceWindow
from tests.billing import test_stripe
from tests.billing.test_stripe import event, post_webhook
from tests.conftest import bearer_client
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data
from tests.orders import conftest as orders_conftest
from tests.support.fake_stripe import sign

pytestmark = pytest.mark.django_db

# Fixtures shared with the billing and orders tests.
stripe_api = test_stripe.stripe_api
l4_host = orders_conftest.l4_host
running = orders_conftest.running

ARABIC_DIGITS = str.maketrans("0123456789", "".join(chr(0x0660 + d) for d in range(10)))


def _arabic(value) -> str:
    """'2026' in Arabic-Indic digits, which int() reads as 2026."""
    return str(value).translate(ARABIC_DIGITS)


@pytest.fixture(autouse=True)
def _body_parsers(monkeypatch):
    """The body checks are installed by settings (REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] =
    marketplace.api.parsers.PARSER_CLASSES). DRF copies that list onto APIView when it is imported,
    so until settings name them, put them there for these tests."""
    if [f"{c.__module__}.{c.__name__}" for c in api_settings.DEFAULT_PARSER_CLASSES] != PARSER_CLASSES:
        monkeypatch.setattr(APIView, "parser_classes", [JSONParser, FormParser, MultiPartParser])


@pytest.fixture
def staff(db):
    return UserFactory(is_staff=True, credit=0)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) >= {"code", "detail", "fields"} and body["code"] == code, body
    return body


# --- 1. Page numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["12", "1"])
def test_whole_numbers_are_ascii_digits(value):
    assert whole_number(value) == int(value)


@pytest.mark.parametrize("value", ["٣", "²", "1e3", "-1", "+1", " 1", "1.0", "", "0", "9" * 19, True, None])
def test_anything_else_is_not_a_whole_number(value):
    assert whole_number(value) is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=٣", "page"),
        ("page=²", "page"),
        ("page=" + "9" * 5000, "page"),
        ("page=1e3", "page"),
        ("page_size=٣", "page_size"),
        ("page_size=²", "page_size"),
    ],
)
def test_api_page_numbers_are_whole_numbers_in_ascii_digits(api_client, query, field):
    body = assert_error(api_client.get(f"/api/v1/instance-types/?{query}"), 400, "invalid")
    assert list(body["fields"]) == [field]


def test_api_ledger_page_number_in_superscript_is_a_400(buyer):
    assert_error(bearer_client(buyer).get("/api/v1/billing/ledger/?page=²"), 400, "invalid")


@pytest.mark.parametrize("raw", ["٢", "²", "9" * 5000, "-1", "1e3", "0"])
@pytest.mark.parametrize("path", ["/instance-types/", "/instance-types/h100-80g.1x/", "/offers/"])
def test_pages_show_the_first_page_for_an_odd_page_number(client, path, raw):
    assert InstanceType.objects.active().count() > 50  # the catalog has a second page
    response = client.get(path, {"page": raw})
    assert response.status_code == 200
    assert response.context["page"].number == 1


def test_billing_page_numbers_in_other_scripts_show_the_first_page(client, buyer):
    client.force_login(buyer)
    response = client.get("/billing/", {"usage_page": "²", "ledger_page": "٣"})
    assert response.status_code == 200
    assert response.context["usage"].number == 1 and response.context["ledger"].number == 1


# --- 2. Control characters in lookups and bodies ---------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/instance-types/%00/",
        "/api/v1/instance-types/h100-80g.1x%00/",
        "/api/v1/regions/a%00b/",
        "/api/v1/accelerator-models/%00/",
        "/api/v1/regions/us-east%1B/",
        "/api/v1/offers/%00/",
    ],
)
def test_control_characters_in_api_lookups_are_a_404(api_client, path):
    assert_error(api_client.get(path), 404, "not_found")


def test_control_characters_in_own_object_lookups_are_a_404(buyer):
    client = bearer_client(buyer)
    for path in ("/api/v1/hosts/%00/", "/api/v1/orders/%00/", "/api/v1/billing/statements/2026%00-01/"):
        assert_error(client.get(path), 404, "not_found")


def test_control_characters_in_page_lookups_are_a_404(client, buyer):
    assert client.get("/instance-types/%00/").status_code == 404
    assert client.get("/instance-types/h100%1B/").status_code == 404
    client.force_login(buyer)
    response = client.get("/billing/statements/%00/", follow=True)
    assert response.status_code == 200 and "A month is YYYY-MM." in response.content.decode()


def test_nul_in_a_json_string_is_a_400_naming_the_field(buyer):
    response = bearer_client(buyer).post(
        "/api/v1/quotes/", {"instance_type": "l4-24g.1x", "region": "us\u0000east"}, format="json"
    )
    body = assert_error(response, 400, "invalid")
    assert body["fields"] == {"region": ["Control characters (such as NUL) are not allowed."]}


def test_control_characters_deep_in_a_body_are_named_by_their_path(buyer):
    response = bearer_client(buyer).post(
        "/api/v1/quotes/", {"requirements": {"accelerator_kinds": ["gpu", "c\u001bpu"]}}, format="json"
    )
    body = assert_error(response, 400, "invalid")
    assert body["fields"] == {"requirements.accelerator_kinds.1": ["Control characters (such as NUL) are not allowed."]}


def test_a_lone_surrogate_is_refused_before_it_reaches_the_database(buyer, running):
    body = json.dumps({"instance": running.pk, "category": "performance", "description": "slow \ud800"})
    response = bearer_client(buyer).generic("POST", "/api/v1/problem-reports/", body, content_type="application/json")
    assert assert_error(response, 400, "invalid")["fields"] == {
        "description": ["Control characters (such as NUL) are not allowed."]
    }
    assert not ProblemReport.objects.exists()


def test_escape_sequences_are_not_stored(buyer, running):
    response = bearer_client(buyer).post(
        "/api/v1/problem-reports/",
        {"instance": running.pk, "category": "performance", "description": "\u001b[2J\u001b[31mslow"},
        format="json",
    )
    assert_error(response, 400, "invalid")
    assert not ProblemReport.objects.exists()


def test_nul_in_a_key_the_database_would_store_is_a_400(approved_host):
    """Heartbeat usage is stored as JSON: PostgreSQL refuses \\u0000 in jsonb, even in a key."""
    credential = _host_credential(approved_host)
    response = Client().post(
        "/api/v1/agent/heartbeat/",
        json.dumps({"instances": [{"id": 1, "status": "running", "usage": {"gpu\u0000": 1.0}}]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {credential}",
    )
    body = assert_error(response, 400, "invalid")
    assert list(body["fields"]) == ["instances.0.usage.gpu\\u0000"]


def test_control_characters_in_a_form_encoded_api_body_are_a_400(buyer):
    response = bearer_client(buyer).post("/api/v1/quotes/", {"instance_type": "l4\x00"})
    assert assert_error(response, 400, "invalid")["fields"] == {
        "instance_type": ["Control characters (such as NUL) are not allowed."]
    }


def test_tabs_and_newlines_are_text(buyer, running):
    response = bearer_client(buyer).post(
        "/api/v1/problem-reports/",
        {"instance": running.pk, "category": "performance", "description": "slow\r\n\tsince noon ünïcode"},
        format="json",
    )
    assert response.status_code == 201, response.content


def test_nul_in_staff_form_fields_is_a_form_error(client, staff, buyer):
    client.force_login(staff)
    response = client.post(
        reverse("moderation"), {"action": "suspend_buyer", "target": f"{buyer.email}\x00", "reason": "x"}, follow=True
    )
    assert response.status_code == 200 and "Control characters" in response.content.decode()
    response = client.post(
        reverse("billing:staff_adjustments"),
        {"action": "credit", "email": buyer.email, "amount": "5.00", "reason": "sorry\x00"},
        follow=True,
    )
    assert response.status_code == 200 and "Control characters" in response.content.decode()


def test_nul_in_a_report_answer_is_a_form_error(client, buyer, running):
    client.force_login(buyer)
    response = client.post(
        reverse("orders:instance_report", args=[running.pk]),
        {"category": "performance", "description": "slow\x00"},
        follow=True,
    )
    assert response.status_code == 200 and "Control characters" in response.content.decode()
    assert not ProblemReport.objects.exists()


# --- 3. Deeply nested bodies ----------------------------------------------------------------------


def test_a_hundred_thousand_nested_lists_are_a_400(buyer):
    body = "[" * 100_000 + "]" * 100_000
    response = bearer_client(buyer).generic("POST", "/api/v1/quotes/", body, content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_nesting_deeper_than_32_levels_is_a_400(buyer):
    nested: object = "gpu"
    for _ in range(33):
        nested = [nested]
    response = bearer_client(buyer).post("/api/v1/quotes/", {"requirements": nested}, format="json")
    body = assert_error(response, 400, "parse_error")
    assert "32" in body["detail"]


def test_32_levels_are_parsed():
    nested: object = []
    for _ in range(31):
        nested = [nested]
    assert body_problem(nested) is None
    assert body_problem([nested]).too_deep


# --- 4. Months and dates out of range --------------------------------------------------------------


@pytest.mark.parametrize("month", ["9999-12", "0000-01", _arabic("2026-01"), "2026-13", "99999-01"])
def test_statement_months_out_of_range_are_a_400(buyer, month):
    body = assert_error(bearer_client(buyer).get(f"/api/v1/billing/statements/{month}/"), 400, "invalid")
    assert body["fields"] == {"month": ["Use YYYY-MM."]}


def test_statement_page_for_year_9999_december_is_an_error_message(client, buyer):
    client.force_login(buyer)
    response = client.get("/billing/statements/9999-12/", follow=True)
    assert response.status_code == 200 and "A month is YYYY-MM." in response.content.decode()


def test_a_maintenance_window_past_year_9999_in_utc_is_a_form_error(client, supplier, approved_host):
    """9999-12-31T23:00-05:00 is year 10000 in UTC: stored, it would break every page showing it."""
    client.force_login(supplier)
    response = client.post(
        f"/supplier/hosts/{approved_host.pk}/maintenance/",
        {"starts_at": "9999-12-31T22:00:00-05:00", "ends_at": "9999-12-31T23:00:00-05:00", "reason": "x"},
        follow=True,
    )
    assert response.status_code == 200 and "Out of range." in response.content.decode()
    assert not MaintenanceWindow.objects.exists()
    assert client.get(f"/supplier/hosts/{approved_host.pk}/").status_code == 200


# --- 5. Money and ids typed into pages ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("25", "25"), ("25.5", "25.5"), (" 25.00 ", "25.00"), ("-3.25", "-3.25"), ("0.01", "0.01")],
)
def test_money_is_plain_decimal_text(text, expected):
    assert parse_money(text) == Decimal(expected)


@pytest.mark.parametrize(
    "text",
    ["NaN", "sNaN", "Infinity", "-Infinity", "inf", "1e999", "1E+2", "1e2", "٣٠", "10.005", "1,000", "$5", "", None],
)
def test_anything_else_is_not_money(text):
    assert parse_money(text) is None


NOT_MONEY = ["NaN", "1e999", "-Infinity", "1E+2", "sNaN", "٣٠"]


@pytest.mark.parametrize("amount", NOT_MONEY)
def test_top_up_amounts_that_are_not_plain_decimals_are_a_form_error(client, buyer, stripe_api, amount):
    client.force_login(buyer)
    response = client.post("/billing/", {"amount": amount})
    assert response.status_code == 200
    assert "Top up between" in response.content.decode()
    assert not TopUp.objects.exists() and stripe_api.requests == []


@pytest.mark.parametrize("amount", NOT_MONEY)
def test_staff_credit_amounts_that_are_not_plain_decimals_are_a_form_error(client, staff, buyer, amount):
    client.force_login(staff)
    before = wallet_balance(buyer)
    response = client.post(
        reverse("billing:staff_adjustments"),
        {"action": "credit", "email": buyer.email, "amount": amount, "reason": "Goodwill"},
        follow=True,
    )
    assert response.status_code == 200 and "dollars and cents" in response.content.decode()
    assert wallet_balance(buyer) == before


@pytest.mark.parametrize("credit", NOT_MONEY)
def test_report_credits_that_are_not_plain_decimals_are_a_form_error(client, staff, buyer, running, credit):
    report = ProblemReport.objects.create(buyer=buyer, instance=running, category="performance", description="Slow")
    client.force_login(staff)
    response = client.post(
        reverse("orders:report_detail", args=[report.pk]),
        {"action": "resolve", "credit": credit, "reason": "Checked"},
        follow=True,
    )
    assert response.status_code == 200 and "whole cents" in response.content.decode()
    report.refresh_from_db()
    assert report.status == "open" and report.credit_amount is None


@pytest.mark.parametrize("target", ["1e5", "NaN", "9" * 30, "\x00", "-1"])
def test_moderation_ids_that_are_not_whole_numbers_are_a_form_error(client, staff, approved_host, target):
    client.force_login(staff)
    response = client.post(
        reverse("moderation"), {"action": "delist_host", "target": target, "reason": "Abuse"}, follow=True
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "Enter the host id (a whole number)." in text or "Control characters" in text
    assert Offer.objects.filter(host=approved_host).exists()


def test_moderation_ids_in_other_scripts_do_not_name_a_host(client, staff, approved_host):
    client.force_login(staff)
    target = str(approved_host.pk).translate(ARABIC_DIGITS)
    response = client.post(
        reverse("moderation"), {"action": "delist_host", "target": target, "reason": "Abuse"}, follow=True
    )
    assert "Enter the host id (a whole number)." in response.content.decode()
    assert Offer.objects.filter(host=approved_host).exists()


@pytest.mark.parametrize("record_id", ["abc", "1e3", "9" * 30, "²"])
def test_staff_refund_of_a_malformed_usage_record_id_is_a_form_error(client, staff, record_id):
    client.force_login(staff)
    response = client.post(
        reverse("billing:staff_adjustments"),
        {"action": "refund", "usage_record": record_id, "reason": "r"},
        follow=True,
    )
    assert response.status_code == 200 and "Enter the usage record id" in response.content.decode()


# --- 6. Malformed Stripe events, validly signed ----------------------------------------------------


@pytest.fixture
def top_up(stripe_api, buyer):
    return top_up_create(user=buyer, amount=Decimal("25"), success_url="http://x/s", cancel_url="http://x/c")


@pytest.mark.parametrize(
    ("event_type", "obj"),
    [
        ("charge.refunded", None),  # no data.object at all
        ("charge.refunded", "ch_1"),
        ("charge.refunded", {"payment_intent": "pi_123", "amount_refunded": 100}),  # no id
        ("charge.refunded", {"id": "ch_1", "payment_intent": "pi_123", "amount_refunded": "abc"}),
        ("charge.refunded", {"id": "ch_1", "payment_intent": "pi_123", "amount_refunded": 1.5}),
        ("charge.refunded", {"id": "ch_1", "payment_intent": "pi_123", "amount_refunded": 10**30}),
        ("charge.dispute.created", {"id": "dp_1", "payment_intent": "pi_123", "amount": "100"}),
        ("checkout.session.completed", {"payment_status": "paid", "metadata": {"top_up_id": "abc"}}),
        ("checkout.session.completed", {"payment_status": "paid", "metadata": ["top_up_id"]}),
        ("payment_intent.succeeded", {"id": "pi_9", "metadata": {"top_up_id": "9" * 30}}),
        ("payment_intent.succeeded", {"id": "pi_9", "metadata": {"top_up_id": "TOP_UP_IN_ARABIC_DIGITS"}}),
    ],
)
def test_malformed_events_are_recorded_unhandled(client, top_up, buyer, event_type, obj):
    if isinstance(obj, dict) and obj.get("metadata") == {"top_up_id": "TOP_UP_IN_ARABIC_DIGITS"}:
        obj = {**obj, "metadata": {"top_up_id": _arabic(top_up.pk)}}
    payload = event("evt_bad", event_type, obj)
    if obj is None:
        del payload["data"]["object"]
    before = wallet_balance(buyer)
    response = post_webhook(client, payload)
    assert response.status_code == 200, response.content
    assert response.json() == {"received": True, "handled": False}
    assert StripeEvent.objects.get(event_id="evt_bad").handled is False
    assert wallet_balance(buyer) == before
    top_up.refresh_from_db()
    assert top_up.status == "pending"


@pytest.mark.parametrize(
    "payload",
    [
        {"object": "event", "type": "charge.refunded", "data": {"object": {}}},  # no id
        {"id": "evt_x", "object": "event", "data": {"object": {}}},  # no type
        {"id": 5, "object": "event", "type": "charge.refunded", "data": {"object": {}}},
        {"id": "evt_" + "x" * 300, "object": "event", "type": "charge.refunded", "data": {"object": {}}},
    ],
)
def test_signed_bodies_that_are_not_events_are_a_400(client, stripe_api, payload):
    assert_error(post_webhook(client, payload), 400, "invalid")
    assert not StripeEvent.objects.exists()


def test_an_event_with_nul_in_a_field_we_do_not_read_still_credits(client, top_up, buyer):
    payload = event(
        "evt_nul",
        "checkout.session.completed",
        {
            "payment_status": "paid",
            "payment_intent": "pi_123",
            "metadata": {"top_up_id": str(top_up.pk)},
            "customer_details": {"name": "Ann\u0000 \ud800"},
        },
    )
    before = wallet_balance(buyer)
    response = post_webhook(client, payload)
    assert response.json() == {"received": True, "handled": True}
    assert wallet_balance(buyer) == before + 25
    stored = StripeEvent.objects.get(event_id="evt_nul").payload
    assert stored["data"]["object"]["customer_details"]["name"] == "Ann\ufffd \ufffd"


def test_a_signed_event_nested_too_deep_is_a_400(client, stripe_api):
    body = '{"id": "evt_deep", "type": "x", "data": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = client.generic(
        "POST",
        reverse("billing:stripe_webhook"),
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(body.encode(), "whsec_test_secret", int(time.time())),
    )
    assert_error(response, 400, "invalid")


# --- 7. A row gone while we waited for its lock ----------------------------------------------------


@pytest.mark.parametrize(
    "lock",
    [
        lambda: host_lock(host_id=0),
        lambda: organization_lock(organization_id=0),
        lambda: instance_lock(instance_id=0),
        lambda: instance_and_host_lock(instance_id=0),
        lambda: problem_report_lock(report_id=0),
        lambda: ledger_account_lock(account_id=0),
        lambda: payout_lock(payout_id=0),
        lambda: user_lock(user_id=0),
    ],
)
def test_locking_a_row_that_is_gone_is_a_404(lock):
    with transaction.atomic(), pytest.raises(NotFound) as error:
        lock()
    assert error.value.status_code == 404


def test_updating_a_host_deleted_meanwhile_is_a_404(supplier_org):
    host = HostFactory(organization=supplier_org, approved=False)
    stale = Host.objects.get(pk=host.pk)
    hosts.host_delete(host=host)
    with pytest.raises(NotFound):
        hosts.host_update(host=stale, name="renamed")


@pytest.mark.django_db(transaction=True)
def test_a_patch_waiting_on_a_host_deleted_by_a_concurrent_delete_gets_a_404(catalog):
    """DELETE /hosts/{id}/ commits while PATCH waits for the host row lock: the PATCH is a 404."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks wait only on PostgreSQL")
    organization = OrganizationFactory()
    owner = organization.memberships.get().user
    host = HostFactory(organization=organization, approved=False, **l4_host_data())
    client = bearer_client(owner)
    result = {}

    def patch() -> None:
        try:
            result["response"] = client.patch(f"/api/v1/hosts/{host.pk}/", {"name": "renamed"}, format="json")
        finally:
            connections.close_all()

    with transaction.atomic():
        host_lock(host_id=host.pk)  # the DELETE's transaction holds the row...
        waiter = threading.Thread(target=patch)
        waiter.start()
        _wait_for_a_lock_wait()  # ...while the PATCH waits for it
        hosts.host_delete(host=host)
    waiter.join(timeout=30)
    assert_error(result["response"], 404, "not_found")
    assert not Host.objects.filter(pk=host.pk).exists()


def _wait_for_a_lock_wait(timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # else the first look is kept for the transaction
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("the PATCH never waited for the host lock")


def _host_credential(host) -> str:
    owner = host.organization.memberships.get(role="owner").user
    _host, credential = agent_register(token=host_registration_token_issue(host=host, user=owner))
    return credential


# --- Bidi controls ----------------------------------------------------------------------------------


@pytest.mark.parametrize("character", ["\u202e", "\u202a", "\u2066", "\u2069"])
def test_bidi_overrides_are_refused_in_a_command_sent_to_the_agent(buyer, approved_host, character):
    """U+202E makes `rm -rf ~ #gnp.tac` display as `cat.png# ~ fr- mr`: the command a buyer, the
    supplier or staff reads is not the command that runs."""
    response = bearer_client(buyer).post(
        "/api/v1/orders/",
        {"instance_type": "h100-80g.1x", "image": "ubuntu:24.04", "command": f"echo {character}gnp.tac"},
        format="json",
    )
    assert_error(response, 400, "invalid")


def test_right_to_left_text_itself_is_text(buyer, running):
    response = bearer_client(buyer).post(
        "/api/v1/problem-reports/",
        {"instance": running.pk, "category": "performance", "description": "איטי מאוד — بطيء جدا"},
        format="json",
    )
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("description", ["Fast GPUs\x00", "Fast \u202egnp.exe", "x" * 2001])
def test_an_organization_description_from_the_page_is_clean_text(client, supplier, description):
    client.force_login(supplier)
    organization = supplier.membership.organization
    form = {
        "name": organization.name,
        "contact_name": "A",
        "contact_email": "a@example.com",
        "country": "US",
        "payout_country": "US",
        "description": description,
    }
    response = client.post(reverse("suppliers:onboarding"), form)
    assert response.status_code == 200 and "description" in response.context["form"].errors
    organization.refresh_from_db()
    assert organization.description != description
