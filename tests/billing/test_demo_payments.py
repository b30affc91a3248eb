"""The demo payment server (billing/demo_stripe.py) end to end, without a browser: the platform runs
as a live server, a buyer posts the top-up form over HTTP, opens the hosted checkout page it is sent
to, and pays or cancels there; the server tells the platform with a signed webhook. And the plain
"not available" answers when Stripe is not configured or cannot be reached."""

import re
import socket
import time

import pytest
import requests
import stripe
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from billing.demo_stripe import DemoStripeServer, form_decode, sign
from billing.models import StripeEvent, TopUp
from billing.selectors import wallet_balance
from billing.stripe_gateway import client as stripe_client
from billing.stripe_gateway import payments_configured
from tests.conftest import bearer_client
from tests.factories import UserFactory

SECRET = "whsec_demo_secret"
CSRF_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')
CARD_VALUE = re.compile(r'name="card"[^>]*value="([^"]*)"')
UNAVAILABLE = "Card top-ups are not available on this platform right now."
live = pytest.mark.django_db(transaction=True)


def demo_server(live_server, settings, *, webhook_secret: str = SECRET) -> DemoStripeServer:
    """A demo server that tells the live platform, and the platform pointed at it."""
    server = DemoStripeServer(
        webhook_url=live_server.url + reverse("billing:stripe_webhook"), webhook_secret=webhook_secret
    )
    settings.STRIPE_API_BASE = server.url
    settings.STRIPE_SECRET_KEY = "sk_test_demo"
    settings.STRIPE_WEBHOOK_SECRET = SECRET
    return server


@pytest.fixture
def demo(live_server, settings):
    with demo_server(live_server, settings) as server:
        yield server


@pytest.fixture
def buyer_browser(buyer) -> requests.Session:
    """An HTTP session logged in as the buyer (a Django session made by the test client)."""
    django_client = Client()
    django_client.force_login(buyer)
    browser = requests.Session()
    name = django_settings.SESSION_COOKIE_NAME
    browser.cookies.set(name, django_client.cookies[name].value)
    return browser


def start_top_up(browser: requests.Session, live_server, amount: str = "25.00") -> str:
    """Post the billing page's top-up form as a browser would; the address it redirects to."""
    page = browser.get(f"{live_server.url}/billing/")
    assert page.status_code == 200 and "Pay with Stripe" in page.text
    response = browser.post(
        f"{live_server.url}/billing/",
        data={"amount": amount, "csrfmiddlewaretoken": CSRF_TOKEN.search(page.text).group(1)},
        allow_redirects=False,
    )
    assert response.status_code == 302, response.text
    return response.headers["Location"]


def checkout_forms(browser: requests.Session, checkout_url: str) -> tuple[str, list[str], str]:
    """The hosted checkout page: its text, its forms' actions (pay, cancel) and the card it offers."""
    page = browser.get(checkout_url)
    assert page.status_code == 200
    card = CARD_VALUE.search(page.text)
    return page.text, FORM_ACTION.findall(page.text), card.group(1) if card else ""


# --- paying through the hosted checkout page ----------------------------------------------------


@live
def test_a_buyer_pays_on_the_demo_checkout_page_and_is_credited_once(catalog, demo, live_server, buyer, buyer_browser):
    # given a top-up started from the billing page
    before = wallet_balance(buyer)
    checkout_url = start_top_up(buyer_browser, live_server)
    top_up = TopUp.objects.get()
    assert checkout_url == f"{demo.url}/checkout/{top_up.stripe_checkout_session_id}" == top_up.checkout_url
    text, (pay, cancel), card = checkout_forms(buyer_browser, checkout_url)
    assert "Demo payment — no real card is charged." in text and "$25.00" in text
    assert card == "4242 4242 4242 4242" and pay.endswith("/pay") and cancel.endswith("/cancel")

    # when the buyer presses Pay
    paid = buyer_browser.post(demo.url + pay, data={"card": card}, allow_redirects=False)

    # then the platform was told before the browser returns to it, and shows the payment
    assert paid.status_code == 303 and paid.headers["Location"] == f"{live_server.url}/billing/?top_up=success"
    assert wallet_balance(buyer) == before + 25
    top_up.refresh_from_db()
    assert top_up.status == "succeeded" and top_up.stripe_payment_intent_id.startswith("pi_")
    landing = buyer_browser.get(paid.headers["Location"])
    assert "Payment received" in landing.text

    # and pressing Pay again sends the same event again: nothing more is credited
    again = buyer_browser.post(demo.url + pay, data={"card": card}, allow_redirects=False)
    assert again.status_code == 303
    assert wallet_balance(buyer) == before + 25
    (event,) = StripeEvent.objects.all()
    assert event.type == "checkout.session.completed" and event.handled
    assert stripe_client().v1.checkout.sessions.retrieve(top_up.stripe_checkout_session_id).payment_status == "paid"
    assert "This payment is complete." in buyer_browser.get(checkout_url).text


@live
def test_cancel_returns_to_the_platform_and_credits_nothing(catalog, demo, live_server, buyer, buyer_browser):
    before = wallet_balance(buyer)
    checkout_url = start_top_up(buyer_browser, live_server)
    _, (_, cancel), _ = checkout_forms(buyer_browser, checkout_url)
    cancelled = buyer_browser.post(demo.url + cancel, allow_redirects=False)
    assert cancelled.status_code == 303
    assert cancelled.headers["Location"] == f"{live_server.url}/billing/?top_up=cancelled"
    assert "Top-up cancelled: nothing was charged." in buyer_browser.get(cancelled.headers["Location"]).text
    assert wallet_balance(buyer) == before and not StripeEvent.objects.exists()
    assert TopUp.objects.get().status == "pending"


@live
def test_a_declined_card_credits_nothing(catalog, demo, live_server, buyer, buyer_browser):
    before = wallet_balance(buyer)
    checkout_url = start_top_up(buyer_browser, live_server)
    _, (pay, _), _ = checkout_forms(buyer_browser, checkout_url)
    declined = buyer_browser.post(demo.url + pay, data={"card": "4000 0000 0000 0002"}, allow_redirects=False)
    assert declined.status_code == 402 and "Your card was declined" in declined.text
    assert wallet_balance(buyer) == before and not StripeEvent.objects.exists()


@live
def test_a_webhook_signed_with_another_secret_credits_nothing(catalog, live_server, settings, buyer, buyer_browser):
    # given a payment server that signs with a secret the platform does not hold (a forger)
    before = wallet_balance(buyer)
    with demo_server(live_server, settings, webhook_secret="whsec_forged") as forger:
        checkout_url = start_top_up(buyer_browser, live_server)
        _, (pay, _), card = checkout_forms(buyer_browser, checkout_url)
        # when the buyer pays
        response = buyer_browser.post(forger.url + pay, data={"card": card}, allow_redirects=False)
    # then the platform refused the event: the page says so and nothing is credited
    assert response.status_code == 502 and "refused the payment notice (HTTP 400)" in response.text
    assert wallet_balance(buyer) == before and not StripeEvent.objects.exists()
    assert TopUp.objects.get().status == "pending"


@live
def test_the_event_credits_the_top_ups_owner_whoever_pays(catalog, demo, live_server, buyer, buyer_browser):
    """The checkout link is a bearer link, as Stripe's: another person paying it pays for the buyer."""
    other = UserFactory(email="other@example.com")
    before, others_before = wallet_balance(buyer), wallet_balance(other)
    checkout_url = start_top_up(buyer_browser, live_server, amount="10.00")
    _, (pay, _), card = checkout_forms(requests.Session(), checkout_url)
    assert requests.post(demo.url + pay, data={"card": card}, allow_redirects=False).status_code == 303
    assert wallet_balance(buyer) == before + 10 and wallet_balance(other) == others_before


# --- the server's API, through the official library ----------------------------------------------


@pytest.mark.django_db
def test_idempotency_keys_are_replayed_and_refused_with_other_parameters(settings):
    with DemoStripeServer() as server:
        settings.STRIPE_API_BASE, settings.STRIPE_SECRET_KEY = server.url, "sk_test_demo"
        params = {
            "mode": "payment",
            "line_items": [{"quantity": 2, "price_data": {"currency": "usd", "unit_amount": 1250}}],
            "success_url": "http://x/s",
            "cancel_url": "http://x/c",
        }
        first = stripe_client().v1.checkout.sessions.create(params=params, options={"idempotency_key": "k-1"})
        again = stripe_client().v1.checkout.sessions.create(params=params, options={"idempotency_key": "k-1"})
        assert first.id == again.id and first.amount_total == 2500 and first.currency == "usd"
        assert first.url == f"{server.url}/checkout/{first.id}"
        changed = {**params, "cancel_url": "http://x/other"}
        with pytest.raises(stripe.IdempotencyError):
            stripe_client().v1.checkout.sessions.create(params=changed, options={"idempotency_key": "k-1"})
        with pytest.raises(stripe.InvalidRequestError):
            stripe_client().v1.checkout.sessions.retrieve("cs_test_unknown")
        malformed = {**params, "line_items": [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": "x"}}]}
        with pytest.raises(stripe.InvalidRequestError):
            stripe_client().v1.checkout.sessions.create(params=malformed)
        assert len(server.sessions) == 1


@pytest.mark.django_db
def test_unknown_checkout_pages_are_404(settings):
    with DemoStripeServer() as server:
        assert requests.get(f"{server.url}/checkout/cs_test_nope").status_code == 404
        assert requests.post(f"{server.url}/checkout/cs_test_nope/pay", data={"card": "4242"}).status_code == 404
        assert requests.get(f"{server.url}/").status_code == 200


def test_signatures_are_what_stripe_verifies():
    payload = b'{"id": "evt_1", "object": "event"}'
    header = sign(payload, SECRET, int(time.time()))
    assert stripe.Webhook.construct_event(payload, header, SECRET)["id"] == "evt_1"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, "whsec_other")


def test_form_decoding_nests_as_stripe_encodes():
    decoded = form_decode("line_items[0][price_data][unit_amount]=100&metadata[top_up_id]=7&mode=payment")
    assert decoded == {
        "line_items": {"0": {"price_data": {"unit_amount": "100"}}},
        "metadata": {"top_up_id": "7"},
        "mode": "payment",
    }


# --- where it may run -----------------------------------------------------------------------------


def test_it_listens_on_127_0_0_1_only():
    with DemoStripeServer() as server:
        assert server.server.server_address[0] == "127.0.0.1" and server.url.startswith("http://127.0.0.1:")


def test_it_refuses_to_start_under_production_settings(settings):
    settings.PRODUCTION = True
    with pytest.raises(ImproperlyConfigured):
        DemoStripeServer()
    with pytest.raises(CommandError, match="production"):
        call_command("demo_stripe", "--port", "0")


# --- payments not configured, provider unreachable --------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("missing", ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"])
def test_without_stripe_keys_the_page_and_the_api_say_top_ups_are_unavailable(settings, client, buyer, missing):
    setattr(settings, missing, "")
    assert not payments_configured()
    client.force_login(buyer)

    page = client.get(reverse("billing:buyer"))
    body = page.content.decode()
    assert page.status_code == 200 and UNAVAILABLE in body and "Pay with Stripe" not in body

    posted = client.post(reverse("billing:buyer"), {"amount": "25.00"})  # a page opened before the keys went
    assert posted.status_code == 200 and UNAVAILABLE in posted.content.decode()

    response = bearer_client(buyer).post("/api/v1/billing/top-ups/", {"amount": "25.00"}, format="json")
    assert response.status_code == 502 and response.json()["code"] == "payments_not_configured"
    assert response.json()["detail"] == UNAVAILABLE
    assert not TopUp.objects.exists()


@pytest.mark.django_db
def test_an_unreachable_provider_is_a_plain_message_on_the_page(settings, client, buyer):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        settings.STRIPE_API_BASE = f"http://127.0.0.1:{closed.getsockname()[1]}"
    client.force_login(buyer)
    response = client.post(reverse("billing:buyer"), {"amount": "25.00"})
    body = response.content.decode()
    assert response.status_code == 200
    assert "The payment provider is unavailable; nothing was charged. Try again." in body
    assert "Traceback" not in body and "APIConnectionError" not in body
    assert "Pay with Stripe" in body  # configured, so the form stays for another try
    assert list(TopUp.objects.values_list("status", flat=True)) == ["failed"]
