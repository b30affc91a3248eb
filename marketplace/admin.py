from django.contrib import admin

from .admin_base import AppendOnlyAdmin, ReadOnlyAdmin
from .models import (
    AcceleratorModel,
    AuditEntry,
    AvailabilityAlert,
    IdempotencyRecord,
    InstanceType,
    Offer,
    Region,
    Zone,
)
from .services import offer_catalog_figures_copy


@admin.register(AcceleratorModel)
class AcceleratorModelAdmin(admin.ModelAdmin):
    list_display = ["name", "vendor", "kind", "memory_gb", "bf16_tflops", "fp32_tflops", "tdp_watts", "is_active"]
    list_filter = ["kind", "vendor", "is_active"]
    search_fields = ["name", "slug", "vendor"]
    prepopulated_fields = {"slug": ["name"]}

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        offer_catalog_figures_copy(accelerator_model=obj)


@admin.register(InstanceType)
class InstanceTypeAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "accelerator_model",
        "accelerator_count",
        "family",
        "vcpus",
        "ram_gb",
        "disk_gb",
        "is_active",
    ]
    list_filter = ["family", "is_active", "accelerator_model__kind", "accelerator_model"]
    search_fields = ["name", "accelerator_model__name"]
    list_editable = ["is_active"]
    list_select_related = ["accelerator_model"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        offer_catalog_figures_copy(instance_type=obj)


class ZoneInline(admin.TabularInline):
    model = Zone
    extra = 0


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "tier", "country", "latitude", "longitude"]
    list_filter = ["tier", "country"]
    search_fields = ["code", "name"]
    inlines = [ZoneInline]


@admin.register(Zone)
class ZoneAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "region"]
    list_filter = ["region__tier", "region"]
    search_fields = ["code", "name", "region__code"]
    list_select_related = ["region"]


@admin.register(Offer)
class OfferAdmin(ReadOnlyAdmin):
    """Offers are derived from hosts; staff look, the platform writes."""

    list_display = [
        "instance_type",
        "host",
        "region",
        "available_count",
        "price_per_hour",
        "price_per_tflop_hour",
        "energy_kwh_per_hour",
        "verified",
        "reliability",
        "updated_at",
    ]
    list_filter = ["tier", "verified", "accelerator_model__kind", "region", "accelerator_model"]
    search_fields = ["instance_type__name", "host__name", "host__organization__name"]
    list_select_related = ["instance_type", "host", "host__organization", "region"]


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ["key", "user", "method", "path", "status_code", "created_at"]
    list_filter = ["method", "status_code", "created_at"]
    search_fields = ["key", "user__email", "path"]
    list_select_related = ["user"]


@admin.register(AuditEntry)
class AuditEntryAdmin(AppendOnlyAdmin):
    """Browsable by staff; nobody edits or deletes it (the database refuses on PostgreSQL)."""

    list_display = ["created_at", "action", "object_type", "object_id", "actor", "reason"]
    list_filter = ["action", "object_type", "created_at"]
    search_fields = ["object_id", "reason", "actor__email", "action"]
    list_select_related = ["actor"]
    readonly_fields = ["actor", "action", "object_type", "object_id", "before", "after", "reason", "created_at"]


@admin.register(AvailabilityAlert)
class AvailabilityAlertAdmin(ReadOnlyAdmin):
    list_display = ["id", "user", "instance_type", "region", "max_price_per_hour", "standing", "active", "matched"]
    list_filter = ["active", "standing", "matched", "region"]
    search_fields = ["user__email", "instance_type__name"]
    list_select_related = ["user", "instance_type", "region"]
