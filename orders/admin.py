from django import forms
from django.contrib import admin, messages

from marketplace.admin_base import ReadOnlyAdmin
from marketplace.errors import ApplicationError

from . import launch, lifecycle
from .models import (
    AgentUsageDisagreement,
    AgentUsageReport,
    Allocation,
    HostCommand,
    Instance,
    InstanceEvent,
    LaunchTemplate,
    Order,
    ProblemReport,
)


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["id", "buyer", "instance_type", "count", "pricing", "total_price_per_hour", "region", "created_at"]
    list_filter = ["pricing", "created_at", "region"]
    search_fields = ["buyer__email", "instance_type__name", "image"]
    list_select_related = ["buyer", "instance_type", "region"]


class InstanceEventInline(admin.TabularInline):
    model = InstanceEvent
    extra = 0
    can_delete = False
    readonly_fields = ["from_status", "to_status", "reason", "actor", "actor_user", "created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Instance)
class InstanceAdmin(ReadOnlyAdmin):
    list_display = ["id", "buyer", "instance_type", "status", "pricing", "price_per_hour", "host", "created_at"]
    list_filter = ["status", "pricing", "host__region", "created_at"]
    search_fields = ["id", "buyer__email", "host__name", "instance_type__name", "image"]
    list_select_related = ["buyer", "instance_type", "host", "host__organization"]
    inlines = [InstanceEventInline]
    actions = ["terminate"]

    @admin.action(description="Terminate selected instances")
    def terminate(self, request, queryset):
        done = 0
        for instance in queryset:
            try:
                lifecycle.instance_terminate(
                    instance=instance, actor_user=request.user, actor="staff", reason="Terminated by staff"
                )
                done += 1
            except ApplicationError as error:
                self.message_user(request, f"i-{instance.pk}: {error.detail}", level=messages.ERROR)
        if done:
            self.message_user(request, f"{done} instance(s) terminating.", level=messages.SUCCESS)


@admin.register(InstanceEvent)
class InstanceEventAdmin(ReadOnlyAdmin):
    list_display = ["instance", "from_status", "to_status", "actor", "reason", "created_at"]
    list_filter = ["to_status", "actor", "created_at"]
    search_fields = ["instance__id", "reason"]
    list_select_related = ["instance"]


@admin.register(Allocation)
class AllocationAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "host",
        "instance",
        "instance_type",
        "kind",
        "spot_bid",
        "accelerators",
        "vcpus",
        "ram_gb",
        "disk_gb",
        "created_at",
        "released_at",
    ]
    list_filter = ["kind", "released_at", "created_at"]
    search_fields = ["host__name", "instance_type__name", "instance__id"]
    list_select_related = ["host", "host__organization", "instance_type", "instance"]


@admin.register(HostCommand)
class HostCommandAdmin(ReadOnlyAdmin):
    list_display = ["id", "host", "instance", "kind", "status", "created_at", "acknowledged_at"]
    list_filter = ["kind", "status", "created_at"]
    search_fields = ["host__name", "instance__id"]
    list_select_related = ["host", "host__organization", "instance"]


@admin.register(ProblemReport)
class ProblemReportAdmin(ReadOnlyAdmin):
    """Resolved through the report page (evidence, credit or rejection with a reason)."""

    list_display = ["id", "instance", "buyer", "category", "status", "credit_amount", "created_at", "resolved_at"]
    list_filter = ["status", "category", "created_at"]
    search_fields = ["buyer__email", "instance__id", "description"]
    list_select_related = ["instance", "buyer"]


@admin.register(AgentUsageReport)
class AgentUsageReportAdmin(ReadOnlyAdmin):
    """What each host agent last reported about each instance, beside what the platform metered."""

    list_display = ["instance", "host", "status", "counters", "reported_at", "last_running_at", "window_started_at"]
    list_filter = ["status", "reported_at"]
    search_fields = ["instance__id", "host__name"]
    list_select_related = ["instance", "host", "host__organization"]


@admin.register(AgentUsageDisagreement)
class AgentUsageDisagreementAdmin(ReadOnlyAdmin):
    """Windows where an agent's uptime and the metered compute differ: evidence to look into
    (a host misreporting, or metering wrong), before a dispute or a payout."""

    list_display = ["instance", "host", "window_start", "window_end", "agent_seconds", "platform_seconds", "created_at"]
    list_filter = ["created_at", "host__organization"]
    search_fields = ["instance__id", "host__name", "host__organization__name"]
    list_select_related = ["instance", "host", "host__organization"]


class LaunchTemplateAdminForm(forms.ModelForm):
    """Staff curate templates here; the same rules as a buyer's own (`orders.launch`)."""

    class Meta:
        model = LaunchTemplate
        fields = ["owner", "name", "title", "description", "image", "command", "ports", "environment", "disk_gb"]

    def clean(self):
        data = super().clean()
        errors: dict[str, list[str]] = {}
        spec = launch.launch_resolve(
            {k: data.get(k) for k in ("image", "command", "ports", "environment", "disk_gb")},
            buyer=None,
            errors=errors,
        )
        if any(e.get("secret") for e in spec.environment):
            errors["environment"] = ["Templates carry no secrets."]
        for name, messages_ in errors.items():
            self.add_error(name if name in self.fields else None, messages_)
        data["ports"], data["environment"] = list(spec.ports), spec.environment
        return data


@admin.register(LaunchTemplate)
class LaunchTemplateAdmin(admin.ModelAdmin):
    form = LaunchTemplateAdminForm
    list_display = ["name", "title", "image", "owner", "disk_gb", "created_at"]
    list_filter = [("owner", admin.EmptyFieldListFilter)]
    search_fields = ["name", "title", "image", "owner__email"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
