"""A local server speaking the part of Stripe's API the platform calls (`checkout.sessions` create and
retrieve, Connect `accounts` and `account_links`, `transfers`), for the official stripe library to
talk to (STRIPE_API_BASE points here), with the pages Stripe would host.

Its checkout page takes the test card 4242 4242 4242 4242: Pay marks the session paid, sends the
platform a `checkout.session.completed` event signed as Stripe signs webhooks, and redirects the
browser to the session's success_url; Cancel redirects to its cancel_url. Its Connect page sends a
supplier back to the platform. Nothing is charged and nothing is kept: the state lives in memory.

The zero-setup run starts it (`manage.py demo_stripe`, scripts/run.sh); the tests run it in a thread
(tests/support/fake_stripe.py). It binds 127.0.0.1 only and refuses to start under production
settings. It is a program of its own: it talks to the platform over HTTP only, never to its database.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.template.loader import render_to_string
from django.utils.translation import gettext

from marketplace.money import CURRENCIES, format_money

TEST_CARD = "4242424242424242"
TEST_CARD_SHOWN = "4242 4242 4242 4242"
WEBHOOK_TIMEOUT_SECONDS = 10
SESSION_LIFETIME_SECONDS = 24 * 60 * 60  # as Stripe's Checkout Sessions
API_VERSION = "2024-06-20"

Response = tuple[int, dict[str, Any]]


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """A Stripe-Signature header value, computed with Stripe's scheme (HMAC-SHA256 of `t.payload`),
    which `stripe.Webhook.construct_event` verifies."""
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload.decode()}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def form_decode(raw: str) -> dict[str, Any]:
    """Stripe's form encoding (a[b][0][c]=x) back into nested dicts (list indexes stay keys)."""
    root: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(raw, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # a[b]=1 after a=1: the later, deeper value wins
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return root


def _error(status: int, message: str, *, kind: str = "invalid_request_error", param: str = "") -> Response:
    return status, {"error": {"type": kind, "message": message, **({"param": param} if param else {})}}


def _whole(value: object) -> int | None:
    """A form value that is a non-negative integer, as Stripe parses amounts; else None."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 15:
        return int(value)
    return None


def _new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


def amount_text(cents: int, currency: str) -> str:
    """What the checkout page shows: "$25.00" for a platform currency, "25.00 EUR" otherwise."""
    amount = Decimal(cents) / 100
    for known in CURRENCIES.values():
        if known.stripe_code == currency:
            return format_money(amount, known)
    return f"{amount:.2f} {currency.upper()}"


class DemoStripeServer:
    """The server and its state. Subclasses (the tests' fake) hook in through `intercept`,
    `checkout_url` and `account_link_url`."""

    def __init__(self, *, port: int = 0, webhook_url: str = "", webhook_secret: str = "", log_requests: bool = False):
        if settings.PRODUCTION:
            raise ImproperlyConfigured(
                "The demo payment server does not run under production settings: it accepts a test card "
                "and signs webhooks that credit wallets."
            )
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.log_requests = log_requests  # one line per request on stderr, as http.server writes them
        self.sessions: dict[str, dict[str, Any]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}  # Connect account id -> its latest account link
        self._events: dict[str, dict[str, Any]] = {}  # session id -> its completion event, sent again on a retry
        self._idempotent: dict[tuple[str, str], tuple[str, Response]] = {}  # (path, key) -> (params, response)
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread: threading.Thread | None = None

    # --- running it

    def start(self) -> Self:
        """Serve from a background thread (tests)."""
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- hooks

    def intercept(self, method: str, path: str, body: dict[str, Any], headers: Any) -> Response | None:
        """Called for every API request, under the lock, before anything else: a response to send
        instead, or None. The server itself has none."""
        return None

    def checkout_url(self, session_id: str) -> str:
        return f"{self.url}/checkout/{session_id}"

    def account_link_url(self, account_id: str) -> str:
        return f"{self.url}/connect/setup/{account_id}"

    # --- the API

    def api(self, method: str, path: str, body: dict[str, Any], headers: Any) -> Response:
        """One API request, as Stripe answers it: a POST with an Idempotency-Key seen before gets the
        first response again (or an `idempotency_error` if its parameters differ)."""
        key = headers.get("Idempotency-Key")
        with self._lock:
            intercepted = self.intercept(method, path, body, headers)
            if intercepted is not None:
                return intercepted
            if not (headers.get("Authorization") or "").removeprefix("Bearer ").strip():
                return _error(401, "You did not provide an API key.")
            if method == "GET":
                return self._retrieve(path)
            params = json.dumps(body, sort_keys=True)
            if key and (path, key) in self._idempotent:
                first_params, response = self._idempotent[(path, key)]
                if first_params != params:
                    return _error(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters they were "
                        "first used with.",
                        kind="idempotency_error",
                    )
                return response
            response = self._create(path, body)
            if key and response[0] < 500:
                self._idempotent[(path, key)] = (params, response)
            return response

    def _retrieve(self, path: str) -> Response:
        prefix = "/v1/checkout/sessions/"
        session = self.sessions.get(path.removeprefix(prefix)) if path.startswith(prefix) else None
        if session is None:
            return _error(404, f"No such resource: {path}", param="id")
        return 200, copy.deepcopy(session)

    def _create(self, path: str, body: dict[str, Any]) -> Response:
        if path == "/v1/checkout/sessions":
            return self._session_create(body)
        if path == "/v1/accounts":
            account_id = _new_id("acct")
            self.accounts[account_id] = {}
            return 200, {"id": account_id, "object": "account", "type": body.get("type")}
        if path == "/v1/account_links":
            account_id = str(body.get("account") or "")
            if not account_id:
                return _error(400, "Missing required param: account.", param="account")
            self.accounts[account_id] = {"return_url": body.get("return_url", ""), "created": int(time.time())}
            return 200, {"object": "account_link", "url": self.account_link_url(account_id)}
        if path == "/v1/transfers":
            amount = _whole(body.get("amount"))
            if amount is None or not body.get("currency") or not body.get("destination"):
                return _error(400, "A transfer needs an integer amount, a currency and a destination.")
            return 200, {
                "id": _new_id("tr"),
                "object": "transfer",
                "amount": amount,
                "currency": body["currency"],
                "destination": body["destination"],
                "metadata": body.get("metadata", {}),
            }
        return _error(404, f"Unrecognized request URL (POST: {path}).")

    def _session_create(self, body: dict[str, Any]) -> Response:
        items = body.get("line_items")
        if not isinstance(items, dict) or not items:
            return _error(400, "Missing required param: line_items.", param="line_items")
        total, currencies = 0, set()
        for index, item in items.items():
            price = item.get("price_data") if isinstance(item, dict) else None
            unit = _whole(price.get("unit_amount")) if isinstance(price, dict) else None
            quantity = _whole(item.get("quantity", "1")) if isinstance(item, dict) else None
            if unit is None or quantity is None or not isinstance(price, dict) or not price.get("currency"):
                return _error(400, "Invalid line item.", param=f"line_items[{index}]")
            total += unit * quantity
            currencies.add(str(price["currency"]).lower())
        if len(currencies) != 1:
            return _error(400, "All line items must be in one currency.", param="line_items")
        session_id = _new_id("cs")
        product = items[min(items, key=lambda k: _whole(k) or 0)]["price_data"].get("product_data")
        now = int(time.time())
        self.sessions[session_id] = session = {
            "id": session_id,
            "object": "checkout.session",
            "url": self.checkout_url(session_id),
            "status": "open",
            "payment_status": "unpaid",
            "mode": body.get("mode", "payment"),
            "amount_total": total,
            "currency": currencies.pop(),
            "description": str(product.get("name", "")) if isinstance(product, dict) else "",
            "customer_email": body.get("customer_email"),
            "client_reference_id": body.get("client_reference_id"),
            "metadata": body.get("metadata", {}),
            "payment_intent": None,
            "success_url": body.get("success_url", ""),
            "cancel_url": body.get("cancel_url", ""),
            "livemode": False,
            "created": now,
            "expires_at": now + SESSION_LIFETIME_SECONDS,
        }
        return 200, copy.deepcopy(session)

    # --- the hosted pages

    def checkout_pay(self, session_id: str, card: str) -> tuple[dict[str, Any] | None, str]:
        """Pay an open session with the test card and tell the platform. Returns the session (None:
        no such session) and what went wrong ("" when the platform accepted the event). Paying a
        paid session sends the same event again, as Stripe retries a delivery: the platform applies
        an event id once."""
        with self._lock:
            session = self.sessions.get(session_id)
            if session is None:
                return None, ""
            if session["payment_status"] != "paid":
                if "".join(card.split()) != TEST_CARD:
                    return copy.deepcopy(session), gettext(
                        "Your card was declined. This demo takes only the test card 4242 4242 4242 4242."
                    )
                session.update(status="complete", payment_status="paid", payment_intent=_new_id("pi"), url=None)
                self._events[session_id] = {
                    "id": _new_id("evt"),
                    "object": "event",
                    "type": "checkout.session.completed",
                    "api_version": API_VERSION,
                    "created": int(time.time()),
                    "livemode": False,
                    "data": {"object": copy.deepcopy(session)},
                }
            event, session = self._events[session_id], copy.deepcopy(session)
        return session, self.deliver(event)

    def deliver(self, event: dict[str, Any]) -> str:
        """POST one event to the platform's webhook, signed with the webhook secret. Returns "" when
        it answered 2xx, else what happened."""
        if not self.webhook_url:
            return gettext("No webhook address is configured: the platform was not told.")
        payload = json.dumps(event).encode()
        request = urllib.request.Request(
            self.webhook_url,
            data=payload,
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign(payload, self.webhook_secret, int(time.time())),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS):
                return ""
        except urllib.error.HTTPError as error:
            return gettext("The platform refused the payment notice (HTTP %(status)s).") % {"status": error.code}
        except (OSError, ValueError) as error:
            return gettext("The platform could not be reached at %(url)s (%(error)s).") % {
                "url": self.webhook_url,
                "error": getattr(error, "reason", error),
            }

    def session(self, session_id: str) -> dict[str, Any] | None:
        """A copy of the session, or None."""
        with self._lock:
            session = self.sessions.get(session_id)
            return copy.deepcopy(session) if session is not None else None

    def page(self, page: str, **context: Any) -> str:
        """One of the hosted pages ("checkout", "connect", "index", "missing"), rendered."""
        session = context.get("session")
        if session is not None:
            context["amount"] = amount_text(session["amount_total"], session["currency"])
        return render_to_string("billing/demo_stripe.html", {"page": page, "test_card": TEST_CARD_SHOWN, **context})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        demo = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _api(self, method: str, body: dict[str, Any]) -> None:
                path = urllib.parse.urlsplit(self.path).path
                try:
                    response = demo.api(method, path, body, self.headers)
                except Exception as error:
                    response = _error(500, f"Demo server fault: {error!r}", kind="api_error")
                self._json(response)

            def _json(self, response: Response) -> None:
                headers = {"Request-Id": f"req_{secrets.token_hex(8)}"}
                if key := self.headers.get("Idempotency-Key"):
                    headers["Idempotency-Key"] = key
                self._send(response[0], json.dumps(response[1]).encode(), "application/json", headers)

            def _html(self, status: int, html: str) -> None:
                self._send(status, html.encode(), "text/html; charset=utf-8", {"Cache-Control": "no-store"})

            def _redirect(self, location: str) -> None:
                self._send(303, b"", "text/plain", {"Location": location})

            def _not_found(self) -> None:
                self._html(404, demo.page("missing"))

            def _body(self) -> str:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length).decode("utf-8", "replace") if length > 0 else ""

            def do_GET(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                parts = path.strip("/").split("/")
                if path.startswith("/v1/"):
                    self._api("GET", {})
                elif len(parts) == 2 and parts[0] == "checkout" and (session := demo.session(parts[1])):
                    self._html(200, demo.page("checkout", session=session))
                elif len(parts) == 3 and parts[:2] == ["connect", "setup"] and parts[2] in demo.accounts:
                    return_url = demo.accounts[parts[2]].get("return_url", "")
                    self._html(200, demo.page("connect", account=parts[2], return_url=return_url))
                elif path == "/":
                    self._html(200, demo.page("index"))
                else:
                    self._not_found()

            def do_POST(self) -> None:
                path = urllib.parse.urlsplit(self.path).path
                raw = self._body()
                if path.startswith("/v1/"):
                    self._api("POST", form_decode(raw))
                    return
                parts = path.strip("/").split("/")
                if len(parts) != 3 or parts[0] != "checkout" or parts[2] not in ("pay", "cancel"):
                    self._not_found()
                    return
                if parts[2] == "cancel":
                    session = demo.session(parts[1])
                    if session is None:
                        self._not_found()
                    else:
                        self._redirect(session["cancel_url"])
                    return
                form = dict(urllib.parse.parse_qsl(raw))
                paid, problem = demo.checkout_pay(parts[1], form.get("card", ""))
                if paid is None:
                    self._not_found()
                elif problem:
                    status = 402 if paid["payment_status"] != "paid" else 502
                    self._html(status, demo.page("checkout", session=paid, error=problem))
                else:
                    self._redirect(paid["success_url"])

            def log_message(self, format: str, *args: Any) -> None:
                if demo.log_requests:
                    super().log_message(format, *args)

        return Handler
