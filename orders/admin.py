from django.contrib import admin

from .models import Allocation


@admin.register(Allocation)
class AllocationAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "host",
        "instance_type",
        "accelerators",
        "vcpus",
        "ram_gb",
        "disk_gb",
        "created_at",
        "released_at",
    ]
    list_filter = ["released_at", "created_at"]
    search_fields = ["host__name", "instance_type__name"]
    list_select_related = ["host", "instance_type"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
