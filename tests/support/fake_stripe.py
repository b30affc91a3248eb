"""The product's demo payment server (billing/demo_stripe.py) with test hooks: it records every API
request with its headers (`requests`, `calls`), answers the next calls with given failures
(`fail_next`), and hands out checkout and Connect links on Stripe-like hosts that nobody serves."""

from __future__ import annotations

from typing import Any

from billing.demo_stripe import DemoStripeServer, Response, sign

__all__ = ["FakeStripe", "sign"]


class FakeStripe(DemoStripeServer):
    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.requests: list[dict] = []
        self.fail_next: list[Response] = []  # (status, error body) for the next calls

    def calls(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]

    def intercept(self, method: str, path: str, body: dict, headers: Any) -> Response | None:
        self.requests.append(
            {
                "method": method,
                "path": path,
                "body": body,
                "idempotency_key": headers.get("Idempotency-Key"),
                "stripe_account": headers.get("Stripe-Account"),
                "authorization": headers.get("Authorization"),
            }
        )
        return self.fail_next.pop(0) if self.fail_next else None

    def checkout_url(self, session_id: str) -> str:
        return f"https://checkout.stripe.test/{session_id}"

    def account_link_url(self, account_id: str) -> str:
        return f"https://connect.stripe.test/setup/{account_id}"
