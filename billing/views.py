"""The Stripe webhook, and the billing pages for buyers and suppliers."""

import stripe
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.models import User
from marketplace.api.inputs import storable_text
from marketplace.api.pagination import page_of
from marketplace.errors import ApplicationError, ErrorCode, InvalidInput, error_body
from marketplace.money import parse_money
from marketplace.views import posted_id, posted_text, staff_page
from orders.selectors import buyer_balance
from suppliers.selectors import organization_for_user

from . import adjustments, payments, payouts, selectors
from .errors import BillingErrorCode
from .models import LedgerTransaction
from .stripe_gateway import construct_event


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


@login_required
def buyer_billing(request):
    if request.method == "POST":
        try:
            base = request.build_absolute_uri("/billing/")
            top_up = payments.top_up_create(
                user=request.user,
                amount=parse_money(request.POST.get("amount")),  # malformed: None, an "out of range" error
                success_url=f"{base}?top_up=success",
                cancel_url=f"{base}?top_up=cancelled",
            )
        except ApplicationError as error:
            messages.error(request, error.detail)
        else:
            return redirect(top_up.checkout_url)
    if request.GET.get("top_up") == "success":
        messages.success(request, "Payment received: your balance updates as soon as Stripe confirms it.")
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
            "months": selectors.statement_months(user=request.user)[:12],
            "daily": selectors.daily_spend(user=request.user),
        },
    )


@login_required
def supplier_earnings(request):
    organization = organization_for_user(user=request.user)
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


@login_required
def statement_page(request, month: str):
    """A printable monthly statement."""
    try:
        data = selectors.statement(user=request.user, month=month)
    except ApplicationError as error:
        messages.error(request, error.detail)
        return redirect("billing:buyer")
    return render(request, "billing/statement.html", {"statement": data})


@staff_page
def staff_adjustments(request):
    """Staff: credit notes for buyers and refunds of usage charges, each with a reason."""
    if request.method == "POST":
        try:
            reason = posted_text(request, "reason")
            if request.POST.get("action") == "credit":
                user = User.objects.filter(email__iexact=posted_text(request, "email").strip()).first()
                if user is None:
                    raise ApplicationError("No account with that email.", code=ErrorCode.NOT_FOUND)
                amount = parse_money(request.POST.get("amount"))
                if amount is None:
                    raise InvalidInput(
                        "Enter the amount in dollars and cents, such as 25.00.", fields={"amount": ["Invalid amount."]}
                    )
                adjustments.credit_note_issue(user=user, amount=amount, reason=reason, staff=request.user)
                messages.success(request, f"Credited {user.email}.")
            else:
                tx = LedgerTransaction.objects.filter(pk=posted_id(request, "transaction", "transaction")).first()
                if tx is None:
                    raise ApplicationError("No such transaction.", code=ErrorCode.NOT_FOUND)
                adjustments.usage_refund(ledger_transaction=tx, reason=reason, staff=request.user)
                messages.success(request, f"Transaction {tx.pk} refunded.")
        except ApplicationError as error:
            messages.error(request, error.detail)
        return redirect("billing:staff_adjustments")
    recent = LedgerTransaction.objects.filter(kind__in=["credit", "refund"]).select_related("created_by")[:50]
    return render(request, "billing/staff.html", {"recent": recent})
