from rest_framework import serializers

from marketplace.api import json_types
from marketplace.models import AcceleratorModel, Offer, Region, Zone
from suppliers.models import Host, MaintenanceWindow, Organization


class OrganizationSerializer(json_types.ModelSerializer):
    class Meta:
        model = Organization
        fields = [
            "id",
            "name",
            "legal_name",
            "website",
            "description",
            "contact_name",
            "contact_email",
            "contact_phone",
            "country",
            "payout_country",
            "status",
            "status_reason",
            "created_at",
        ]
        read_only_fields = ["id", "status", "status_reason", "created_at"]


class HostOfferSerializer(json_types.ModelSerializer):
    instance_type = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Offer
        fields = ["id", "instance_type", "available_count", "price_per_hour", "energy_kwh_per_hour"]


class HostSerializer(json_types.ModelSerializer):
    """Input and output of /api/v1/hosts/. Relations are by code/slug, never by internal id."""

    region = serializers.SlugRelatedField(slug_field="code", queryset=Region.objects.all())
    zone = serializers.SlugRelatedField(slug_field="code", queryset=Zone.objects.all(), required=False, allow_null=True)
    accelerator_model = serializers.SlugRelatedField(
        slug_field="slug", queryset=AcceleratorModel.objects.filter(is_active=True)
    )
    power_per_accelerator_watts = serializers.IntegerField(
        required=False, min_value=1, max_value=5000, help_text="Defaults to the model's TDP."
    )
    organization = serializers.CharField(source="organization.name", read_only=True)
    offers = HostOfferSerializer(many=True, read_only=True)

    class Meta:
        model = Host
        fields = [
            "id",
            "organization",
            "name",
            "region",
            "zone",
            "pue",
            "accelerator_model",
            "accelerator_count",
            "vcpus",
            "ram_gb",
            "disk_gb",
            "network_up_mbps",
            "network_down_mbps",
            "power_per_accelerator_watts",
            "price_per_unit_hour",
            "spot_min_price_per_unit_hour",
            "reserved_discount_week",
            "reserved_discount_month",
            "reserved_discount_quarter",
            "storage_price_per_gb_month",
            "no_accelerator_price_per_vcpu_hour",
            "min_rental_hours",
            "offer_ends_at",
            "slicing_policy",
            "equal_slices",
            "oversubscription_ratio",
            "public_address",
            "port_range_start",
            "port_range_end",
            "status",
            "status_reason",
            "status_decided_by",
            "hardware_changed_at",
            "verified",
            "reliability",
            "offers",
            "agent_status",
            "last_heartbeat_at",
            "inventory",
            "inventory_mismatch",
            "selftest_passed",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "agent_status",
            "last_heartbeat_at",
            "inventory",
            "inventory_mismatch",
            "selftest_passed",
            "id",
            "organization",
            "status",
            "status_reason",
            "status_decided_by",
            "hardware_changed_at",
            "verified",
            "reliability",
            "offers",
            "created_at",
            "updated_at",
        ]
        # Uniqueness of the name per organization is checked by the service (it knows the org).
        validators: list = []


class MaintenanceSerializer(json_types.ModelSerializer):
    class Meta:
        model = MaintenanceWindow
        fields = ["id", "starts_at", "ends_at", "reason", "created_at"]
        read_only_fields = ["id", "created_at"]
