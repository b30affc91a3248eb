"""Supplier payouts through Stripe Connect: onboarding, one pending payout per supplier, transfers
sent once (idempotency key `payout:<id>`), failures returned to the payable account."""

from __future__ import annotations

from decimal import Decimal
from typing import cast

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from marketplace.currency import money_text
from marketplace.webhooks import PAYOUT_FAILED, PAYOUT_PAID, event_emit
from suppliers.locks import organization_lock
from suppliers.models import Organization

from .errors import PaymentProviderError
from .ledger import Kind, platform_account, post_transaction, supplier_payable
from .locks import ledger_account_lock, payout_lock
from .models import LedgerTransaction, Payout
from .selectors import account_balance
from .stripe_gateway import client, floor_cents, to_cents


def connect_onboarding_link(*, organization: Organization, return_url: str, refresh_url: str) -> str:
    """Create (once) the organization's Connect account and an onboarding link for it."""
    try:
        with transaction.atomic():
            organization = organization_lock(organization_id=organization.pk)
            if not organization.stripe_account_id:
                account = client().v1.accounts.create(
                    params={
                        "type": "express",
                        "country": organization.payout_country,
                        "email": organization.contact_email,
                        "capabilities": {"transfers": {"requested": True}},
                        "metadata": {"organization_id": str(organization.pk)},
                    },
                    options={"idempotency_key": f"connect-account:{organization.pk}"},
                )
                organization.stripe_account_id = account.id
                organization.save(update_fields=["stripe_account_id"])
        link = client().v1.account_links.create(
            params={
                "account": organization.stripe_account_id,
                "type": "account_onboarding",
                "return_url": return_url,
                "refresh_url": refresh_url,
            }
        )
    except stripe.StripeError as error:
        raise PaymentProviderError(
            _("Stripe could not start onboarding: %(problem)s") % {"problem": error.user_message or error}
        ) from None
    return link.url


def payouts_create(*, minimum: Decimal | None = None) -> list[Payout]:
    """Beat: one pending payout per connected supplier whose payable balance, with what it owes
    already netted, is above zero and at least the minimum. The ledger moves payable -> clearing in
    the same transaction (key `payout:<id>`).

    What a supplier owes is its payable's negative balance (dispute and SLA credits charged after
    its earnings were paid out; see `selectors.supplier_earnings` for why it is not a separate
    account). Earnings post to the same account, so they repay the debt first: a supplier who owes
    $50 and then earns $80 has a balance of $30 and is paid $30. While the balance is zero or
    negative nothing is paid out, whatever PAYOUT_MINIMUM says."""
    minimum = settings.PAYOUT_MINIMUM if minimum is None else minimum
    created = []
    for organization in Organization.objects.exclude(stripe_account_id="").order_by("pk"):
        with transaction.atomic():
            payable = ledger_account_lock(account_id=supplier_payable(organization).pk)
            if Payout.objects.filter(organization=organization, status=Payout.Status.PENDING).exists():
                continue
            amount = floor_cents(account_balance(payable))
            if amount <= 0 or amount < minimum:
                continue
            payout = Payout.objects.create(
                organization=organization, amount=amount, stripe_account_id=organization.stripe_account_id
            )
            post_transaction(
                kind=LedgerTransaction.Kind.PAYOUT,
                key=f"payout:{payout.pk}",
                description=f"Payout {payout.pk} to {organization.name}",
                postings=[(payable, -amount), (platform_account(Kind.STRIPE_CLEARING), amount)],
                reference={"payout": payout.pk},
            )
            created.append(payout)
    return created


def payout_transfer(*, payout_id: int) -> str:
    """Send one pending payout with `stripe.Transfer.create`, idempotency key `payout:<id>`: a retry
    after a timeout returns the same transfer, so a supplier is never paid twice. Returns status.

    Nothing pays out while the supplier owes: if its payable went negative after the payout was
    created (a dispute or SLA credit in between) and Stripe was never asked yet, the payout is held
    instead: its amount goes back to the payable, netting the debt, and the rest is paid by the
    next `payouts_create`. Decided under the payout's lock, with the attempt counted in the same
    transaction, so a payout that may already have reached Stripe is never held (and paid too)."""
    with transaction.atomic():
        payout = payout_lock(payout_id=payout_id)
        if payout.status != Payout.Status.PENDING:
            return payout.status
        if payout.attempts == 0:
            balance = account_balance(supplier_payable(payout.organization))
            if balance < 0:
                return _payout_failed(
                    payout, f"Held: the supplier owes {money_text(-balance)}; this payout was returned to its payable."
                )
        payout.attempts += 1
        payout.save(update_fields=["attempts"])
    try:
        transfer = client().v1.transfers.create(
            params={
                "amount": to_cents(payout.amount),
                "currency": payout.currency.lower(),
                "destination": payout.stripe_account_id,
                "metadata": {"payout_id": str(payout.pk)},
            },
            options={"idempotency_key": f"payout:{payout.pk}"},
        )
    except (stripe.APIConnectionError, stripe.RateLimitError) as error:
        Payout.objects.filter(pk=payout.pk).update(last_error=str(error)[:500])
        raise  # transient: the task retries with backoff
    except stripe.APIError as error:
        if getattr(error, "http_status", None) and cast(int, error.http_status) >= 500:
            Payout.objects.filter(pk=payout.pk).update(last_error=str(error)[:500])
            raise
        return _payout_failed(payout, str(error))
    except stripe.StripeError as error:  # refused (bad account, ...): give the money back to payable
        return _payout_failed(payout, str(error))
    with transaction.atomic():
        paid = Payout.objects.filter(pk=payout.pk, status=Payout.Status.PENDING).update(
            status=Payout.Status.PAID, stripe_transfer_id=transfer.id, paid_at=timezone.now(), last_error=""
        )
        if paid:
            _payout_event(payout, PAYOUT_PAID, transfer=transfer.id)
    return Payout.Status.PAID


def _payout_event(payout: Payout, event_type: str, **extra: object) -> None:
    """Tell the supplier organization's owners' webhook endpoints."""
    data = {"payout": payout.pk, "amount": str(payout.amount), "currency": payout.currency, **extra}
    owners = payout.organization.memberships.filter(role="owner").values_list("user_id", flat=True)
    for user_id in owners:
        event_emit(user_id=user_id, event_type=event_type, data=data)


def _payout_failed(payout: Payout, message: str) -> str:
    with transaction.atomic():
        locked = payout_lock(payout_id=payout.pk)
        if locked.status != Payout.Status.PENDING:
            return locked.status
        post_transaction(
            kind=LedgerTransaction.Kind.PAYOUT,
            key=f"payout-reversal:{payout.pk}",
            description=f"Payout {payout.pk} failed: returned to payable",
            postings=[
                (platform_account(Kind.STRIPE_CLEARING), -payout.amount),
                (supplier_payable(payout.organization), payout.amount),
            ],
            reference={"payout": payout.pk},
        )
        locked.status = Payout.Status.FAILED
        locked.last_error = message[:500]
        locked.save(update_fields=["status", "last_error"])
        _payout_event(locked, PAYOUT_FAILED, reason=message[:500])
    return Payout.Status.FAILED
