"""Buyer top-ups through Stripe Checkout, and the Stripe webhook events that confirm or reverse them."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import User
from accounts.services import notify
from marketplace.errors import InvalidInput

from .errors import PaymentProviderError
from .ledger import Kind, buyer_wallet, platform_account, post_transaction
from .locks import top_up_lock
from .models import LedgerPosting, LedgerTransaction, StripeEvent, TopUp
from .selectors import money_sum
from .stripe_gateway import client, from_cents, to_cents

logger = logging.getLogger(__name__)


def top_up_create(*, user: User, amount: Decimal | None, success_url: str, cancel_url: str) -> TopUp:
    """Start a top-up: our row first (committed), then a Stripe Checkout Session created with
    the deterministic idempotency key `top-up:<id>`, so a retry can never make a second one."""
    if (
        amount is None
        or not settings.TOP_UP_MIN <= amount <= settings.TOP_UP_MAX
        or amount != amount.quantize(Decimal("0.01"))
    ):
        raise InvalidInput(
            f"Top up between ${settings.TOP_UP_MIN} and ${settings.TOP_UP_MAX}, in whole cents.",
            fields={"amount": ["Out of range."]},
        )
    top_up = TopUp.objects.create(user=user, amount=amount)
    try:
        session = client().v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": "usd",
                            "unit_amount": to_cents(amount),
                            "product_data": {"name": "Compute marketplace credit"},
                        },
                    }
                ],
                "client_reference_id": str(top_up.pk),
                "customer_email": user.email,
                "metadata": {"top_up_id": str(top_up.pk)},
                "payment_intent_data": {"metadata": {"top_up_id": str(top_up.pk)}},
                "success_url": success_url,
                "cancel_url": cancel_url,
            },
            options={"idempotency_key": f"top-up:{top_up.pk}"},
        )
    except stripe.StripeError as error:
        logger.warning("checkout session for top-up %s failed: %s", top_up.pk, error)
        raise PaymentProviderError("The payment provider is unavailable; nothing was charged. Try again.") from None
    TopUp.objects.filter(pk=top_up.pk).update(stripe_checkout_session_id=session.id, checkout_url=session.url or "")
    top_up.refresh_from_db()
    return top_up


def _credit_top_up(top_up_id: int, *, payment_intent: str = "") -> bool:
    top_up = top_up_lock(top_up_id=top_up_id)
    if top_up is None:
        return False
    post_transaction(
        kind=LedgerTransaction.Kind.TOP_UP,
        key=f"top-up:{top_up.pk}",
        description=f"Top-up {top_up.pk} via Stripe",
        postings=[(platform_account(Kind.STRIPE_CLEARING), -top_up.amount), (buyer_wallet(top_up.user), top_up.amount)],
        reference={"top_up": top_up.pk, "payment_intent": payment_intent},
    )
    if top_up.status == TopUp.Status.PENDING:
        top_up.status = TopUp.Status.SUCCEEDED
        top_up.completed_at = timezone.now()
        top_up.stripe_payment_intent_id = payment_intent or top_up.stripe_payment_intent_id
        top_up.save(update_fields=["status", "completed_at", "stripe_payment_intent_id"])
    return True


def _reverse_payment(*, key: str, payment_intent: str, amount: Decimal, reason: str) -> bool:
    """Money Stripe took back (refund, dispute): out of the buyer's wallet, back to clearing."""
    top_up = TopUp.objects.filter(stripe_payment_intent_id=payment_intent).select_related("user").first()
    if top_up is None or amount <= 0:
        return False
    post_transaction(
        kind=LedgerTransaction.Kind.REFUND,
        key=key,
        description=f"{reason} of top-up {top_up.pk}",
        postings=[(buyer_wallet(top_up.user), -amount), (platform_account(Kind.STRIPE_CLEARING), amount)],
        reference={"top_up": top_up.pk, "payment_intent": payment_intent},
    )
    notify(
        user=top_up.user,
        kind="payment_reversed",
        title=f"{reason}: ${amount} removed from your balance",
        body=f"Stripe reported a {reason.lower()} on top-up {top_up.pk}.",
        dedupe_key=key,
    )
    return True


def stripe_event_handle(*, event: dict) -> bool:
    """Apply a verified Stripe event once. Returns whether the type is one we act on; unknown
    types are recorded and acknowledged. The event row and its effect commit together."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = StripeEvent.objects.create(
                    event_id=event["id"], type=event["type"], payload=event, handled=False
                )
        except IntegrityError:
            return True  # seen before: already applied
        obj = event.get("data", {}).get("object", {})
        handled = False
        if event["type"] == "checkout.session.completed" and obj.get("payment_status") == "paid":
            top_up_id: Any = (obj.get("metadata") or {}).get("top_up_id") or obj.get("client_reference_id")
            handled = bool(top_up_id) and _credit_top_up(int(top_up_id), payment_intent=obj.get("payment_intent") or "")
        elif event["type"] == "payment_intent.succeeded":
            top_up_id = (obj.get("metadata") or {}).get("top_up_id")
            handled = bool(top_up_id) and _credit_top_up(int(top_up_id), payment_intent=obj.get("id", ""))
        elif event["type"] == "charge.refunded":
            handled = _reverse_payment(
                key=f"stripe-refund:{obj['id']}:{obj.get('amount_refunded', 0)}",
                payment_intent=obj.get("payment_intent") or "",
                amount=from_cents(obj.get("amount_refunded", 0)) - _already_reversed(obj),
                reason="Refund",
            )
        elif event["type"] == "charge.dispute.created":
            handled = _reverse_payment(
                key=f"stripe-dispute:{obj['id']}",
                payment_intent=obj.get("payment_intent") or "",
                amount=from_cents(obj.get("amount", 0)),
                reason="Dispute",
            )
        if handled:
            StripeEvent.objects.filter(pk=record.pk).update(handled=True)
        return handled


def _already_reversed(charge: dict) -> Decimal:
    """charge.refunded carries the cumulative amount; earlier partial refunds were posted already."""
    keys = LedgerTransaction.objects.filter(key__startswith=f"stripe-refund:{charge['id']}:")
    return money_sum(LedgerPosting.objects.filter(transaction__in=keys, amount__gt=0))
