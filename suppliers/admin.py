from django.contrib import admin, messages
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from marketplace import moderation
from marketplace.admin_base import ReadOnlyAdmin
from marketplace.errors import ApplicationError
from orders import supply

from . import hosts, organizations
from .models import (
    Host,
    HostCredential,
    HostOutage,
    HostRegistrationToken,
    MaintenanceWindow,
    Membership,
    Organization,
    OrganizationDocument,
)


def _run_for_each(modeladmin, request, queryset, operation, done: str) -> None:
    """Apply a service to each selected row; report successes and refusals separately."""
    succeeded = 0
    for obj in queryset:
        try:
            operation(obj)
            succeeded += 1
        except ApplicationError as error:
            modeladmin.message_user(request, f"{obj}: {error.detail}", level=messages.ERROR)
    if succeeded:
        modeladmin.message_user(request, f"{succeeded} {done}.", level=messages.SUCCESS)


class DocumentInline(admin.TabularInline):
    model = OrganizationDocument
    extra = 0
    can_delete = False
    fields = ["kind", "original_name", "content_type", "size_bytes", "uploaded_at", "download"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="file")
    def download(self, obj):
        return format_html('<a href="{}">download</a>', reverse("suppliers:document_download", args=[obj.pk]))


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "contact_email", "country", "payout_country", "host_count", "created_at"]
    list_filter = ["status", "country", "payout_country", "created_at"]
    search_fields = ["name", "legal_name", "contact_email", "contact_name"]
    readonly_fields = ["status", "status_reason", "reviewed_at", "created_at"]
    inlines = [MembershipInline, DocumentInline]
    actions = ["approve", "reject_incomplete", "suspend"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_host_count=Count("hosts"))

    @admin.display(ordering="_host_count", description="hosts")
    def host_count(self, obj):
        return obj._host_count

    @admin.action(description="Approve selected organizations")
    def approve(self, request, queryset):
        _run_for_each(
            self,
            request,
            queryset,
            lambda o: organizations.organization_approve(organization=o, actor=request.user),
            "approved",
        )

    @admin.action(description="Reject selected organizations (reason: incomplete details)")
    def reject_incomplete(self, request, queryset):
        reason = "Business details are incomplete; please update your profile and contact support."
        _run_for_each(
            self,
            request,
            queryset,
            lambda o: organizations.organization_reject(organization=o, reason=reason, actor=request.user),
            "rejected",
        )

    @admin.action(description="Suspend selected organizations (offers delisted)")
    def suspend(self, request, queryset):
        reason = "Suspended by staff review."
        _run_for_each(
            self,
            request,
            queryset,
            lambda o: supply.organization_suspend(organization=o, reason=reason, actor=request.user),
            "suspended",
        )


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "organization__name"]
    list_select_related = ["user", "organization"]
    raw_id_fields = ["user", "organization"]


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "organization",
        "region",
        "accelerator_model",
        "accelerator_count",
        "slicing_policy",
        "price_per_unit_hour",
        "status",
        "verified",
        "reliability",
        "created_at",
    ]
    list_filter = [
        "status",
        "verified",
        "slicing_policy",
        "region__tier",
        "region",
        "accelerator_model__kind",
        "accelerator_model",
    ]
    search_fields = ["name", "organization__name"]
    list_select_related = ["organization", "region", "accelerator_model"]
    readonly_fields = [
        "status",
        "status_reason",
        "status_decided_by",
        "hardware_changed_at",
        "verified",
        "created_at",
        "updated_at",
    ]
    raw_id_fields = ["organization"]
    actions = ["approve_verified", "approve_unverified", "reject_mismatch", "reinstate"]

    def has_add_permission(self, request):
        return False  # suppliers declare hosts; staff review them

    def save_model(self, request, obj, form, change):
        # Edits go through the service so capacity rules hold and offers are recomputed.
        data = {name: form.cleaned_data[name] for name in form.changed_data if name in hosts.HOST_FIELDS}
        try:
            supply.host_update(host=Host.objects.get(pk=obj.pk), **data)
        except ApplicationError as error:
            self.message_user(request, f"Not saved: {error.detail} {error.fields or ''}", level=messages.ERROR)

    @admin.action(description="Approve and mark verified")
    def approve_verified(self, request, queryset):
        _run_for_each(
            self,
            request,
            queryset,
            lambda h: hosts.host_approve(host=h, verified=True, actor=request.user),
            "approved",
        )

    @admin.action(description="Approve without verification")
    def approve_unverified(self, request, queryset):
        _run_for_each(
            self,
            request,
            queryset,
            lambda h: hosts.host_approve(host=h, verified=False, actor=request.user),
            "approved",
        )

    @admin.action(description="List again (undo a staff delisting)")
    def reinstate(self, request, queryset):
        _run_for_each(
            self,
            request,
            queryset,
            lambda h: moderation.host_reinstate(host=h, reason="Reinstated by our staff.", staff=request.user),
            "listed again",
        )

    @admin.action(description="Reject (declaration does not match the hardware)")
    def reject_mismatch(self, request, queryset):
        reason = "The declared hardware could not be confirmed."
        _run_for_each(
            self,
            request,
            queryset,
            lambda h: hosts.host_reject(host=h, reason=reason, actor=request.user),
            "rejected",
        )


@admin.register(HostCredential)
class HostCredentialAdmin(ReadOnlyAdmin):
    list_display = ["prefix", "host", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at", "created_at"]
    search_fields = ["prefix", "host__name"]
    list_select_related = ["host", "host__organization"]
    exclude = ["secret_hash"]


@admin.register(HostRegistrationToken)
class HostRegistrationTokenAdmin(ReadOnlyAdmin):
    list_display = ["host", "created_by", "created_at", "expires_at", "used_at"]
    list_filter = ["used_at", "created_at"]
    search_fields = ["host__name", "created_by__email"]
    list_select_related = ["host", "host__organization", "created_by"]
    exclude = ["token_hash"]


@admin.register(HostOutage)
class HostOutageAdmin(ReadOnlyAdmin):
    list_display = ["host", "started_at", "ended_at"]
    list_filter = ["started_at", "ended_at"]
    search_fields = ["host__name", "host__organization__name"]
    list_select_related = ["host", "host__organization"]


@admin.register(MaintenanceWindow)
class MaintenanceWindowAdmin(ReadOnlyAdmin):
    list_display = ["host", "starts_at", "ends_at", "reason", "created_at"]
    list_filter = ["starts_at"]
    search_fields = ["host__name", "reason"]
    list_select_related = ["host", "host__organization"]


@admin.register(OrganizationDocument)
class OrganizationDocumentAdmin(ReadOnlyAdmin):
    list_display = ["organization", "kind", "original_name", "content_type", "size_bytes", "uploaded_at"]
    list_filter = ["kind", "content_type", "uploaded_at"]
    search_fields = ["organization__name", "original_name"]
    list_select_related = ["organization"]
    exclude = ["file"]
