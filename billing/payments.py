"""Buyer top-ups through Stripe Checkout, and the Stripe webhook events that confirm or reverse them."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.services import notify
from marketplace.currency import money_text, platform_currency
from marketplace.errors import InvalidInput

from .errors import PaymentProviderError, PaymentsNotConfigured
from .ledger import Kind, buyer_wallet, platform_account, post_transaction
from .locks import top_up_lock
from .models import LedgerPosting, LedgerTransaction, StripeEvent, TopUp
from .selectors import money_sum
from .stripe_gateway import client, from_cents, payments_configured, to_cents

logger = logging.getLogger(__name__)
MAX_STRIPE_ID_LENGTH = 64
MAX_EVENT_CENTS = 10**12  # $10bn: more than any top-up; a larger refund or dispute amount is malformed


def top_up_create(
    *, user: User, amount: Decimal | None, success_url: str, cancel_url: str, payer: User | None = None
) -> TopUp:
    """Start a top-up of `user`'s wallet: our row first (committed), then a Stripe Checkout Session
    created with the deterministic idempotency key `top-up:<id>`, so a retry can never make a second
    one. A team's wallet is paid by a person (`payer`, whose address gets the receipt); a team key
    has none, and Checkout asks for an address. Without Stripe keys nothing is written:
    PaymentsNotConfigured."""
    if not payments_configured():
        raise PaymentsNotConfigured(_("Card top-ups are not available on this platform right now."))
    if (
        amount is None
        or not settings.TOP_UP_MIN <= amount <= settings.TOP_UP_MAX
        or amount != amount.quantize(Decimal("0.01"))
    ):
        raise InvalidInput(
            _("Top up between %(min)s and %(max)s, in whole cents.")
            % {"min": money_text(settings.TOP_UP_MIN), "max": money_text(settings.TOP_UP_MAX)},
            fields={"amount": [_("Out of range.")]},
        )
    top_up = TopUp.objects.create(user=user, amount=amount)
    paid_by = payer or user
    try:
        session = client().v1.checkout.sessions.create(
            params={
                **({} if paid_by.is_team else {"customer_email": paid_by.email}),
                "mode": "payment",
                "line_items": [
                    {
                        "quantity": 1,
                        "price_data": {
                            "currency": platform_currency().stripe_code,
                            "unit_amount": to_cents(amount),
                            "product_data": {"name": "Compute marketplace credit"},
                        },
                    }
                ],
                "client_reference_id": str(top_up.pk),
                "metadata": {"top_up_id": str(top_up.pk)},
                "payment_intent_data": {"metadata": {"top_up_id": str(top_up.pk)}},
                "success_url": success_url,
                "cancel_url": cancel_url,
            },
            options={"idempotency_key": f"top-up:{top_up.pk}"},
        )
    except stripe.StripeError as error:
        logger.warning("checkout session for top-up %s failed: %s", top_up.pk, error)
        # Nobody got a checkout link, so nothing can be paid on this row: it is failed, not pending.
        TopUp.objects.filter(pk=top_up.pk).update(status=TopUp.Status.FAILED)
        raise PaymentProviderError(_("The payment provider is unavailable; nothing was charged. Try again.")) from None
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
        description=_("Top-up %(id)d via Stripe") % {"id": top_up.pk},
        postings=[(platform_account(Kind.STRIPE_CLEARING), -top_up.amount), (buyer_wallet(top_up.user), top_up.amount)],
        reference={"top_up": top_up.pk, "payment_intent": payment_intent},
    )
    if top_up.status == TopUp.Status.PENDING:
        top_up.status = TopUp.Status.SUCCEEDED
        top_up.completed_at = timezone.now()
        top_up.stripe_payment_intent_id = payment_intent or top_up.stripe_payment_intent_id
        top_up.save(update_fields=["status", "completed_at", "stripe_payment_intent_id"])
    return True


def _reverse_payment(*, key: str, payment_intent: str, amount: Decimal, refund: bool) -> bool:
    """Money Stripe took back (a refund, else a dispute): out of the buyer's wallet, back to clearing."""
    top_up = TopUp.objects.filter(stripe_payment_intent_id=payment_intent).select_related("user").first()
    if top_up is None or amount <= 0:
        return False
    post_transaction(
        kind=LedgerTransaction.Kind.REFUND,
        key=key,
        description=f"{'Refund' if refund else 'Dispute'} of top-up {top_up.pk}",
        postings=[(buyer_wallet(top_up.user), -amount), (platform_account(Kind.STRIPE_CLEARING), amount)],
        reference={"top_up": top_up.pk, "payment_intent": payment_intent},
    )
    notify(
        user=top_up.user,
        kind="payment_reversed",
        title=(
            _("Refund: %(amount)s removed from your balance")
            if refund
            else _("Dispute: %(amount)s removed from your balance")
        )
        % {"amount": money_text(amount)},
        body=(
            _("Stripe reported a refund on top-up %(id)s.")
            if refund
            else _("Stripe reported a dispute on top-up %(id)s.")
        )
        % {"id": top_up.pk},
        dedupe_key=key,
        link=reverse("billing:buyer"),
    )
    return True


def _top_up_id(value: object) -> int | None:
    """A top-up id from metadata (we wrote it: a string of ASCII digits) or a JSON integer; None
    for anything else ("abc", "٣", a float, a bool, 19+ digits)."""
    if isinstance(value, str) and 0 < len(value) <= 18 and value.isascii() and value.isdigit():
        return int(value)
    return _cents(value, maximum=2**63 - 1)


def _cents(value: object, *, maximum: int = MAX_EVENT_CENTS) -> int | None:
    """An amount in cents as Stripe sends it: a JSON integer from 0 to `maximum`, else None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum:
        return value
    return None


def _stripe_id(value: object) -> str:
    """A Stripe object id ("ch_...", "pi_..."), or "" for anything else (they are under 64 characters)."""
    return value if isinstance(value, str) and len(value) <= MAX_STRIPE_ID_LENGTH else ""


def _apply(event_type: str, obj: dict[str, Any]) -> bool | None:
    """The effect of one event: whether we acted on it; None when its object is not as Stripe
    documents it (the caller records and logs it)."""
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    if event_type == "checkout.session.completed" and obj.get("payment_status") == "paid":
        top_up_id = _top_up_id(metadata.get("top_up_id") or obj.get("client_reference_id"))
        if top_up_id is None:
            return None
        return _credit_top_up(top_up_id, payment_intent=_stripe_id(obj.get("payment_intent")))
    if event_type == "payment_intent.succeeded":
        if not metadata.get("top_up_id"):
            return False  # a payment that is not a top-up
        top_up_id = _top_up_id(metadata.get("top_up_id"))
        if top_up_id is None:
            return None
        return _credit_top_up(top_up_id, payment_intent=_stripe_id(obj.get("id")))
    if event_type in ("charge.refunded", "charge.dispute.created"):
        refund = event_type == "charge.refunded"
        object_id = _stripe_id(obj.get("id"))
        cents = _cents(obj.get("amount_refunded" if refund else "amount", 0))
        if not object_id or cents is None:
            return None
        return _reverse_payment(
            key=f"stripe-refund:{object_id}:{cents}" if refund else f"stripe-dispute:{object_id}",
            payment_intent=_stripe_id(obj.get("payment_intent")),
            amount=from_cents(cents) - (_already_reversed(object_id) if refund else Decimal(0)),
            refund=refund,
        )
    return False


def stripe_event_handle(*, event: dict) -> bool:
    """Apply a verified Stripe event once. Returns whether the type is one we act on; unknown
    types are recorded and acknowledged. The event row and its effect commit together.

    A signed event that is not as Stripe documents it (no `data.object`, an amount that is not an
    integer, a top-up id that is not one) is recorded unhandled and logged, never a 500; without
    an id and a type it is not an event at all: InvalidInput."""
    event_id, event_type = _stripe_id(event.get("id")), event.get("type")
    if not event_id or not isinstance(event_type, str) or not 0 < len(event_type) <= MAX_STRIPE_ID_LENGTH:
        raise InvalidInput(
            _("Not a Stripe event: it has no id or type."),
            fields={"id": [_("An event id.")], "type": [_("An event type.")]},
        )
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = StripeEvent.objects.create(event_id=event_id, type=event_type, payload=event, handled=False)
        except IntegrityError:
            return True  # seen before: already applied
        data = event.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        handled = _apply(event_type, obj) if isinstance(obj, dict) else None
        if handled is None:
            logger.warning("Stripe event %s (%s) is malformed; recorded unhandled", event_id, event_type)
            return False
        if handled:
            StripeEvent.objects.filter(pk=record.pk).update(handled=True)
        return handled


def _already_reversed(charge_id: str) -> Decimal:
    """charge.refunded carries the cumulative amount; earlier partial refunds were posted already."""
    keys = LedgerTransaction.objects.filter(key__startswith=f"stripe-refund:{charge_id}:")
    return money_sum(LedgerPosting.objects.filter(transaction__in=keys, amount__gt=0))
