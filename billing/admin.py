from decimal import Decimal

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList

from marketplace.admin_base import AppendOnlyAdmin

from .models import (
    CreditNoteRequest,
    LedgerAccount,
    LedgerPosting,
    LedgerTransaction,
    Payout,
    StripeEvent,
    TopUp,
    UsageRecord,
)
from .selectors import account_balances


@admin.register(LedgerAccount)
class LedgerAccountAdmin(AppendOnlyAdmin):
    list_display = ["key", "kind", "user", "organization", "currency", "balance", "created_at"]
    list_filter = ["kind", "currency"]
    search_fields = ["key", "user__email", "organization__name"]
    list_select_related = ["user", "organization"]

    def get_changelist(self, request, **kwargs):
        return LedgerAccountChangeList

    @admin.display(description="balance")
    def balance(self, obj: LedgerAccount) -> Decimal:
        return obj.page_balance  # type: ignore[attr-defined]  # set by LedgerAccountChangeList


class LedgerAccountChangeList(ChangeList):
    """The balances of one page of accounts in one query (not one per row)."""

    def get_results(self, request):
        super().get_results(request)
        balances = account_balances([account.pk for account in self.result_list])
        for account in self.result_list:
            account.page_balance = balances[account.pk]


class LedgerPostingInline(admin.TabularInline):
    model = LedgerPosting
    extra = 0
    can_delete = False
    readonly_fields = ["account", "amount", "currency"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(AppendOnlyAdmin):
    list_display = ["id", "kind", "key", "description", "created_by", "created_at"]
    list_filter = ["kind", "created_at"]
    search_fields = ["key", "description"]
    list_select_related = ["created_by"]
    inlines = [LedgerPostingInline]


@admin.register(UsageRecord)
class UsageRecordAdmin(AppendOnlyAdmin):
    list_display = ["id", "instance", "buyer", "kind", "window_start", "seconds", "rate_per_hour", "settled_by"]
    list_filter = ["kind", "window_start"]
    search_fields = ["instance__id", "buyer__email"]
    list_select_related = ["instance", "buyer", "settled_by"]


@admin.register(TopUp)
class TopUpAdmin(AppendOnlyAdmin):
    list_display = ["id", "user", "amount", "currency", "status", "stripe_checkout_session_id", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["user__email", "stripe_checkout_session_id", "stripe_payment_intent_id"]
    list_select_related = ["user"]


@admin.register(StripeEvent)
class StripeEventAdmin(AppendOnlyAdmin):
    list_display = ["event_id", "type", "handled", "received_at"]
    list_filter = ["type", "handled"]
    search_fields = ["event_id"]


@admin.register(Payout)
class PayoutAdmin(AppendOnlyAdmin):
    list_display = ["id", "organization", "amount", "status", "stripe_transfer_id", "attempts", "created_at", "paid_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["organization__name", "stripe_transfer_id"]
    list_select_related = ["organization"]


@admin.register(LedgerPosting)
class LedgerPostingAdmin(AppendOnlyAdmin):
    list_display = ["id", "transaction", "account", "amount", "currency"]
    list_filter = ["currency", "account__kind"]
    search_fields = ["account__key", "transaction__key"]
    list_select_related = ["transaction", "account", "account__user", "account__organization"]


@admin.register(CreditNoteRequest)
class CreditNoteRequestAdmin(AppendOnlyAdmin):
    """Read-only here: credit notes are approved or rejected on the staff adjustments page, where a
    second staff member is required (`billing.adjustments.credit_note_approve`)."""

    list_display = ["id", "user", "amount", "status", "requested_by", "decided_by", "created_at", "decided_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["user__email", "requested_by__email", "decided_by__email", "reason"]
    list_select_related = ["user", "requested_by", "decided_by"]
