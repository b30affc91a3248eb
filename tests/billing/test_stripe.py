"""Top-ups, webhooks and payouts: the real stripe library against a local Stripe-speaking server."""

import json
import socket
import time
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.ledger import platform_account, post_transaction, supplier_payable
from billing.models import LedgerAccount, LedgerTransaction, Payout, StripeEvent, TopUp
from billing.payments import top_up_create
from billing.payouts import connect_onboarding_link, payout_transfer, payouts_create
from billing.selectors import account_balance, wallet_balance
from marketplace import webhooks
from marketplace.models import WebhookDelivery
from tests.conftest import bearer_client
from tests.support.fake_stripe import FakeStripe, sign

pytestmark = pytest.mark.django_db
SECRET = "whsec_test_secret"


@pytest.fixture
def stripe_api(settings):
    with FakeStripe() as fake:
        settings.STRIPE_API_BASE = fake.url
        settings.STRIPE_SECRET_KEY = "sk_test_fake"
        settings.STRIPE_WEBHOOK_SECRET = SECRET
        yield fake


def event(event_id, event_type, obj):
    return {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "data": {"object": obj},
        "livemode": False,
        "created": int(time.time()),
        "api_version": "2024-06-20",
    }


def post_webhook(client, payload: dict, *, signature=None, secret=SECRET, timestamp=None):
    body = json.dumps(payload).encode()
    header = signature if signature is not None else sign(body, secret, timestamp or int(time.time()))
    return client.generic(
        "POST", reverse("billing:stripe_webhook"), body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header
    )


def paid(top_up, event_id="evt_1"):
    return event(
        event_id,
        "checkout.session.completed",
        {
            "id": top_up.stripe_checkout_session_id,
            "object": "checkout.session",
            "payment_status": "paid",
            "payment_intent": "pi_123",
            "client_reference_id": str(top_up.pk),
            "metadata": {"top_up_id": str(top_up.pk)},
        },
    )


def test_top_up_creates_a_checkout_session_with_our_idempotency_key(stripe_api, buyer):
    client = bearer_client(buyer)
    response = client.post("/api/v1/billing/top-ups/", {"amount": "25.00"}, format="json")
    assert response.status_code == 201, response.content
    top_up = TopUp.objects.get()
    assert response.json()["checkout_url"] == f"https://checkout.stripe.test/{top_up.stripe_checkout_session_id}"
    (call,) = stripe_api.calls("/v1/checkout/sessions")
    assert call["idempotency_key"] == f"top-up:{top_up.pk}"
    assert call["authorization"] == "Bearer sk_test_fake"
    assert call["body"]["line_items"]["0"]["price_data"]["unit_amount"] == "2500"
    assert call["body"]["metadata"]["top_up_id"] == str(top_up.pk)
    assert top_up.status == "pending"


@pytest.mark.parametrize("amount", ["1", "0", "-5", "20000", "10.005", "ten"])
def test_bad_top_up_amounts(stripe_api, buyer, amount):
    response = bearer_client(buyer).post("/api/v1/billing/top-ups/", {"amount": amount}, format="json")
    assert response.status_code == 400 and "amount" in response.json()["fields"]
    assert stripe_api.requests == []


def test_stripe_down_is_a_502_and_charges_nothing(stripe_api, buyer):
    stripe_api.fail_next = [(500, {"error": {"type": "api_error", "message": "boom"}})] * 3
    response = bearer_client(buyer).post("/api/v1/billing/top-ups/", {"amount": "25.00"}, format="json")
    assert response.status_code == 502 and response.json()["code"] == "payment_provider_error"
    keys = {c["idempotency_key"] for c in stripe_api.calls("/v1/checkout/sessions")}
    assert len(keys) == 1  # the library's retries reused our key


def test_webhook_credits_the_wallet_once(stripe_api, buyer, client):
    top_up = top_up_create(user=buyer, amount=Decimal("25"), success_url="http://x/s", cancel_url="http://x/c")
    before = wallet_balance(buyer)
    assert post_webhook(client, paid(top_up)).status_code == 200
    assert post_webhook(client, paid(top_up)).status_code == 200  # the same event again
    assert post_webhook(client, paid(top_up, event_id="evt_2")).status_code == 200  # another event, same payment
    assert wallet_balance(buyer) == before + 25
    top_up.refresh_from_db()
    assert top_up.status == "succeeded" and top_up.stripe_payment_intent_id == "pi_123"
    assert StripeEvent.objects.count() == 2
    clearing = platform_account(LedgerAccount.Kind.STRIPE_CLEARING)
    assert account_balance(clearing) == Decimal("-25")


@pytest.mark.parametrize(
    ("signature", "timestamp_offset"),
    [("t=1,v1=deadbeef", 0), ("", 0), ("garbage", 0), (None, -3600)],
)
def test_bad_or_stale_signatures_are_400_with_no_effect(stripe_api, buyer, client, signature, timestamp_offset):
    top_up = top_up_create(user=buyer, amount=Decimal("25"), success_url="http://x/s", cancel_url="http://x/c")
    before = wallet_balance(buyer)
    response = post_webhook(client, paid(top_up), signature=signature, timestamp=int(time.time()) + timestamp_offset)
    assert response.status_code == 400 and response.json()["code"] == "invalid_signature"
    assert wallet_balance(buyer) == before and not StripeEvent.objects.exists()


def test_one_good_signature_among_several_is_accepted(stripe_api, buyer, client):
    top_up = top_up_create(user=buyer, amount=Decimal("25"), success_url="http://x/s", cancel_url="http://x/c")
    payload = paid(top_up)
    body = json.dumps(payload).encode()
    now = int(time.time())
    good = sign(body, SECRET, now).split(",")[1]
    header = f"t={now},v1={'0' * 64},{good},v0=ignored"
    assert post_webhook(client, payload, signature=header).status_code == 200
    assert TopUp.objects.get().status == "succeeded"


def test_unknown_events_are_acknowledged_and_ignored(stripe_api, client):
    response = post_webhook(client, event("evt_x", "customer.created", {"id": "cus_1"}))
    assert response.status_code == 200
    assert StripeEvent.objects.get().handled is False


def test_refunds_and_disputes_take_money_back(stripe_api, buyer, client):
    top_up = top_up_create(user=buyer, amount=Decimal("40"), success_url="http://x/s", cancel_url="http://x/c")
    post_webhook(client, paid(top_up))
    after_top_up = wallet_balance(buyer)
    refund = {"id": "ch_1", "object": "charge", "payment_intent": "pi_123", "amount_refunded": 1000}
    post_webhook(client, event("evt_r1", "charge.refunded", refund))
    post_webhook(client, event("evt_r2", "charge.refunded", {**refund, "amount_refunded": 1500}))  # cumulative
    assert wallet_balance(buyer) == after_top_up - Decimal("15")
    post_webhook(
        client,
        event(
            "evt_d1",
            "charge.dispute.created",
            {"id": "dp_1", "object": "dispute", "payment_intent": "pi_123", "amount": 500},
        ),
    )
    assert wallet_balance(buyer) == after_top_up - Decimal("20")
    assert buyer.notifications.filter(kind="payment_reversed").count() == 3


def test_supplier_payout_through_connect(stripe_api, supplier_org, supplier):
    webhooks.endpoint_create(user=supplier, url="http://127.0.0.1:9/hooks", events=["payout.paid", "payout.failed"])
    link = connect_onboarding_link(organization=supplier_org, return_url="http://x/r", refresh_url="http://x/f")
    supplier_org.refresh_from_db()
    assert link == f"https://connect.stripe.test/setup/{supplier_org.stripe_account_id}"
    assert stripe_api.calls("/v1/accounts")[0]["idempotency_key"] == f"connect-account:{supplier_org.pk}"
    payable = supplier_payable(supplier_org)
    post_transaction(
        kind="usage",
        key="seed",
        description="earned",
        postings=[
            (platform_account("platform_revenue"), Decimal("-123.456789")),
            (payable, Decimal("123.456789")),
        ],
    )
    (payout,) = payouts_create()
    assert payout.amount == Decimal("123.45")  # whole cents; the rest stays payable
    assert payouts_create() == []  # one pending payout at a time

    stripe_api.fail_next = [(500, {"error": {"type": "api_error", "message": "down"}})] * 3
    with pytest.raises(Exception):  # noqa: B017 - transient: the task retries
        payout_transfer(payout_id=payout.pk)
    assert payout_transfer(payout_id=payout.pk) == "paid"
    assert payout_transfer(payout_id=payout.pk) == "paid"  # no second transfer
    transfers = stripe_api.calls("/v1/transfers")
    assert {t["idempotency_key"] for t in transfers} == {f"payout:{payout.pk}"}
    assert (
        transfers[-1]["body"]["amount"] == "12345"
        and transfers[-1]["body"]["destination"] == supplier_org.stripe_account_id
    )
    assert account_balance(payable) == Decimal("0.006789")
    assert Payout.objects.get().status == "paid"
    (event,) = WebhookDelivery.objects.all()  # told once, though the transfer was asked for three times
    assert event.event_type == "payout.paid" and event.payload["data"]["amount"] == "123.45"


def test_refused_payout_returns_the_money_to_payable(stripe_api, supplier_org):
    supplier_org.stripe_account_id = "acct_broken"
    supplier_org.save()
    payable = supplier_payable(supplier_org)
    post_transaction(
        kind="usage",
        key="seed",
        description="earned",
        postings=[(platform_account("platform_revenue"), Decimal("-50")), (payable, Decimal("50"))],
    )
    (payout,) = payouts_create()
    stripe_api.fail_next = [(400, {"error": {"type": "invalid_request_error", "message": "No such destination"}})]
    assert payout_transfer(payout_id=payout.pk) == "failed"
    assert account_balance(payable) == Decimal("50")
    assert LedgerTransaction.objects.filter(key=f"payout-reversal:{payout.pk}").exists()


def test_a_top_up_the_provider_refuses_leaves_no_pending_row(settings, buyer):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        settings.STRIPE_API_BASE = f"http://127.0.0.1:{closed.getsockname()[1]}"
    response = bearer_client(buyer).post("/api/v1/billing/top-ups/", {"amount": "25.00"}, format="json")
    assert response.status_code == 502 and response.json()["code"] == "payment_provider_error"
    assert "nothing was charged" in response.json()["detail"]
    assert list(TopUp.objects.values_list("status", flat=True)) == ["failed"]
