"""Buyer pages: the dashboard, rent from an offer with a live quote, my instances (live), instance detail."""

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST, require_safe

from accounts.middleware import acting_membership
from accounts.roles import role_allows
from accounts.scopes import Scope, page_scope
from accounts.services import buyer_set_spend_limit
from billing.selectors import money_sum
from billing.views import spend_per_day_chart
from marketplace.currency import platform_currency
from marketplace.errors import ApplicationError, Forbidden
from marketplace.forms import add_service_errors
from marketplace.selectors import offer_list
from marketplace.views import posted_text

from . import buyer_dashboard, disputes, launch, lifecycle, logs, placement, price_changes, quotes, selectors
from .forms import LaunchTemplateForm, RentForm, ReportAnswerForm, ReportResolveForm, SpendLimitForm
from .launch import environment_shown
from .models import Instance, InstanceStatus, LaunchTemplate, ProblemReport
from .ports import connection_details


@page_scope(Scope.ORDERS)
@login_required
@require_POST
def offer_quote(request, offer_id: int):
    """htmx fragment: the live quote for the rent form's current values."""
    form = RentForm(request.POST, user=request.user)
    context = {"form": form}
    if form.is_valid():
        try:
            context["quote"] = quotes.quote_create(request=form.order_request(offer_id=offer_id), buyer=request.user)
        except ApplicationError as error:
            context["error"] = error
    return render(request, "orders/_quote.html", context)


@page_scope(Scope.ORDERS)
@login_required
def offer_rent(request, offer_id: int):
    offer = get_object_or_404(offer_list(), pk=offer_id)
    form = RentForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            order = placement.order_place(
                buyer=request.user, request=form.order_request(offer_id=offer.pk), placed_by=request.person
            )
        except ApplicationError as error:
            add_service_errors(form, error)
        else:
            messages.success(
                request,
                _("Order %(id)s placed: %(count)s x %(type)s provisioning.")
                % {"id": order.pk, "count": order.count, "type": order.instance_type},
            )
            return redirect("orders:instances")
    return render(request, "marketplace/offer_detail.html", {"offer": offer, "rent_form": form, "similar": []})


def _live_burn(user) -> Decimal:
    return money_sum(Instance.objects.live().filter(buyer=user), "price_per_hour")


@page_scope(Scope.INSTANCES)
@login_required
def instance_list(request):
    instances = selectors.instance_list_for_user(user=request.user).filter(buyer=request.user)
    show = request.GET.get("show", "active")
    if show == "active":
        instances = instances.not_terminated()
    form = SpendLimitForm(initial={"spend_limit_per_hour": request.user.spend_limit_per_hour})
    context = {"instances": instances[:200], "show": show, "burn": _live_burn(request.user), "limit_form": form}
    template = "orders/_instance_rows.html" if request.headers.get("HX-Request") else "orders/instance_list.html"
    return render(request, template, context)


def _may_read(request) -> dict[str, bool]:
    """The dashboard's parts the person may see: all for oneself, what the role reads for a team."""
    membership = acting_membership(request)
    return {
        area: membership is None or role_allows(membership.role, area, write=False)
        for area in (Scope.INSTANCES.value, Scope.BILLING.value)
    }


@page_scope(None)  # every role opens it; each part shows only what the role may read
@login_required
@require_safe
def dashboard(request):
    """The buyer's first page: live instances with their actions, money, spend per day, recent
    events and problem reports. htmx polls the live instances' rows."""
    may_read = _may_read(request)
    live = buyer_dashboard.live_instances(buyer=request.user) if may_read["instances"] else None
    if request.headers.get("HX-Request"):
        return render(request, "orders/_dashboard_instances.html", {"live": live})
    context = {"may_read": may_read, "live": live}
    if may_read["instances"]:
        context["events"] = buyer_dashboard.recent_events(buyer=request.user)
        context["reports"] = buyer_dashboard.problem_reports(buyer=request.user)
    if may_read["billing"]:
        context["funds"] = buyer_dashboard.buyer_money(buyer=request.user)
        daily = buyer_dashboard.spend_per_day(buyer=request.user)
        context["spend_chart"] = spend_per_day_chart(daily, chart_id="dashboard-spend")
    return render(request, "orders/dashboard.html", context)


@page_scope(Scope.BILLING)
@login_required
@require_POST
def spend_limit(request):
    form = SpendLimitForm(request.POST)
    if form.is_valid():
        try:
            buyer_set_spend_limit(buyer=request.user, limit_per_hour=form.cleaned_data["spend_limit_per_hour"])
        except ApplicationError as error:
            messages.error(request, error.detail)
        else:
            messages.success(request, _("Spend limit updated."))
    else:
        messages.error(
            request, _("Enter a limit in %(symbol)s per hour, 0 or more.") % {"symbol": platform_currency().symbol}
        )
    return redirect("orders:instances")


@page_scope(Scope.INSTANCES)
@login_required
def instance_detail(request, instance_id: int):
    instance = selectors.instance_get_for_user(user=request.user, instance_id=instance_id)
    actions = buyer_dashboard.instance_actions(instance.status)  # the same buttons as the dashboard's
    template = "orders/_instance_state.html" if request.headers.get("HX-Request") else "orders/instance_detail.html"
    current_price = None
    if instance.pricing == "on_demand" and instance.status != InstanceStatus.TERMINATED:
        current_price = price_changes.current_price_for(instance)
    context = {
        "instance": instance,
        "events": instance.events.all(),
        "actions": actions,
        "current_price": current_price,
        "report_categories": ProblemReport.Category.choices,
        "disk_grace_days": settings.STOPPED_DISK_GRACE_DAYS,
        "no_accelerator_vcpus": settings.NO_ACCELERATOR_MODE_VCPUS,
        "connections": connection_details(instance, ports=instance.ports.all()),
        "environment": environment_shown(instance.order.environment),
    }
    return render(request, template, context)


@page_scope(Scope.INSTANCES)
@login_required
def instance_logs(request, instance_id: int):
    """htmx fragment: the live tail of the instance's output (renter and staff only, as the API)."""
    instance = selectors.instance_get_for_user(user=request.user, instance_id=instance_id)
    text, log = logs.instance_log_tail(instance=instance, lines=logs.DEFAULT_TAIL_LINES)
    return render(request, "orders/_log_tail.html", {"instance": instance, "text": text, "log": log})


@page_scope(Scope.ORDERS)
@login_required
def launch_templates(request):
    """The buyer's own launch templates beside the curated ones; a form to add one."""
    form = LaunchTemplateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            template = launch.launch_template_create(owner=request.user, data=form.service_data())
        except ApplicationError as error:
            add_service_errors(form, error)
        else:
            messages.success(
                request, _("Template “%(name)s” saved: choose it on the rent form.") % {"name": template.name}
            )
            return redirect("orders:templates")
    templates = launch.launch_templates_visible(request.user).filter(Q(owner=request.user) | Q(owner__isnull=True))
    return render(request, "orders/templates.html", {"form": form, "templates": templates.order_by("owner", "name")})


@page_scope(Scope.ORDERS)
@login_required
@require_POST
def launch_template_delete(request, template_id: int):
    template = get_object_or_404(LaunchTemplate, pk=template_id, owner=request.user)
    launch.launch_template_delete(template=template, user=request.user)
    messages.success(request, _("Template “%(name)s” deleted.") % {"name": template.name})
    return redirect("orders:templates")


CHART_WIDTH, CHART_HEIGHT, CHART_SECONDS = 600, 150, 3600


def _chart_points(samples: list[dict], key: str, top: float, now: int) -> str:
    """SVG polyline points of one series over the last hour: x by age, y scaled to `top`."""
    points = []
    for sample in samples:
        x = CHART_WIDTH * (1 - (now - sample["at"]) / CHART_SECONDS)
        y = CHART_HEIGHT * (1 - min(sample[key], top) / top) if top else CHART_HEIGHT
        points.append(f"{max(0.0, x):.1f},{y:.1f}")
    return " ".join(points)


@page_scope(Scope.INSTANCES)
@login_required
def instance_utilization(request, instance_id: int):
    """htmx fragment: the last hour of accelerator utilization and memory as a chart, uptime, cost."""
    instance = selectors.instance_get_for_user(user=request.user, instance_id=instance_id)
    data = selectors.instance_utilization(instance=instance)
    samples = data["samples"]
    now = int(timezone.now().timestamp())
    memory_top = max((s["memory_used_mib"] for s in samples), default=0)
    context = {
        "instance": instance,
        **data,
        "latest": samples[-1] if samples else None,
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "utilization_points": _chart_points(samples, "utilization_percent", 100, now),
        "memory_points": _chart_points(samples, "memory_used_mib", memory_top, now),
        "memory_top_gib": round(memory_top / 1024, 1),
        "uptime": timedelta(seconds=int(data["uptime_seconds"])) if data["uptime_seconds"] is not None else None,
    }
    return render(request, "orders/_utilization.html", context)


def _accept_price(*, instance, actor_user):
    return price_changes.instance_accept_current_price(instance=instance, buyer=actor_user)


def _start_without_accelerators(*, instance, actor_user):
    return lifecycle.instance_start(instance=instance, actor_user=actor_user, accelerators=False)


ACTIONS = {
    "stop": lifecycle.instance_stop,
    "start": lifecycle.instance_start,
    "start-without-accelerators": _start_without_accelerators,
    "terminate": lifecycle.instance_terminate,
    "accept-price": _accept_price,
}

ACTION_REQUESTED = {
    "stop": gettext_lazy("Stop requested."),
    "start": gettext_lazy("Start requested."),
    "start-without-accelerators": gettext_lazy("Start without accelerators requested."),
    "terminate": gettext_lazy("Terminate requested."),
    "accept-price": gettext_lazy("Accept price requested."),
}


@page_scope(Scope.INSTANCES)
@login_required
@require_POST
def instance_action(request, instance_id: int, action: str):
    instance = selectors.instance_get_for_user(user=request.user, instance_id=instance_id)
    operation = ACTIONS.get(action)
    if operation is None:
        return redirect("orders:instance_detail", instance_id=instance.pk)
    try:
        operation(instance=instance, actor_user=request.user)
    except ApplicationError as error:
        messages.error(request, error.detail)
    else:
        messages.success(request, str(ACTION_REQUESTED[action]))
    back_to = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(back_to, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(back_to)  # a page of this site the action was taken from (the dashboard)
    return redirect("orders:instance_detail", instance_id=instance.pk)


@page_scope(Scope.INSTANCES)
@login_required
@require_POST
def instance_report(request, instance_id: int):
    """Buyer files a problem report from the instance page."""
    instance = selectors.instance_get_for_user(user=request.user, instance_id=instance_id)
    try:
        report = disputes.report_create(
            buyer=request.user,
            instance=instance,
            category=posted_text(request, "category"),
            description=posted_text(request, "description"),
        )
    except ApplicationError as error:
        messages.error(request, f"{error.detail} {' '.join(m for ms in error.fields.values() for m in ms)}")
        return redirect("orders:instance_detail", instance_id=instance.pk)
    messages.success(request, _("Report filed: the supplier and our staff are told."))
    return redirect("orders:report_detail", report_id=report.pk)


@page_scope(Scope.INSTANCES)
@login_required
def report_detail(request, report_id: int):
    """One report: the buyer, the supplier (answer) and staff (evidence, resolve) each see their part.
    A refused answer or resolution is shown again with its errors next to the fields, as typed."""
    report = disputes.report_get_for_user(user=request.user, report_id=report_id)
    action = request.POST.get("action") if request.method == "POST" else None
    answer_form = ReportAnswerForm(request.POST if action == "answer" else None)
    resolve_form = ReportResolveForm(request.POST if action == "resolve" else None)
    posted = {"answer": answer_form, "resolve": resolve_form}.get(action or "")
    if posted is not None and posted.is_valid():
        try:
            if action == "answer":
                disputes.report_answer(user=request.user, report=report, answer=posted.cleaned_data["answer"])
            else:
                disputes.report_resolve(
                    staff=request.user,
                    report=report,
                    credit=posted.cleaned_data["credit"],
                    reason=posted.cleaned_data["reason"],
                )
        except ApplicationError as error:
            add_service_errors(posted, error)
            report.refresh_from_db()  # resolved meanwhile by someone else: the forms go away
            if report.resolved_at or isinstance(error, Forbidden):  # no form left to show the error on
                messages.error(request, error.detail)
        else:
            messages.success(request, _("Saved."))
            return redirect("orders:report_detail", report_id=report.pk)
    elif request.method == "POST" and posted is None:
        return redirect("orders:report_detail", report_id=report.pk)
    is_supplier = report.instance.host.organization.memberships.filter(user=request.user).exists()
    context = {
        "report": report,
        "is_supplier": is_supplier,
        "answer_form": answer_form,
        "resolve_form": resolve_form,
    }
    if request.user.is_staff:
        context["evidence"] = disputes.report_evidence(report=report)
        payments = disputes.report_rental_payments(report=report)
        multiple = disputes.report_credit_multiple(report)
        context["credit_bound"] = {
            "paid": payments.paid,
            "credited": payments.credited,
            "multiple": multiple,
            "bound": payments.bound(multiple),
        }
    return render(request, "orders/report_detail.html", context)
