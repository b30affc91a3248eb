"""The Stripe webhook, and the billing pages for buyers and suppliers."""

import stripe
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.utils.formats import date_format
from django.utils.translation import gettext
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.scopes import Scope, page_scope
from marketplace.api.inputs import storable_text, whole_number
from marketplace.api.pagination import page_of
from marketplace.charts import Series, chart_spec
from marketplace.currency import money_text
from marketplace.errors import ApplicationError, ErrorCode, error_body
from marketplace.forms import add_service_errors
from marketplace.money import parse_money
from marketplace.views import staff_page
from orders.selectors import buyer_balance
from suppliers.selectors import organization_for_user

from . import adjustments, payments, payouts, selectors
from .errors import BillingErrorCode
from .forms import CreditNoteDecisionForm, CreditNoteForm, UsageRefundForm
from .models import CreditNoteRequest, LedgerTransaction
from .stripe_gateway import construct_event, payments_configured


@page_scope(None)
@csrf_exempt
@require_POST
def stripe_webhook(request):
    """Verified with the signing secret; each event id applied once; unknown types acknowledged."""
    try:
        event = construct_event(request.body, request.headers.get("Stripe-Signature", ""))
    except (ValueError, stripe.SignatureVerificationError) as error:
        return JsonResponse(error_body(BillingErrorCode.INVALID_SIGNATURE, f"Webhook rejected: {error}"), status=400)
    except RecursionError:  # signed, but nested too deep to parse
        return JsonResponse(
            error_body(ErrorCode.INVALID, "Webhook rejected: the event is nested too deep."), status=400
        )
    try:
        # NUL and lone surrogates cannot be stored (the payload is kept): replaced, so a payment
        # event is never lost to an odd character in a field we do not read.
        handled = payments.stripe_event_handle(event=storable_text(event.to_dict()))
    except ApplicationError as error:  # not an event at all (no id or type)
        return JsonResponse(error_body(error.code, error.detail, error.fields), status=error.status_code)
    return JsonResponse({"received": True, "handled": handled})


@page_scope(Scope.BILLING)
@login_required
def buyer_billing(request):
    if request.method == "POST":
        try:
            base = request.build_absolute_uri("/billing/")
            top_up = payments.top_up_create(
                user=request.user,
                payer=request.person,
                amount=parse_money(request.POST.get("amount")),  # malformed: None, an "out of range" error
                success_url=f"{base}?top_up=success",
                cancel_url=f"{base}?top_up=cancelled",
            )
        except ApplicationError as error:
            messages.error(request, error.detail)
        else:
            return redirect(top_up.checkout_url)
    if request.GET.get("top_up") == "success":
        messages.success(request, gettext("Payment received: your balance updates as soon as Stripe confirms it."))
    elif request.GET.get("top_up") == "cancelled":
        messages.info(request, gettext("Top-up cancelled: nothing was charged."))
    usage = page_of(selectors.usage_for_user(user=request.user), 25, request.GET.get("usage_page"))
    ledger = page_of(selectors.ledger_for_user(user=request.user), 25, request.GET.get("ledger_page"))
    return render(
        request,
        "billing/buyer.html",
        {
            "summary": buyer_balance(user=request.user),
            "usage": usage,
            "usage_rows": [(record, selectors.usage_charge(record)) for record in usage],
            "ledger": ledger,
            "top_ups": selectors.top_ups_for_user(user=request.user)[:10],
            "payments_configured": payments_configured(),
            "months": selectors.statement_months(user=request.user)[:12],
            **_spend_per_day(request.user),
        },
    )


@page_scope(Scope.SUPPLIER)
@login_required
def supplier_earnings(request):
    organization = organization_for_user(user=request.user, area=Scope.BILLING, write=request.method == "POST")
    if organization is None:
        return redirect("suppliers:onboarding")
    if request.method == "POST":
        try:
            url = payouts.connect_onboarding_link(
                organization=organization,
                return_url=request.build_absolute_uri("/billing/earnings/"),
                refresh_url=request.build_absolute_uri("/billing/earnings/"),
            )
        except ApplicationError as error:
            messages.error(request, error.detail)
        else:
            return redirect(url)
    return render(
        request,
        "billing/earnings.html",
        {
            "organization": organization,
            "earnings": selectors.supplier_earnings(organization=organization),
            "payouts": selectors.payouts_for_organization(organization=organization)[:50],
            "by_host": selectors.revenue_by_host(organization=organization),
        },
    )


@page_scope(Scope.BILLING)
@login_required
def statement_page(request, month: str):
    """A printable monthly statement."""
    try:
        data = selectors.statement(user=request.user, month=month)
    except ApplicationError as error:
        messages.error(request, error.detail)
        return redirect("billing:buyer")
    return render(request, "billing/statement.html", {"statement": data})


def _staff_adjust(request, action: str, form) -> str:
    """Run the flow the posted form names; the message to show when it succeeds."""
    data = form.cleaned_data
    if action == "credit":
        result = adjustments.credit_note_issue(
            user=form.buyer, amount=data["amount"], reason=data["reason"], staff=request.user
        )
        if isinstance(result, CreditNoteRequest):
            return gettext(
                "%(amount)s for %(email)s is above %(threshold)s: requested; another staff member must approve it."
            ) % {
                "amount": money_text(result.amount),
                "email": form.buyer.email,
                "threshold": money_text(settings.CREDIT_NOTE_APPROVAL_ABOVE),
            }
        return gettext("Credited %(email)s.") % {"email": form.buyer.email}
    if action == "refund":
        adjustments.usage_refund(record=data["usage_record"], reason=data["reason"], staff=request.user)
        return gettext("Usage record %(id)s refunded.") % {"id": data["usage_record"].pk}
    credit_request = data["request"]
    if data["decision"] == "approve":
        adjustments.credit_note_approve(request_id=credit_request.pk, staff=request.user)
        return gettext("Credit note %(id)s approved: %(email)s was credited.") % {
            "id": credit_request.pk,
            "email": credit_request.user.email,
        }
    adjustments.credit_note_reject(request_id=credit_request.pk, staff=request.user, reason=data["reason"])
    return gettext("Credit note %(id)s rejected.") % {"id": credit_request.pk}


@page_scope(Scope.STAFF)
@staff_page
def staff_adjustments(request):
    """Staff: credit notes for buyers (above the approval threshold, requests a second staff member
    approves or rejects here) and refunds of usage charges, each with a reason. A refused form is
    shown again with its errors next to the fields and what was typed kept."""
    action = request.POST.get("action") if request.method == "POST" else None
    page_forms = {
        "credit": CreditNoteForm(request.POST if action == "credit" else None),
        "refund": UsageRefundForm(request.POST if action == "refund" else None),
        "decide": CreditNoteDecisionForm(request.POST if action == "decide" else None),
    }
    posted = page_forms.get(action or "")
    if posted is not None and posted.is_valid():
        try:
            message = _staff_adjust(request, action or "", posted)
        except ApplicationError as error:
            add_service_errors(posted, error)
        else:
            messages.success(request, message)
            return redirect("billing:staff_adjustments")
    elif request.method == "POST" and posted is None:
        messages.error(request, gettext("Unknown action."))
    recent = LedgerTransaction.objects.filter(kind__in=["credit", "refund"]).select_related("created_by")[:50]
    pending = list(selectors.credit_note_requests_pending()[:100])
    # The row a refused decision came from shows its errors and keeps the reason typed there.
    decision_row = whole_number((request.POST.get("request") or "").strip()) if action == "decide" else None
    if decision_row not in {row.pk for row in pending}:
        decision_row = None
    return render(
        request,
        "billing/staff.html",
        {
            "recent": recent,
            "credit_form": page_forms["credit"],
            "refund_form": page_forms["refund"],
            "decision_form": page_forms["decide"],
            "pending": pending,
            "decision_row": decision_row,
            "decided": selectors.credit_note_requests_decided()[:20],
            "approval_above": settings.CREDIT_NOTE_APPROVAL_ABOVE,
            "credit_maximum": adjustments.credit_note_maximum(),
        },
    )


def spend_per_day_chart(daily: list[dict], *, chart_id: str = "spend-per-day") -> dict:
    """Usage charges per day (`selectors.daily_spend`) as a bar chart; the buyer dashboard draws it too."""
    return chart_spec(
        chart_id,
        gettext("Usage charges per day, last %(days)s days") % {"days": len(daily)},
        kind="bar",
        labels=[date_format(row["day"], "M j") for row in daily],
        series=[Series(gettext("Charged"), [row["amount"] for row in daily])],
        x_title=gettext("Day (UTC)"),
        y_title=gettext("Charged"),
        value_format="money",
    )


def _spend_per_day(user) -> dict:
    daily = selectors.daily_spend(user=user)
    return {"daily": daily, "spend_chart": spend_per_day_chart(daily)}
