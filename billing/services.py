"""Ledger postings, metering, settlement, balances and low-balance protection.

Locks: a buyer's wallet account row is locked (select_for_update) whenever its balance decides
something (orders, low-balance stops). Metering and settlement lock their batch rows with SKIP
LOCKED so several workers share the work, and unique keys make every effect happen once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import User
from marketplace.errors import ApplicationError, InvalidInput

from . import rating
from .models import LedgerAccount, LedgerPosting, LedgerTransaction, UsageRecord

logger = logging.getLogger(__name__)
Kind = LedgerAccount.Kind
CURRENCY = "USD"


class UnbalancedTransaction(ApplicationError):
    code = "unbalanced_transaction"
    status_code = 500


class InsufficientFunds(ApplicationError):
    code = "insufficient_funds"
    status_code = 402


# --- Accounts and postings ------------------------------------------------------------------


def _account(kind: str, *, user=None, organization=None, currency: str = CURRENCY) -> LedgerAccount:
    owner = f"user:{user.pk}" if user else f"org:{organization.pk}" if organization else "platform"
    key = f"{kind}:{owner}:{currency}"
    account = LedgerAccount.objects.filter(key=key).first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return LedgerAccount.objects.create(
                kind=kind, user=user, organization=organization, currency=currency, key=key
            )
    except IntegrityError:
        return LedgerAccount.objects.get(key=key)


def buyer_wallet(user: User) -> LedgerAccount:
    return _account(Kind.BUYER_WALLET, user=user)


def supplier_payable(organization) -> LedgerAccount:
    return _account(Kind.SUPPLIER_PAYABLE, organization=organization)


def platform_account(kind: str) -> LedgerAccount:
    return _account(kind)


def check_balanced(postings: Iterable[tuple[LedgerAccount, Decimal]]) -> None:
    """The service-level twin of the PostgreSQL trigger (SQLite has no deferred triggers)."""
    postings = list(postings)
    if len(postings) < 2:
        raise UnbalancedTransaction("A transaction needs at least two postings.")
    totals: dict[str, Decimal] = {}
    for account, amount in postings:
        if not isinstance(amount, Decimal):
            raise TypeError("money is a Decimal")
        if amount == 0:
            raise UnbalancedTransaction("Zero postings are not allowed.")
        totals[account.currency] = totals.get(account.currency, Decimal(0)) + amount
    if any(total != 0 for total in totals.values()):
        raise UnbalancedTransaction(f"Postings do not sum to zero: {totals}")


def post_transaction(
    *,
    kind: str,
    key: str,
    description: str,
    postings: list[tuple[LedgerAccount, Decimal]],
    reference: dict | None = None,
    created_by: User | None = None,
) -> LedgerTransaction:
    """Write a balanced transaction once: the same `key` again returns the first one unchanged."""
    existing = LedgerTransaction.objects.filter(key=key).first()
    if existing is not None:
        return existing
    check_balanced(postings)
    try:
        with transaction.atomic():
            ledger_transaction = LedgerTransaction.objects.create(
                kind=kind, key=key, description=description[:255], reference=reference or {}, created_by=created_by
            )
            LedgerPosting.objects.bulk_create(
                LedgerPosting(transaction=ledger_transaction, account=account, amount=amount, currency=account.currency)
                for account, amount in postings
            )
    except IntegrityError:
        return LedgerTransaction.objects.get(key=key)
    if kind != LedgerTransaction.Kind.USAGE:  # usage is automatic and already row-per-record; audit the rest
        from marketplace.audit import audit_record

        audit_record(
            action=f"money.{kind}",
            obj=ledger_transaction,
            actor=created_by,
            reason=description,
            after={"postings": [[account.key, str(amount)] for account, amount in postings]},
        )
    return ledger_transaction


def money_sum(queryset, field: str = "amount") -> Decimal:
    """Exact Decimal sum. PostgreSQL sums NUMERIC exactly; SQLite's SUM is floating point, so
    there the values are added in Python."""
    if connection.vendor == "postgresql":
        return queryset.aggregate(total=Sum(field))["total"] or Decimal(0)
    return sum(queryset.values_list(field, flat=True), Decimal(0))


def account_balance(account: LedgerAccount) -> Decimal:
    return money_sum(LedgerPosting.objects.filter(account=account))


def wallet_balance(user: User) -> Decimal:
    return account_balance(buyer_wallet(user))


def lock_wallet(user: User) -> LedgerAccount:
    """Lock the buyer's wallet row: balance-dependent decisions for this buyer are serialized."""
    wallet = buyer_wallet(user)
    return LedgerAccount.objects.select_for_update().get(pk=wallet.pk)


def credit_grant(*, user: User, amount: Decimal, reason: str, key: str, created_by: User | None = None):
    """Give a buyer credit (promotion, goodwill): credits expense -> wallet."""
    if amount <= 0:
        raise InvalidInput("A credit is a positive amount.", fields={"amount": ["Must be positive."]})
    return post_transaction(
        kind=LedgerTransaction.Kind.CREDIT,
        key=key,
        description=reason,
        created_by=created_by,
        postings=[(platform_account(Kind.CREDITS_EXPENSE), -amount), (buyer_wallet(user), amount)],
        reference={"user": user.pk},
    )


def ledger_total() -> Decimal:
    """The sum of every posting: always zero."""
    return money_sum(LedgerPosting.objects.all())


# --- Funds guard for orders -----------------------------------------------------------------


def funds_guard(*, buyer: User, adding_per_hour: Decimal, upfront: Decimal = Decimal(0)) -> None:
    """Nothing runs on credit: the wallet must cover any upfront charge plus one hour of
    everything the buyer would then run. Precondition: the wallet row is locked (`lock_wallet`)."""
    from orders.models import Instance

    balance = account_balance(buyer_wallet(buyer))
    burn = money_sum(Instance.objects.live().filter(buyer=buyer).exclude(pricing="reserved"), "price_per_hour")
    needed = upfront + burn + adding_per_hour
    if balance < needed:
        raise InsufficientFunds(
            f"Your balance is ${balance:.2f}; this order needs ${needed:.2f} (one hour of everything running"
            f"{' plus the reserved term' if upfront else ''}). Top up first.",
            extra={"balance": str(balance), "needed": str(needed)},
        )


def reserved_prepay(*, order, amount: Decimal) -> LedgerTransaction:
    """A reserved term is paid up front into reserved prepayments, recognized as the term elapses."""
    return post_transaction(
        kind=LedgerTransaction.Kind.USAGE,
        key=f"reserved:{order.pk}",
        description=f"Reserved term: order {order.pk}, {order.count} x {order.term_hours} h",
        postings=[(buyer_wallet(order.buyer), -amount), (platform_account(Kind.RESERVED_PREPAYMENTS), amount)],
        reference={"order": order.pk},
    )


def reserved_cancellation_refund(*, instance, at: datetime) -> LedgerTransaction | None:
    """Terminating a reserved instance before its term ends refunds the unused time pro rata,
    minus the stated cancellation fee (RESERVED_CANCELLATION_FEE of the unused part), which the
    platform keeps. Called in the terminate transaction, after metering closed the window."""
    if instance.pricing != "reserved" or not instance.reserved_until or instance.reserved_until <= at:
        return None
    unused = rating.charge_for(int((instance.reserved_until - at).total_seconds()), instance.price_per_hour)
    if unused <= 0:
        return None
    fee = rating.split(unused, Decimal(settings.RESERVED_CANCELLATION_FEE)).fee
    postings = [(platform_account(Kind.RESERVED_PREPAYMENTS), -unused), (buyer_wallet(instance.buyer), unused - fee)]
    if fee:
        postings.append((platform_account(Kind.PLATFORM_REVENUE), fee))
    return post_transaction(
        kind=LedgerTransaction.Kind.REFUND,
        key=f"reserved-cancel:{instance.pk}",
        description=f"Reserved i-{instance.pk} cancelled: unused term refunded less the cancellation fee",
        postings=postings,
        reference={"instance": instance.pk, "unused": str(unused), "fee": str(fee)},
    )


# --- Metering -------------------------------------------------------------------------------


def accrual_kind(instance) -> str | None:
    """What an instance accrues in its current status: compute while running (reserved: for the
    whole term), storage while its disk is kept, nothing otherwise."""
    from orders.models import InstanceStatus as S
    from orders.models import Pricing

    if instance.pricing == Pricing.RESERVED and instance.status not in (S.TERMINATING, S.TERMINATED):
        return UsageRecord.Kind.COMPUTE
    if instance.status == S.RUNNING:
        return UsageRecord.Kind.COMPUTE
    if instance.status in (S.STOPPING, S.STOPPED, S.PREEMPTED):
        return UsageRecord.Kind.STORAGE
    return None


def _usage_record(instance, kind: str, start: datetime, end: datetime) -> UsageRecord | None:
    if instance.pricing == "reserved" and instance.reserved_until:
        end = min(end, instance.reserved_until)
    seconds = int((end - start).total_seconds())
    if seconds <= 0:
        return None
    if kind == UsageRecord.Kind.COMPUTE:
        rate = instance.price_per_hour
    else:
        rate = rating.storage_rate_per_hour(instance.instance_type.disk_gb, instance.storage_price_per_gb_month)
        if rate == 0:
            return None
    return UsageRecord(
        instance=instance,
        buyer_id=instance.buyer_id,
        organization_id=instance.host.organization_id,
        kind=kind,
        window_start=start,
        window_end=start + timezone.timedelta(seconds=seconds),
        seconds=seconds,
        rate_per_hour=rate,
    )


def meter_transition(*, instance, old_status: str, at: datetime) -> None:
    """Called in the same transaction as a status change: close the window the old status was
    accruing, and open one for the new status. Per-second exact."""
    from orders.models import Instance

    new_kind = accrual_kind(instance)
    old = Instance(pk=instance.pk, status=old_status, pricing=instance.pricing)
    old_kind = accrual_kind(old)
    if old_kind is not None and instance.metered_until is not None:
        record = _usage_record(instance, old_kind, instance.metered_until, at)
        if record is not None:
            UsageRecord.objects.bulk_create([record], ignore_conflicts=True)
    instance.metered_until = at if new_kind is not None else None
    Instance.objects.filter(pk=instance.pk).update(metered_until=instance.metered_until)


def meter_usage(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Beat: every accruing instance records usage since its last metered point, in bounded
    batches with set-based writes (one bulk insert, one update per batch). Rows are locked with
    SKIP LOCKED; a unique (instance, kind, window_start) makes a re-run add nothing."""
    from orders.models import Instance

    now = now or timezone.now()
    created = 0
    while True:
        with transaction.atomic():
            batch = list(
                Instance.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("instance_type", "host")
                .filter(metered_until__isnull=False, metered_until__lt=now)
                .order_by("pk")[:batch_size]
            )
            if not batch:
                return created
            records = []
            for instance in batch:
                kind = accrual_kind(instance)
                record = _usage_record(instance, kind, instance.metered_until, now) if kind else None
                if record is not None:
                    records.append(record)
            UsageRecord.objects.bulk_create(records, ignore_conflicts=True)
            Instance.objects.filter(pk__in=[i.pk for i in batch]).update(metered_until=now)
            created += len(records)
        if len(batch) < batch_size:
            return created


# --- Settlement -----------------------------------------------------------------------------


def settle_usage(*, batch_size: int = 500) -> int:
    """Beat: unsettled usage becomes ledger transactions (buyer wallet, or the reserved
    prepayment, -> supplier payable + platform revenue). Exactly once: each record is settled by
    the transaction keyed `usage:<id>`; concurrent workers skip each other's locked rows."""
    take_rate = Decimal(settings.PLATFORM_TAKE_RATE)
    revenue = platform_account(Kind.PLATFORM_REVENUE)
    reserved = platform_account(Kind.RESERVED_PREPAYMENTS)
    settled = 0
    while True:
        with transaction.atomic():
            batch = list(
                UsageRecord.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("instance", "instance__backfills", "buyer", "organization")
                .filter(settled_by__isnull=True)
                .order_by("pk")[:batch_size]
            )
            if not batch:
                return settled
            for record in batch:
                parts = rating.split(rating.charge_for(record.seconds, record.rate_per_hour), take_rate)
                if parts.charge == 0:
                    payer = None
                elif record.instance.pricing == "reserved" and record.kind == UsageRecord.Kind.COMPUTE:
                    payer = reserved
                else:
                    payer = buyer_wallet(record.buyer)
                earner = supplier_payable(record.organization)
                if record.kind == UsageRecord.Kind.COMPUTE and record.instance.backfills_id:
                    # Spot on idle reserved capacity: the reserving buyer (who paid the supplier for the
                    # term) earns it, less the commission.
                    earner = buyer_wallet(record.instance.backfills.buyer)
                postings = []
                if payer is not None:
                    postings = [(payer, -parts.charge)]
                    if parts.supplier_share:
                        postings.append((earner, parts.supplier_share))
                    if parts.fee:
                        postings.append((revenue, parts.fee))
                if len(postings) < 2:
                    continue  # rounds to nothing: stays unsettled until a longer window
                record.settled_by = post_transaction(
                    kind=LedgerTransaction.Kind.USAGE,
                    key=f"usage:{record.pk}",
                    description=f"{record.kind} i-{record.instance_id}, {record.seconds} s",
                    postings=postings,
                    reference={"usage_record": record.pk, "instance": record.instance_id},
                )
                UsageRecord.objects.filter(pk=record.pk).update(settled_by=record.settled_by)
                settled += 1
        if len(batch) < batch_size:
            return settled


# --- Low balance ----------------------------------------------------------------------------

WARN_RUNWAY_HOURS = Decimal(1)


def low_balance_check(*, batch_size: int = 200) -> dict:
    """Beat: warn buyers with under an hour of runway; at zero, stop their instances (disks kept)."""
    from accounts.services import notify
    from orders.models import Instance, InstanceStatus
    from orders.services import instance_stop

    result = {"warned": 0, "stopped": 0}
    buyer_ids = list(
        Instance.objects.live().values_list("buyer_id", flat=True).distinct().order_by("buyer_id")[:batch_size]
    )
    for buyer_id in buyer_ids:
        with transaction.atomic():
            buyer = User.objects.select_for_update().get(pk=buyer_id)  # lock order: buyer, wallet, hosts
            balance = account_balance(lock_wallet(buyer))
            live = list(Instance.objects.live().filter(buyer=buyer).exclude(pricing="reserved"))
            burn = sum((i.price_per_hour for i in live), Decimal(0))
            if not live or burn == 0:
                continue
            if balance <= 0:
                for instance in live:
                    if instance.status in (
                        InstanceStatus.RUNNING,
                        InstanceStatus.PROVISIONING,
                        InstanceStatus.STARTING,
                    ):
                        instance_stop(instance=instance, actor="platform")
                        result["stopped"] += 1
                notify(
                    user=buyer,
                    kind="balance_exhausted",
                    title="Your instances were stopped",
                    body=f"Your balance reached ${balance:.2f}. Disks are kept; top up and start them again.",
                )
            elif balance / burn < WARN_RUNWAY_HOURS:
                minutes = int(balance / burn * 60)
                sent = notify(
                    user=buyer,
                    kind="balance_low",
                    title="Low balance: under an hour left",
                    body=f"${balance:.2f} left at ${burn:.2f}/h: about {minutes} minutes. Top up to keep running.",
                    dedupe_key=f"balance_low:{buyer.pk}:{timezone.now():%Y-%m-%d-%H}",
                )
                result["warned"] += sent is not None
    return result


# --- Stripe: top-ups ------------------------------------------------------------------------


def top_up_create(*, user: User, amount: Decimal, success_url: str, cancel_url: str):
    """Start a top-up: our row first (committed), then a Stripe Checkout Session created with
    the deterministic idempotency key `top-up:<id>`, so a retry can never make a second one."""
    import stripe

    from .models import TopUp
    from .stripe_gateway import PaymentProviderError, client, to_cents

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
    from .models import TopUp

    top_up = TopUp.objects.select_for_update().filter(pk=top_up_id).first()
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
    from accounts.services import notify

    from .models import TopUp

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
    from .models import StripeEvent
    from .stripe_gateway import from_cents

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
            top_up_id = (obj.get("metadata") or {}).get("top_up_id") or obj.get("client_reference_id")
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


# --- Stripe: supplier payouts ---------------------------------------------------------------


def connect_onboarding_link(*, organization, return_url: str, refresh_url: str) -> str:
    """Create (once) the organization's Connect account and an onboarding link for it."""
    import stripe

    from suppliers.models import Organization

    from .stripe_gateway import PaymentProviderError, client

    try:
        with transaction.atomic():
            organization = Organization.objects.select_for_update().get(pk=organization.pk)
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
        raise PaymentProviderError(f"Stripe could not start onboarding: {error.user_message or error}") from None
    return link.url


def payouts_create(*, minimum: Decimal | None = None) -> list:
    """Beat: one pending payout per connected supplier whose payable is at least the minimum.
    The ledger moves payable -> clearing in the same transaction (key `payout:<id>`)."""
    from suppliers.models import Organization

    from .models import Payout
    from .stripe_gateway import floor_cents

    minimum = settings.PAYOUT_MINIMUM if minimum is None else minimum
    created = []
    for organization in Organization.objects.exclude(stripe_account_id="").order_by("pk"):
        with transaction.atomic():
            payable = LedgerAccount.objects.select_for_update().get(pk=supplier_payable(organization).pk)
            if Payout.objects.filter(organization=organization, status=Payout.Status.PENDING).exists():
                continue
            amount = floor_cents(account_balance(payable))
            if amount < minimum:
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
    after a timeout returns the same transfer, so a supplier is never paid twice. Returns status."""
    import stripe

    from .models import Payout
    from .stripe_gateway import client, to_cents

    payout = Payout.objects.get(pk=payout_id)
    if payout.status != Payout.Status.PENDING:
        return payout.status
    Payout.objects.filter(pk=payout.pk).update(attempts=payout.attempts + 1)
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
        if getattr(error, "http_status", None) and error.http_status >= 500:
            Payout.objects.filter(pk=payout.pk).update(last_error=str(error)[:500])
            raise
        return _payout_failed(payout, str(error))
    except stripe.StripeError as error:  # refused (bad account, ...): give the money back to payable
        return _payout_failed(payout, str(error))
    Payout.objects.filter(pk=payout.pk, status=Payout.Status.PENDING).update(
        status=Payout.Status.PAID, stripe_transfer_id=transfer.id, paid_at=timezone.now(), last_error=""
    )
    return Payout.Status.PAID


def _payout_failed(payout, message: str) -> str:
    from .models import Payout

    with transaction.atomic():
        locked = Payout.objects.select_for_update().get(pk=payout.pk)
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
    return Payout.Status.FAILED


# --- Staff: credit notes and refunds ------------------------------------------------------


def credit_note_issue(*, user: User, amount: Decimal, reason: str, staff: User) -> LedgerTransaction:
    """Staff credit a buyer (goodwill, SLA): credits expense -> wallet, with the reason on record."""
    import uuid

    from accounts.services import notify

    if not staff.is_staff:
        raise ApplicationError("Only staff issue credit notes.", code="permission_denied")
    if not (reason or "").strip():
        raise InvalidInput("A credit note needs a reason.", fields={"reason": ["Required."]})
    if amount is None or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise InvalidInput("A positive amount in whole cents.", fields={"amount": ["Invalid amount."]})
    with transaction.atomic():
        ledger_transaction = post_transaction(
            kind=LedgerTransaction.Kind.CREDIT,
            key=f"credit-note:{uuid.uuid4()}",
            description=f"Credit note: {reason.strip()}"[:255],
            created_by=staff,
            postings=[(platform_account(Kind.CREDITS_EXPENSE), -amount), (buyer_wallet(user), amount)],
            reference={"user": user.pk, "reason": reason.strip()},
        )
        notify(user=user, kind="credit_note", title=f"You received a ${amount} credit", body=reason.strip())
    return ledger_transaction


def usage_refund(*, ledger_transaction: LedgerTransaction, reason: str, staff: User) -> LedgerTransaction:
    """Staff refund a usage charge by reversing its transaction exactly (every posting negated)."""
    if not staff.is_staff:
        raise ApplicationError("Only staff refund charges.", code="permission_denied")
    if not (reason or "").strip():
        raise InvalidInput("A refund needs a reason.", fields={"reason": ["Required."]})
    if ledger_transaction.kind != LedgerTransaction.Kind.USAGE:
        raise InvalidInput("Only usage charges are refunded this way.", fields={"transaction": ["Not a usage charge."]})
    postings = [(p.account, -p.amount) for p in ledger_transaction.postings.select_related("account")]
    return post_transaction(
        kind=LedgerTransaction.Kind.REFUND,
        key=f"reversal:{ledger_transaction.pk}",
        description=f"Refund of {ledger_transaction.description}: {reason.strip()}"[:255],
        created_by=staff,
        postings=postings,
        reference={"reverses": ledger_transaction.pk, "reason": reason.strip()},
    )


# --- SLA credits ----------------------------------------------------------------------------


def sla_credits_for_outage(*, outage) -> list[LedgerTransaction]:
    """A rented instance lost its host beyond the grace period: its buyer is credited a multiple
    (SLA_CREDIT_MULTIPLE, default 5x) of the price of the lost time, charged to the supplier's
    payable, with the heartbeat gap as evidence. No ticket needed. Once per outage and instance."""
    from accounts.services import notify
    from orders.models import Instance, InstanceStatus

    grace = timezone.timedelta(seconds=int(settings.SLA_GRACE_SECONDS))
    gap = (outage.ended_at or timezone.now()) - outage.started_at
    lost_seconds = int((gap - grace).total_seconds())
    if lost_seconds <= 0:
        return []
    multiple = Decimal(settings.SLA_CREDIT_MULTIPLE)
    affected = Instance.objects.filter(
        host=outage.host,
        status__in=[InstanceStatus.RUNNING, InstanceStatus.PROVISIONING],
        created_at__lt=outage.started_at,
    ).select_related("buyer")
    credits = []
    for instance in affected:
        amount = rating.charge_for(lost_seconds, instance.price_per_hour) * multiple
        if amount <= 0:
            continue
        credits.append(
            post_transaction(
                kind=LedgerTransaction.Kind.CREDIT,
                key=f"sla:{outage.pk}:{instance.pk}",
                description=f"SLA credit: host lost for {lost_seconds // 60} min (i-{instance.pk})",
                postings=[
                    (supplier_payable(outage.host.organization), -amount),
                    (buyer_wallet(instance.buyer), amount),
                ],
                reference={
                    "outage": outage.pk,
                    "instance": instance.pk,
                    "last_heartbeat": outage.started_at.isoformat(),
                    "recovered_at": outage.ended_at.isoformat() if outage.ended_at else None,
                    "gap_seconds": int(gap.total_seconds()),
                    "multiple": str(multiple),
                },
            )
        )
        notify(
            user=instance.buyer,
            kind="sla_credit",
            title=f"SLA credit: ${amount:.2f}",
            body=f"Instance i-{instance.pk} lost its host for {int(gap.total_seconds()) // 60} minutes.",
            dedupe_key=f"sla:{outage.pk}:{instance.pk}",
        )
    return credits


def meter_rate_change(*, instance, at: datetime) -> None:
    """Close the open usage window at `at` so time before it is billed at the old rate."""
    from orders.models import Instance

    kind = accrual_kind(instance)
    if kind is None or instance.metered_until is None or instance.metered_until >= at:
        return
    record = _usage_record(instance, kind, instance.metered_until, at)
    if record is not None:
        UsageRecord.objects.bulk_create([record], ignore_conflicts=True)
        instance.metered_until = record.window_end
        Instance.objects.filter(pk=instance.pk).update(metered_until=record.window_end)
