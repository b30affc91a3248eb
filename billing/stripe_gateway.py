"""The official stripe library, configured from settings. Amounts cross this boundary in cents."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import stripe
from django.conf import settings


def payments_configured() -> bool:
    """Whether card top-ups can work here: a secret key to call Stripe with and a webhook secret to
    believe its confirmations with. Without either, pages and the API say so instead of trying."""
    return bool(settings.STRIPE_SECRET_KEY.strip() and settings.STRIPE_WEBHOOK_SECRET.strip())


def client() -> stripe.StripeClient:
    base = settings.STRIPE_API_BASE
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": base, "connect": base, "files": base},
        max_network_retries=2,
    )


def to_cents(amount: Decimal) -> int:
    """Dollars to integer cents; refuses fractions of a cent rather than rounding money away."""
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"{amount} has fractions of a cent")
    return int(cents)


def from_cents(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(Decimal("0.01"))


def floor_cents(amount: Decimal) -> Decimal:
    """Round down to whole cents (what can actually be paid out)."""
    return amount.quantize(Decimal("0.01"), rounding=ROUND_DOWN)


def construct_event(payload: bytes, signature: str) -> stripe.Event:
    """Verify the Stripe-Signature header (default tolerance) and parse the event."""
    event: stripe.Event = stripe.Webhook.construct_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET)
    return event  # the library leaves construct_event's return type unannotated
