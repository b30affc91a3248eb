"""A local HTTP server speaking the subset of Stripe's API the platform uses, for the official
stripe library to talk to in tests (STRIPE_API_BASE points here). It records every request with
its headers, and replays the first response for a repeated Idempotency-Key, as Stripe does."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _nest(pairs: list[tuple[str, str]]) -> dict:
    """Stripe's form encoding (a[b][0][c]=x) back into nested dicts."""
    root: dict = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return root


class FakeStripe:
    def __init__(self):
        self.requests: list[dict] = []
        self.fail_next: list[tuple[int, dict]] = []  # (status, error body) for the next calls
        self._idempotent: dict[str, tuple[int, dict]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def calls(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def _respond(self, path: str, body: dict) -> tuple[int, dict]:
        n = next(self._ids)
        if path == "/v1/checkout/sessions":
            sid = f"cs_test_{n:06d}"
            return 200, {
                "id": sid,
                "object": "checkout.session",
                "url": f"https://checkout.stripe.test/{sid}",
                "payment_status": "unpaid",
                "client_reference_id": body.get("client_reference_id"),
                "metadata": body.get("metadata", {}),
            }
        if path == "/v1/accounts":
            return 200, {"id": f"acct_test_{n:06d}", "object": "account", "type": body.get("type")}
        if path == "/v1/account_links":
            return 200, {"object": "account_link", "url": f"https://connect.stripe.test/setup/{body.get('account')}"}
        if path == "/v1/transfers":
            return 200, {
                "id": f"tr_test_{n:06d}",
                "object": "transfer",
                "amount": int(body["amount"]),
                "currency": body["currency"],
                "destination": body["destination"],
            }
        return 404, {"error": {"type": "invalid_request_error", "message": f"Unrecognized request URL {path}"}}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                body = _nest(urllib.parse.parse_qsl(raw, keep_blank_values=True))
                key = self.headers.get("Idempotency-Key")
                with fake._lock:
                    fake.requests.append(
                        {
                            "path": self.path,
                            "body": body,
                            "idempotency_key": key,
                            "stripe_account": self.headers.get("Stripe-Account"),
                            "authorization": self.headers.get("Authorization"),
                        }
                    )
                    if fake.fail_next:
                        status, payload = fake.fail_next.pop(0)
                    elif key and (self.path, key) in fake._idempotent:
                        status, payload = fake._idempotent[(self.path, key)]
                    else:
                        status, payload = fake._respond(self.path, body)
                        if key and status < 500:
                            fake._idempotent[(self.path, key)] = (status, payload)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if key:
                    self.send_header("Idempotency-Key", key)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        return Handler


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """A Stripe-Signature header value, computed with Stripe's scheme (HMAC-SHA256 of t.payload)."""

    digest = hmac.new(secret.encode(), f"{timestamp}.{payload.decode()}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
