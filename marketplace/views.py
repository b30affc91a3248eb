"""Public catalog pages (offer search, instance types) and the staff moderation dashboard."""

import functools

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.templatetags.static import static
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from accounts.models import User
from accounts.scopes import ACCOUNT, Scope, page_scope
from orders import supply
from orders.forms import RentForm
from orders.models import ProblemReport
from suppliers import organizations
from suppliers.models import Host, Organization

from . import alerts, moderation, webhooks
from .api.filters import InstanceTypeFilterSet, OfferFilterSet
from .api.inputs import lookup_or_404, text_or_invalid, whole_number
from .api.pagination import page_of
from .errors import ApplicationError, ErrorCode, InvalidInput, NotFound
from .forms import AvailabilityAlertForm, WebhookEndpointForm, add_service_errors
from .models import AuditEntry, InstanceType, WebhookDelivery, WebhookEndpoint
from .selectors import instance_type_list_with_market, offer_list

OFFERS_PER_PAGE = 25


def _query_without(request, *names: str) -> str:
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode()


SORTABLE_COLUMNS = ("price_per_hour", "price_per_tflop_hour", "energy_kwh_per_hour", "reliability")


def _sort_links(request) -> dict[str, dict[str, str]]:
    """For each sortable column: the query string that sorts by it (toggling direction) and its arrow."""
    current = request.GET.get("ordering", "")
    base = _query_without(request, "page", "ordering")
    links = {}
    for column in SORTABLE_COLUMNS:
        descending_now = current == f"-{column}"
        ascending_now = current == column
        target = f"-{column}" if ascending_now else column
        query = f"{base}&ordering={target}" if base else f"ordering={target}"
        arrow = "▲" if ascending_now else "▼" if descending_now else ""
        links[column] = {"query": query, "arrow": arrow}
    return links


@page_scope(None)
def favicon(request):
    """Browsers ask for /favicon.ico on pages that name no icon (the admin's)."""
    return redirect(static("favicon.svg"), permanent=True)


@page_scope(None)
def offer_search(request):
    params = request.GET.copy()
    params.pop("page", None)
    filterset = OfferFilterSet(params, queryset=offer_list())
    # Invalid filters show their errors and no results, never silently unfiltered rows.
    offers = filterset.qs if filterset.is_valid() else offer_list().none()
    page = page_of(offers, OFFERS_PER_PAGE, request.GET.get("page"), search=True)
    return render(
        request,
        "marketplace/offer_list.html",
        {
            "filterset": filterset,
            "page": page,
            "sort": _sort_links(request),
            "query_without_page": _query_without(request, "page"),
        },
    )


@page_scope(None)
def offer_detail(request, offer_id: int):
    offer = get_object_or_404(offer_list(), pk=offer_id)
    similar = (
        offer_list().filter(instance_type=offer.instance_type).exclude(pk=offer.pk).order_by("price_per_hour")[:10]
    )
    context = {"offer": offer, "similar": similar, "rent_form": RentForm(user=request.user)}
    return render(request, "marketplace/offer_detail.html", context)


@page_scope(None)
def instance_type_list(request):
    params = request.GET.copy()
    params.pop("page", None)
    filterset = InstanceTypeFilterSet(params or None, queryset=instance_type_list_with_market())
    if filterset.is_bound:
        types = filterset.qs if filterset.is_valid() else instance_type_list_with_market().none()
    else:
        types = instance_type_list_with_market()
    page = page_of(types, 50, request.GET.get("page"))
    return render(
        request,
        "marketplace/instance_type_list.html",
        {"filterset": filterset, "page": page, "query_without_page": _query_without(request, "page")},
    )


@page_scope(None)
def instance_type_detail(request, name: str):
    lookup_or_404(name)
    instance_type = get_object_or_404(InstanceType.objects.active().select_related("accelerator_model"), name=name)
    offers = offer_list().filter(instance_type=instance_type).order_by("price_per_hour", "id")
    page = page_of(offers, OFFERS_PER_PAGE, request.GET.get("page"))
    return render(
        request,
        "marketplace/instance_type_detail.html",
        {"instance_type": instance_type, "page": page, "query_without_page": ""},
    )


@page_scope(Scope.ORDERS)
@login_required
def availability_alerts(request):
    """The user's availability alerts, and a form to add one."""
    form = AvailabilityAlertForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            alert = alerts.availability_alert_create(user=request.user, **form.cleaned_data)
        except ApplicationError as error:
            add_service_errors(form, error)
        else:
            if alert.region:
                added = _("Alert added: you will be told when %(type)s is on sale in %(region)s.") % {
                    "type": alert.instance_type,
                    "region": alert.region.code,
                }
            else:
                added = _("Alert added: you will be told when %(type)s is on sale.") % {"type": alert.instance_type}
            messages.success(request, added)
            return redirect("availability_alerts")
    # Active alerts are bounded per account; fired one-shot ones are not, so only the newest are shown.
    items = alerts.availability_alerts_owned(user=request.user).order_by("-active", "-created_at", "-id")[:200]
    return render(request, "marketplace/availability_alerts.html", {"form": form, "alerts": items})


@page_scope(Scope.ORDERS)
@login_required
@require_POST
def availability_alert_delete(request, alert_id: int):
    try:
        alerts.availability_alert_delete(user=request.user, alert_id=alert_id)
    except NotFound:
        raise Http404("No such availability alert.") from None
    messages.success(request, _("Alert deleted."))
    return redirect("availability_alerts")


@page_scope(ACCOUNT)
@login_required
def webhook_endpoints(request):
    """The account's webhook endpoints, and a form to add one (its signing secret shown once)."""
    form = WebhookEndpointForm(request.POST or None, event_types=webhooks.EVENT_TYPES)
    secret = None
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = webhooks.endpoint_create(user=request.user, **form.cleaned_data)
        except ApplicationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, _("Endpoint added: %(url)s.") % {"url": endpoint.url})
            form = WebhookEndpointForm(event_types=webhooks.EVENT_TYPES)
    endpoints = WebhookEndpoint.objects.filter(user=request.user)
    return render(request, "marketplace/webhooks.html", {"form": form, "endpoints": endpoints, "secret": secret})


@page_scope(ACCOUNT)
@login_required
def webhook_endpoint(request, endpoint_id: int):
    """One endpoint: its deliveries, newest first, each with its tries; replay, turn on or off, delete."""
    try:
        endpoint = webhooks.endpoint_for_user(user=request.user, endpoint_id=endpoint_id)
    except NotFound:
        raise Http404("No such webhook endpoint.") from None
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "replay":
                delivery = get_object_or_404(
                    WebhookDelivery, pk=whole_number(request.POST.get("delivery")) or 0, endpoint=endpoint
                )
                webhooks.delivery_replay(delivery=delivery)
                messages.success(request, _("Delivery %(id)s will be sent again.") % {"id": delivery.pk})
            elif action in ("enable", "disable"):
                webhooks.endpoint_update(endpoint=endpoint, active=action == "enable")
                messages.success(request, _("Endpoint turned on.") if action == "enable" else _("Endpoint turned off."))
            elif action == "delete":
                webhooks.endpoint_delete(endpoint=endpoint)
                messages.success(request, _("Endpoint deleted."))
                return redirect("webhook_endpoints")
        except ApplicationError as error:
            messages.error(request, error.detail)
        return redirect("webhook_endpoint", endpoint_id=endpoint.pk)
    deliveries = page_of(
        endpoint.deliveries.prefetch_related("attempt_rows").order_by("-id"), 25, request.GET.get("page")
    )
    return render(request, "marketplace/webhook_endpoint.html", {"endpoint": endpoint, "page": deliveries})


def staff_page(view):
    """A staff-only page: an anonymous visitor goes to the login page (and back after), a signed-in
    non-staff user gets a 403 page. No exception is raised, so nothing logs a traceback."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            return render(request, "marketplace/forbidden.html", status=403)
        return view(request, *args, **kwargs)

    return wrapper


def posted_id(request, name: str, missing: str) -> int:
    """An id typed into a staff form: a whole number in ASCII digits, else a form error (`missing`)."""
    value = whole_number((request.POST.get(name) or "").strip())
    if value is None:
        raise InvalidInput(missing, fields={name: [_("A whole number.")]})
    return value


def posted_text(request, name: str) -> str:
    """A text field of a form, refused (a form error) when it holds control characters."""
    return text_or_invalid(request.POST.get(name) or "", field=name)


@page_scope(Scope.STAFF)
@staff_page
def moderation_dashboard(request):
    """Staff: queues with counts, and moderation actions that take a reason."""
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            reason, target = posted_text(request, "reason"), posted_text(request, "target")
            if action in ("suspend_buyer", "reinstate_buyer"):
                buyer = User.objects.filter(email__iexact=target.strip()).first()
                if buyer is None:
                    raise ApplicationError(_("No account with that email."), code=ErrorCode.NOT_FOUND)
                operation = moderation.buyer_suspend if action == "suspend_buyer" else moderation.buyer_reinstate
                operation(buyer=buyer, reason=reason, staff=request.user)
            elif action in ("delist_host", "reinstate_host"):
                host_id = posted_id(request, "target", _("Enter the host id (a whole number)."))
                host = Host.objects.filter(pk=host_id).first()
                if host is None:
                    raise ApplicationError(_("No such host."), code=ErrorCode.NOT_FOUND)
                host_operation = moderation.host_delist if action == "delist_host" else moderation.host_reinstate
                host_operation(host=host, reason=reason, staff=request.user)
            elif action in ("approve_supplier", "reject_supplier"):
                organization_id = posted_id(request, "target", _("Enter the organization id (a whole number)."))
                organization = Organization.objects.filter(pk=organization_id).first()
                if organization is None:
                    raise ApplicationError(_("No such organization."), code=ErrorCode.NOT_FOUND)
                if action == "approve_supplier":
                    organizations.organization_approve(organization=organization, actor=request.user)
                else:
                    organizations.organization_reject(organization=organization, reason=reason, actor=request.user)
            elif action == "suspend_supplier":
                organization = Organization.objects.filter(name=target.strip()).first()
                if organization is None:
                    raise ApplicationError(_("No such organization."), code=ErrorCode.NOT_FOUND)
                if not reason.strip():
                    raise ApplicationError(_("A suspension needs a reason."), code=ErrorCode.INVALID)
                supply.organization_suspend(organization=organization, reason=reason, actor=request.user)
            else:
                raise ApplicationError(_("Unknown action."), code=ErrorCode.INVALID)
        except ApplicationError as error:
            messages.error(request, error.detail)
        else:
            messages.success(request, _("Done; it is in the audit log."))
        return redirect("moderation")
    queues = {
        _("Suppliers pending review"): Organization.objects.filter(status="pending").count(),
        _("Hosts pending approval"): Host.objects.filter(status="pending").count(),
        _("Hosts with inventory mismatch"): Host.objects.exclude(inventory_mismatch=None).count(),
        _("Hosts offline"): Host.objects.filter(agent_status="offline").count(),
        _("Unverified approved hosts"): Host.objects.filter(status="approved", verified=False).count(),
        _("Suspended buyers"): User.objects.exclude(suspended_at=None).count(),
        _("Open problem reports"): ProblemReport.objects.filter(status__in=["open", "answered"]).count(),
    }
    return render(
        request,
        "marketplace/moderation.html",
        {
            "queues": queues,
            "pending_organizations": Organization.objects.filter(status="pending").prefetch_related("documents")[:20],
            "problem_hosts": Host.objects.exclude(inventory_mismatch=None).select_related("organization")[:20],
            "audit": AuditEntry.objects.select_related("actor")[:30],
            "open_reports": ProblemReport.objects.filter(status__in=["open", "answered"]).select_related("instance")[
                :30
            ],
        },
    )
