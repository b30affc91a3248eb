"""Double-entry ledger, usage records and top-ups. Money is Decimal with 6 places, in the
platform currency (settings.PLATFORM_CURRENCY: USD by default).

Sign convention: every posting is signed and a transaction's postings sum to zero per currency.
An account's balance is the sum of its postings (kept on the row for owner accounts): a buyer
wallet's balance is the buyer's credit, a supplier payable's is what the platform owes the supplier,
platform revenue's is the platform's take; Stripe clearing goes negative by what Stripe holds for us.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TypedDict

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from marketplace.currency import platform_currency
from marketplace.money import PRICE_DIGITS, PRICE_PLACES


def platform_currency_code() -> str:
    return platform_currency().code


class _MoneyDigits(TypedDict):
    max_digits: int
    decimal_places: int


MONEY: _MoneyDigits = {"max_digits": 20, "decimal_places": PRICE_PLACES}
CREDIT_NOTE_CEILING = Decimal("1000000.00")  # the database's bound; CREDIT_NOTE_MAX (settings) is lower


class LedgerAccount(models.Model):
    class Kind(models.TextChoices):
        BUYER_WALLET = "buyer_wallet", _("Buyer wallet")
        SUPPLIER_PAYABLE = "supplier_payable", _("Supplier payable")
        PLATFORM_REVENUE = "platform_revenue", _("Platform revenue")
        STRIPE_CLEARING = "stripe_clearing", _("Stripe clearing")
        RESERVED_PREPAYMENTS = "reserved_prepayments", _("Reserved prepayments")
        CREDITS_EXPENSE = "credits_expense", _("Credits and refunds expense")

    kind = models.CharField(max_length=32, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_accounts"
    )
    organization = models.ForeignKey(
        "suppliers.Organization", on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_accounts"
    )
    currency = models.CharField(max_length=3, default=platform_currency_code)
    key = models.CharField(max_length=64, unique=True, help_text="kind:owner:currency - one account each.")
    balance = models.DecimalField(
        **MONEY,
        default=Decimal(0),
        editable=False,
        help_text="Owner accounts (buyer wallets, supplier payables): the sum of the account's postings, kept in the "
        "same database transaction as they are written (billing.ledger) and audited against them. Platform accounts "
        "leave it at zero: their balance is summed on read, so settlement workers never queue on one hot row.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    OWNER_KINDS = (Kind.BUYER_WALLET, Kind.SUPPLIER_PAYABLE)

    class Meta:
        ordering = ["kind", "id"]
        constraints = [
            models.CheckConstraint(
                name="ledger_account_owner_matches_kind",
                condition=(Q(kind="buyer_wallet", user__isnull=False, organization__isnull=True))
                | (Q(kind="supplier_payable", user__isnull=True, organization__isnull=False))
                | (~Q(kind__in=["buyer_wallet", "supplier_payable"]) & Q(user__isnull=True, organization__isnull=True)),
            ),
        ]

    def __str__(self) -> str:
        owner = self.user or self.organization or "platform"
        return f"{self.get_kind_display()} ({owner}, {self.currency})"


class LedgerTransaction(models.Model):
    """A balanced set of postings. `key` makes each business effect happen at most once.

    Sealed on PostgreSQL: rows are never updated, deleted or truncated, and postings join a transaction
    only in the database transaction that created it (billing migration 0005).
    """

    class Kind(models.TextChoices):
        USAGE = "usage", _("Usage settlement")
        TOP_UP = "top_up", _("Top-up")
        CREDIT = "credit", _("Credit")
        REFUND = "refund", _("Refund")
        PAYOUT = "payout", _("Payout")

    kind = models.CharField(max_length=16, choices=Kind.choices)
    key = models.CharField(max_length=128, unique=True, help_text="Idempotency: one transaction per effect.")
    description = models.CharField(max_length=255)
    reference = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_txid = models.BigIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="PostgreSQL only: txid_current() of the database transaction that inserted the row, set by a "
        "trigger (not read back on save). Postings may be added to this transaction only in that database transaction.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


class LedgerPosting(models.Model):
    """Append-only. On PostgreSQL the database rejects UPDATE/DELETE/TRUNCATE, unbalanced transactions and
    postings added to a transaction after the database transaction that created it."""

    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="postings")
    account = models.ForeignKey(LedgerAccount, on_delete=models.PROTECT, related_name="postings")
    amount = models.DecimalField(**MONEY, help_text="Signed; a transaction's postings sum to zero.")
    currency = models.CharField(max_length=3, default=platform_currency_code)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["account", "transaction"])]
        constraints = [models.CheckConstraint(name="ledger_posting_not_zero", condition=~Q(amount=0))]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} -> {self.account_id}"


class UsageRecord(models.Model):
    """Seconds an instance ran (compute) or kept its disk (storage) in one metering window.

    Exact inputs only (seconds and a rate); the money is computed and rounded once, at settlement.
    """

    class Kind(models.TextChoices):
        COMPUTE = "compute", _("Compute")
        STORAGE = "storage", _("Storage")

    # No index of its own: the unique (instance, kind, window_start) index starts with it.
    instance = models.ForeignKey(
        "orders.Instance", on_delete=models.PROTECT, related_name="usage_records", db_index=False
    )
    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="usage_records")
    organization = models.ForeignKey("suppliers.Organization", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    seconds = models.PositiveIntegerField()
    rate_per_hour = models.DecimalField(
        max_digits=PRICE_DIGITS,
        decimal_places=PRICE_PLACES,
        help_text="Compute: instance $/h. Storage: disk GB x $/GB-month / 730.",
    )
    settled_by = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="usage_records"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-window_start", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "kind", "window_start"], name="usage_unique_window"),
            models.CheckConstraint(name="usage_window_ordered", condition=Q(window_end__gt=models.F("window_start"))),
        ]
        indexes = [
            # Settlement walks unsettled records buyer by buyer (billing.locks.unsettled_usage_batch).
            models.Index(fields=["buyer", "id"], condition=Q(settled_by__isnull=True), name="usage_unsettled_by_buyer"),
            # Supplier analytics read one organization's usage over a window.
            models.Index(fields=["organization", "window_start"], name="usage_by_organization_window"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} i-{self.instance_id} {self.seconds}s"


class TopUp(models.Model):
    """A buyer adding prepaid credit through Stripe Checkout. Credited once, by the webhook."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending payment")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        REFUNDED = "refunded", _("Refunded")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="top_ups")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default=platform_currency_code)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stripe_checkout_session_id = models.CharField(max_length=255, blank=True, db_index=True)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    checkout_url = models.URLField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.CheckConstraint(name="top_up_positive", condition=Q(amount__gt=0))]

    def __str__(self) -> str:
        return f"top-up {self.pk}: {self.amount} {self.currency} ({self.status})"


class StripeEvent(models.Model):
    """Each Stripe event id is processed once: recorded in the same transaction as its effect."""

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100)
    payload = models.JSONField()
    handled = models.BooleanField(help_text="False for event types we acknowledge and ignore.")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class Payout(models.Model):
    """A transfer of a supplier's payable balance to its Stripe Connect account."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending transfer")
        PAID = "paid", _("Paid")
        FAILED = "failed", _("Failed")

    organization = models.ForeignKey("suppliers.Organization", on_delete=models.PROTECT, related_name="payouts")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default=platform_currency_code)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    stripe_account_id = models.CharField(max_length=255)
    stripe_transfer_id = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(name="payout_positive", condition=Q(amount__gt=0)),
            models.UniqueConstraint(
                fields=["organization"], condition=Q(status="pending"), name="payout_one_pending_per_organization"
            ),
        ]

    def __str__(self) -> str:
        return f"payout {self.pk}: {self.amount} to {self.organization_id} ({self.status})"


class CreditNoteRequest(models.Model):
    """A staff credit note above CREDIT_NOTE_APPROVAL_ABOVE, waiting for a second staff member.

    Nothing is posted while pending; approval posts the credit (`ledger_transaction`, key
    `credit-note-request:<id>`) naming both staff members. The requester may withdraw (reject) their
    own request but never approve it: the database refuses that too."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending approval")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default=platform_currency_code)
    reason = models.TextField(max_length=2000)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True, max_length=2000)
    ledger_transaction = models.OneToOneField(
        LedgerTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="credit_note_request"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            models.CheckConstraint(
                name="credit_note_request_amount_bounded",
                condition=Q(amount__gt=0, amount__lte=CREDIT_NOTE_CEILING),
            ),
            models.CheckConstraint(
                name="credit_note_request_decision_matches_status",
                condition=(Q(status="pending", decided_by__isnull=True, decided_at__isnull=True))
                | (~Q(status="pending") & Q(decided_by__isnull=False, decided_at__isnull=False)),
            ),
            models.CheckConstraint(
                name="credit_note_request_posted_iff_approved",
                condition=(Q(status="approved", ledger_transaction__isnull=False))
                | (~Q(status="approved") & Q(ledger_transaction__isnull=True)),
            ),
            models.CheckConstraint(
                name="credit_note_request_second_approver",
                condition=~Q(status="approved", decided_by=models.F("requested_by")),
            ),
        ]

    def __str__(self) -> str:
        return f"credit note request {self.pk}: {self.amount} {self.currency} to {self.user_id} ({self.status})"
