from rest_framework import serializers

from marketplace.api import json_types
from marketplace.models import AcceleratorModel, InstanceType, Offer, Region, Zone


class AcceleratorModelSerializer(json_types.ModelSerializer):
    class Meta:
        model = AcceleratorModel
        fields = [
            "slug",
            "vendor",
            "name",
            "kind",
            "memory_gb",
            "bf16_tflops",
            "fp32_tflops",
            "tdp_watts",
            "cores",
        ]


class InstanceTypeSerializer(json_types.ModelSerializer):
    accelerator_model = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)  # CPU types
    accelerator_kind = serializers.CharField(read_only=True)
    accelerator_memory_gb = serializers.SerializerMethodField()

    class Meta:
        model = InstanceType
        fields = [
            "name",
            "accelerator_model",
            "accelerator_kind",
            "accelerator_count",
            "accelerator_memory_gb",
            "family",
            "vcpus",
            "ram_gb",
            "disk_gb",
        ]

    def get_accelerator_memory_gb(self, obj: InstanceType) -> int:
        return obj.accelerator_model.memory_gb * obj.accelerator_count if obj.accelerator_model_id else 0


class ZoneSerializer(json_types.ModelSerializer):
    class Meta:
        model = Zone
        fields = ["code", "name"]


class RegionSerializer(json_types.ModelSerializer):
    zones = ZoneSerializer(many=True, read_only=True)

    class Meta:
        model = Region
        fields = ["code", "name", "tier", "country", "latitude", "longitude", "zones"]


class OfferSerializer(json_types.ModelSerializer):
    instance_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    accelerator_model = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    accelerator_name = serializers.CharField(source="accelerator_model.name", read_only=True)
    accelerator_kind = serializers.CharField(source="accelerator_model.kind", read_only=True)
    accelerator_count = serializers.IntegerField(source="instance_type.accelerator_count", read_only=True)
    accelerator_memory_gb = serializers.SerializerMethodField()
    vcpus = serializers.IntegerField(source="instance_type.vcpus", read_only=True)
    ram_gb = serializers.IntegerField(source="instance_type.ram_gb", read_only=True)
    disk_gb = serializers.IntegerField(source="instance_type.disk_gb", read_only=True)
    region = serializers.SlugRelatedField(slug_field="code", read_only=True)
    zone = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    supplier = serializers.CharField(source="host.organization.name", read_only=True)
    host = serializers.IntegerField(source="host_id", read_only=True)
    slicing_policy = serializers.CharField(source="host.slicing_policy", read_only=True)
    min_rental_hours = serializers.IntegerField(
        source="host.min_rental_hours",
        read_only=True,
        help_text="On-demand and reserved rentals are billed at least this long; a shorter terminate_after_hours or "
        "term is refused. Spot has no minimum.",
    )
    available_until = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="The host's next maintenance starts then: a rental on this offer must end by this time, so an "
        "open-ended order does not get it. Null: rentals may be open-ended.",
    )
    listed_until = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="The last moment a rental on this offer can start (the supplier's end date, or the latest start "
        "for the shortest rental before maintenance).",
    )
    storage_price_per_gb_month = serializers.DecimalField(
        source="host.storage_price_per_gb_month", max_digits=14, decimal_places=6, read_only=True
    )
    network_up_mbps = serializers.IntegerField(source="host.network_up_mbps", read_only=True)
    network_down_mbps = serializers.IntegerField(source="host.network_down_mbps", read_only=True)

    class Meta:
        model = Offer
        fields = [
            "id",
            "instance_type",
            "accelerator_model",
            "accelerator_name",
            "accelerator_kind",
            "accelerator_count",
            "accelerator_memory_gb",
            "vcpus",
            "ram_gb",
            "disk_gb",
            "available_count",
            "price_per_hour",
            "price_per_tflop_hour",
            "tflops",
            "energy_kwh_per_hour",
            "region",
            "zone",
            "tier",
            "verified",
            "reliability",
            "supplier",
            "host",
            "slicing_policy",
            "min_rental_hours",
            "storage_price_per_gb_month",
            "network_up_mbps",
            "network_down_mbps",
            "listed_until",
            "available_until",
        ]

    def get_accelerator_memory_gb(self, obj: Offer) -> int:
        return obj.accelerator_model.memory_gb * obj.instance_type.accelerator_count
