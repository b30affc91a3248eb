"""Supplier pages: onboarding, dashboard, host declaration and detail. Thin: services decide."""

import datetime as dt

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from accounts.forms import InvitationForm
from accounts.scopes import Scope, page_scope
from accounts.views import members_context, members_post
from marketplace.charts import Series, chart_spec
from marketplace.errors import ApplicationError, InvalidInput
from marketplace.forms import add_service_errors
from orders import disputes, supplier_analytics, supply

from . import agent_services, hosts, organizations, selectors
from .agent_distribution import agent_archive
from .documents import organization_document_upload
from .forms import HostForm, OrganizationForm
from .models import OrganizationDocument
from .offers import host_allocated_claims, host_capacity_usage, host_carriable_types


def _organization_or_redirect(request):
    organization = selectors.organization_for_user(user=request.user, area=Scope.SUPPLIER)
    if organization is None:
        messages.info(request, gettext("Tell us about your organization first."))
    return organization


@page_scope(Scope.SUPPLIER)
@login_required
def onboarding(request):
    organization = selectors.organization_for_user(user=request.user)
    form = OrganizationForm(request.POST or None, instance=organization)
    if request.method == "POST" and form.is_valid():
        data = {name: form.cleaned_data[name] for name in form.Meta.fields}
        try:
            if organization is None:
                organizations.organization_create(owner=request.user, **data)
                messages.success(
                    request, gettext("Thanks! Your organization is pending review; you can add hosts now.")
                )
            else:
                organizations.organization_update(by=request.user, **data)
                messages.success(request, gettext("Organization updated."))
        except ApplicationError as error:
            add_service_errors(form, error)
        else:
            return redirect("suppliers:dashboard")
    return render(request, "suppliers/onboarding.html", {"form": form, "organization": organization})


@page_scope(Scope.SUPPLIER)
@login_required
def dashboard(request):
    organization = _organization_or_redirect(request)
    if organization is None:
        return redirect("suppliers:onboarding")
    hosts = selectors.host_list_for_user(user=request.user).filter(organization=organization).order_by("name")
    context = {
        "organization": organization,
        "hosts": hosts,
        "appeals_email": settings.APPEALS_EMAIL,
        "open_reports": disputes.reports_open_for_organization(organization_id=organization.pk),
    }
    return render(request, "suppliers/dashboard.html", context)


@page_scope(Scope.SUPPLIER)
@login_required
def host_create(request):
    organization = _organization_or_redirect(request)
    if organization is None:
        return redirect("suppliers:onboarding")
    form = HostForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            host = hosts.host_create(user=request.user, **form.service_data())
        except ApplicationError as error:
            add_service_errors(form, error)
        else:
            messages.success(
                request,
                gettext("Host %(name)s declared; it is pending verification by our staff.") % {"name": host.name},
            )
            return redirect("suppliers:host_detail", host_id=host.pk)
    return render(request, "suppliers/host_form.html", {"form": form, "host": None})


@page_scope(Scope.SUPPLIER)
@login_required
def host_edit(request, host_id: int):
    host = selectors.host_get_for_member(user=request.user, host_id=host_id)
    form = HostForm(request.POST or None, instance=host)
    if request.method == "POST" and form.is_valid():
        changed = {name: form.service_data()[name] for name in form.changed_data if name in form.service_data()}
        try:
            supply.host_update(host=host, **changed)
        except ApplicationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, gettext("Host updated; its offers were recomputed."))
            return redirect("suppliers:host_detail", host_id=host.pk)
    return render(request, "suppliers/host_form.html", {"form": form, "host": host})


@page_scope(Scope.SUPPLIER)
@login_required
def host_detail(request, host_id: int):
    host = selectors.host_get_for_user(user=request.user, host_id=host_id)
    offers = host.offers.listed().select_related("instance_type")
    offers = offers.order_by("instance_type__accelerator_count", "price_per_hour")
    allocated = host_allocated_claims(host)
    carriable = sorted(
        ((t, n) for t, n in host_carriable_types(host, allocated=allocated).items() if n > 0),
        key=lambda pair: (pair[0].accelerator_count, pair[0].vcpus, pair[0].name),
    )
    return render(
        request,
        "suppliers/host_detail.html",
        {
            "host": host,
            "offers": offers,
            "carriable": carriable,
            "allocated_count": len(allocated),
            "usage": host_capacity_usage(host),
            "appeals_email": settings.APPEALS_EMAIL,
            **_host_analytics_context(request, host),
        },
    )


def _analytics_charts(points, range_, chart_prefix: str) -> dict:
    """The utilization/idle line chart and the earnings bar chart of a series of analytics points."""
    hourly = range_.bucket == "hour"
    labels = [date_format(point.start, "H:i" if hourly else "M j") for point in points]
    x_title = gettext("Hour (UTC)") if hourly else gettext("Day (UTC)")
    utilization = chart_spec(
        f"{chart_prefix}-utilization",
        gettext("Utilization and idle rate"),
        kind="line",
        labels=labels,
        series=[
            Series(gettext("Utilization"), [point.usage.utilization for point in points]),
            Series(gettext("Idle"), [point.usage.idle for point in points]),
        ],
        x_title=x_title,
        y_title=gettext("Share of listed accelerator-hours"),
        value_format="percent",
    )
    earnings = chart_spec(
        f"{chart_prefix}-earnings",
        gettext("Earnings"),
        kind="bar",
        labels=labels,
        series=[Series(gettext("Earned"), [point.usage.earned for point in points])],
        x_title=x_title,
        y_title=gettext("Supplier share of settled usage"),
        value_format="money",
    )
    return {"utilization_chart": utilization, "earnings_chart": earnings}


def _host_analytics_context(request, host) -> dict:
    """The host page's analytics section. A bad `range` or `target` falls back to the default here,
    so the host page itself never fails on them (the analytics page answers them with a 400)."""
    try:
        range_ = supplier_analytics.analytics_range_parse(request.GET.get("range"))
    except InvalidInput:
        range_ = supplier_analytics.RANGES[supplier_analytics.DEFAULT_RANGE]
    try:
        target = supplier_analytics.target_occupancy_parse(request.GET.get("target"))
    except InvalidInput:
        target = supplier_analytics.TARGET_OCCUPANCY_DEFAULT
    data = supplier_analytics.supplier_analytics(
        organization_id=host.organization_id, range_=range_, target_percent=target, host_id=host.pk
    )
    host_data = data.hosts[0]
    return {
        "host_analytics": host_data,
        "analytics_range": range_,
        "analytics_ranges": supplier_analytics.RANGES.values(),
        "min_fills": supplier_analytics.MIN_FILLS,
        "standings": supplier_analytics.offer_standings(organization_id=host.organization_id, host_id=host.pk),
        "host_charts": _analytics_charts(host_data.points, range_, f"host-{host.pk}"),
    }


@page_scope(Scope.SUPPLIER)
@login_required
def analytics(request):
    """Utilization, idle rate, sold accelerator-hours and earnings over time, price hints and why
    listed offers are not rented, for the person's organization. It needs the hosts area (owner,
    admin, member, read only): billing-only people see earnings on the earnings page, not hosts."""
    organization = _organization_or_redirect(request)
    if organization is None:
        return redirect("suppliers:onboarding")
    context = {
        "organization": organization,
        "ranges": supplier_analytics.RANGES.values(),
        "min_fills": supplier_analytics.MIN_FILLS,
    }
    try:
        range_ = supplier_analytics.analytics_range_parse(request.GET.get("range"))
        target = supplier_analytics.target_occupancy_parse(request.GET.get("target"))
    except InvalidInput as error:
        return render(request, "suppliers/analytics.html", {**context, "error": error}, status=error.status_code)
    data = supplier_analytics.supplier_analytics(organization_id=organization.pk, range_=range_, target_percent=target)
    standings = supplier_analytics.offer_standings(organization_id=organization.pk)
    context |= {
        "analytics": data,
        "range": range_,
        "target": target,
        "standings": standings[: supplier_analytics.STANDINGS_SHOWN],
        "standings_total": len(standings),
        **_analytics_charts(data.points, range_, "supplier"),
    }
    return render(request, "suppliers/analytics.html", context)


@page_scope(Scope.SUPPLIER)
@login_required
def host_agent_status(request, host_id: int):
    """htmx fragment: the host agent's live status, polled by the host page."""
    host = selectors.host_get_for_user(user=request.user, host_id=host_id)
    return render(request, "suppliers/_agent_status.html", {"host": host})


@page_scope(Scope.SUPPLIER)
@login_required
@require_POST
def host_registration_token(request, host_id: int):
    host = selectors.host_get_for_member(user=request.user, host_id=host_id)
    token = agent_services.host_registration_token_issue(host=host, user=request.user)
    platform = request.build_absolute_uri("/").rstrip("/")
    return render(request, "suppliers/registration_token.html", {"host": host, "token": token, "platform": platform})


@page_scope(Scope.SUPPLIER)
@login_required
@require_POST
def host_listing(request, host_id: int):
    host = selectors.host_get_for_member(user=request.user, host_id=host_id)
    listed = request.POST.get("listed") == "1"
    try:
        hosts.host_set_listed(host=host, listed=listed)
    except ApplicationError as error:
        messages.error(request, error.detail)
    else:
        messages.success(
            request, gettext("Host listed again.") if listed else gettext("Host delisted; its offers are hidden.")
        )
    return redirect("suppliers:host_detail", host_id=host.pk)


@page_scope(Scope.SUPPLIER)
@login_required
@require_POST
def host_delete(request, host_id: int):
    host = selectors.host_get_for_member(user=request.user, host_id=host_id)
    try:
        hosts.host_delete(host=host)
    except ApplicationError as error:
        messages.error(request, error.detail)
        return redirect("suppliers:host_detail", host_id=host.pk)
    messages.success(request, gettext("Host %(name)s removed.") % {"name": host.name})
    return redirect("suppliers:dashboard")


@page_scope(Scope.SUPPLIER)
@login_required
@require_POST
def host_maintenance(request, host_id: int):
    """Schedule maintenance from the host page (times are UTC)."""
    host = selectors.host_get_for_user(user=request.user, host_id=host_id)

    def when(name):
        value = parse_datetime(request.POST.get(name, "") or "")
        return value.replace(tzinfo=dt.UTC) if value and value.tzinfo is None else value

    try:
        supply.maintenance_schedule(
            user=request.user,
            host=host,
            starts_at=when("starts_at"),
            ends_at=when("ends_at"),
            reason=request.POST.get("reason", ""),
        )
    except ApplicationError as error:
        problems = " ".join(m for messages_ in error.fields.values() for m in messages_)
        messages.error(request, f"{error.detail} {problems}")
    else:
        messages.success(request, gettext("Maintenance scheduled; renters were notified."))
    return redirect("suppliers:host_detail", host_id=host.pk)


@page_scope(Scope.SUPPLIER)
@login_required
def documents(request):
    """Upload verification documents; see what was sent."""
    organization = selectors.organization_for_user(user=request.user)
    if organization is None:
        return redirect("suppliers:onboarding")
    if request.method == "POST":
        try:
            organization_document_upload(
                user=request.user, kind=request.POST.get("kind", ""), upload=request.FILES.get("file")
            )
        except ApplicationError as error:
            messages.error(request, " ".join(m for ms in error.fields.values() for m in ms) or error.detail)
        else:
            messages.success(request, gettext("Document uploaded; our staff will review it."))
        return redirect("suppliers:documents")
    return render(
        request,
        "suppliers/documents.html",
        {
            "organization": organization,
            "documents": organization.documents.all(),
            "kinds": OrganizationDocument.Kind.choices,
        },
    )


@page_scope(Scope.SUPPLIER)
@login_required
def document_download(request, document_id: int):
    """Members of the organization and staff only; everyone else gets a 404."""
    document = OrganizationDocument.objects.select_related("organization").filter(pk=document_id).first()
    allowed = document is not None and (
        request.user.is_staff or document.organization.memberships.filter(user=request.user).exists()
    )
    if not allowed:
        raise Http404("No such document.")
    return FileResponse(
        document.file.open("rb"),
        content_type=document.content_type,
        as_attachment=True,
        filename=document.original_name,
    )


@page_scope(Scope.SUPPLIER)
@login_required
def members(request):
    """The organization's members and roles; owners and admins invite and change them."""
    membership = selectors.membership_for_user(user=request.person)
    if membership is None:
        return redirect("suppliers:onboarding")
    organization = membership.organization
    invite_form = InvitationForm()
    if request.method == "POST":
        done, invite_form = members_post(
            request,
            invite=lambda **kw: organizations.organization_invite(by=request.person, **kw),
            role_set=lambda **kw: organizations.organization_member_role_set(by=request.person, **kw),
            remove=lambda **kw: organizations.organization_member_remove(by=request.person, **kw),
            revoke=lambda **kw: organizations.organization_invitation_revoke(by=request.person, **kw),
        )
        if done:
            return redirect("suppliers:members")
    context = members_context(
        memberships=organization.memberships,
        invitations=organization.invitations,
        my_role=membership.role,
        person=request.person,
    )
    context |= {"organization": organization, "invite_form": invite_form}
    return render(request, "suppliers/members.html", context)


@page_scope(None)
@require_GET
def agent_download(request):
    """The host agent as one file (a Python zipapp); its SHA-256 is in the install script."""
    archive = agent_archive()
    response = HttpResponse(archive.content, content_type="application/zip")
    response["Content-Disposition"] = 'attachment; filename="agent.pyz"'
    response["X-Content-SHA256"] = archive.sha256
    return response


@page_scope(None)
@require_GET
def agent_install_script(request):
    """`curl -fsSL <platform>/agent/install.sh | sudo sh -s -- --token TOKEN` installs the agent."""
    context = {"platform": request.build_absolute_uri("/").rstrip("/"), "sha256": agent_archive().sha256}
    return render(request, "suppliers/agent_install.sh", context, content_type="text/x-shellscript; charset=utf-8")
