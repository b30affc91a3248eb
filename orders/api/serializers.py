from rest_framework import serializers

from marketplace.api import json_types
from orders.models import RESERVED_TERMS_HOURS, Instance, InstanceEvent, Order, Pricing, ProblemReport
from orders.requests import OrderRequest


class RequirementsSerializer(json_types.Serializer):
    min_memory_gb = serializers.IntegerField(min_value=0, required=False, default=0)
    min_tflops = serializers.DecimalField(max_digits=10, decimal_places=2, min_value=0, required=False, default=0)
    accelerator_kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=["gpu", "dsa", "cpu"]),
        allow_empty=False,
        required=False,
        default=["gpu", "dsa", "cpu"],
    )


class NearSerializer(json_types.Serializer):
    lat = serializers.DecimalField(max_digits=9, decimal_places=6, min_value=-90, max_value=90)
    lon = serializers.DecimalField(max_digits=10, decimal_places=6, min_value=-180, max_value=180)


class OrderInputSerializer(json_types.Serializer):
    """Exactly one of instance_type, offer or requirements."""

    instance_type = serializers.CharField(required=False, max_length=64)
    offer = serializers.IntegerField(required=False, min_value=1)
    requirements = RequirementsSerializer(required=False)
    count = serializers.IntegerField(min_value=1, max_value=64, default=1)
    pricing = serializers.ChoiceField(choices=Pricing.choices, default=Pricing.ON_DEMAND)
    max_price_per_hour = serializers.DecimalField(
        max_digits=14,
        decimal_places=6,
        min_value=0,
        required=False,
        allow_null=True,
        help_text="Per instance: the bid for spot, a ceiling otherwise.",
    )
    term_hours = serializers.ChoiceField(choices=list(RESERVED_TERMS_HOURS), required=False, allow_null=True)
    region = serializers.CharField(required=False, max_length=32)
    near = NearSerializer(required=False, help_text="Rank by distance from here: {lat, lon}.")
    same_host = serializers.BooleanField(default=False)
    image = serializers.CharField(required=False, max_length=255, default="")
    command = serializers.CharField(required=False, max_length=4000, allow_blank=True, default="")
    terminate_after_hours = serializers.IntegerField(
        min_value=1,
        max_value=24 * 366,
        required=False,
        allow_null=True,
        help_text="End the rental after this many hours. It must be at least the host's minimum rental (spot "
        "excepted) and end before the host's next maintenance (the offer's available_until); left out, the "
        "rental is open-ended, goes only to hosts without maintenance ahead, and is billed at least the minimum.",
    )
    ssh_keys = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        max_length=50,
        help_text="Ids of your SSH keys (/api/v1/ssh-keys/) to install as the instances' authorized_keys; "
        "left out: all of your keys; []: none.",
    )
    allow_unverified = serializers.BooleanField(
        default=False,
        help_text="Accept hosts whose declaration is not verified yet. By default orders, like offer search, use "
        "verified hosts only; a pinned offer on an unverified host is a 409 unverified_host without this.",
    )

    def to_order_request(self) -> OrderRequest:
        data = dict(self.validated_data)
        near = data.pop("near", None)
        requirements = data.pop("requirements", None)
        return OrderRequest(
            **data,
            near=(near["lat"], near["lon"]) if near else None,
            requirements={**requirements, "min_tflops": str(requirements["min_tflops"])} if requirements else None,
        )


class QuoteLineSerializer(json_types.Serializer):
    host_id = serializers.IntegerField()
    supplier = serializers.CharField()
    region = serializers.CharField()
    instance_type = serializers.CharField()
    count = serializers.IntegerField()
    price_per_hour = serializers.DecimalField(max_digits=14, decimal_places=6, help_text="Per instance.")
    energy_kwh_per_hour = serializers.DecimalField(max_digits=10, decimal_places=4, help_text="Per instance.")
    min_rental_hours = serializers.IntegerField(
        help_text="The host's minimum rental binding this order (0: none; spot has none): ending sooner is "
        "billed up to it."
    )
    available_until = serializers.DateTimeField(
        allow_null=True, help_text="The host's next maintenance starts then: the rental must end by this time."
    )


class QuoteSerializer(json_types.Serializer):
    pricing = serializers.CharField()
    count = serializers.IntegerField()
    price_per_hour = serializers.DecimalField(max_digits=14, decimal_places=6, help_text="All instances.")
    platform_fee_per_hour = serializers.DecimalField(max_digits=14, decimal_places=6)
    energy_kwh_per_hour = serializers.DecimalField(max_digits=12, decimal_places=4)
    term_hours = serializers.IntegerField(allow_null=True)
    term_total = serializers.DecimalField(max_digits=16, decimal_places=6, allow_null=True)
    minimum_charge = serializers.DecimalField(
        max_digits=16,
        decimal_places=6,
        help_text="All instances: compute billed even if the order is ended sooner (the hosts' minimum rentals).",
    )
    stopped_disk_per_hour = serializers.DecimalField(
        max_digits=14, decimal_places=6, help_text="All instances: what keeping their disks costs while stopped."
    )
    stopped_disk_grace_days = serializers.IntegerField(
        help_text="At zero balance, stopped disks are kept (and billed) this many days, then released."
    )
    stopped_disk_grace_cost = serializers.DecimalField(
        max_digits=16,
        decimal_places=6,
        help_text="What keeping the disks through that grace costs: the most the buyer can owe on them.",
    )
    lines = QuoteLineSerializer(many=True)
    expires_at = serializers.DateTimeField()


class InstanceEventSerializer(json_types.ModelSerializer):
    class Meta:
        model = InstanceEvent
        fields = ["from_status", "to_status", "reason", "actor", "created_at"]


class InstanceSerializer(json_types.ModelSerializer):
    instance_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    region = serializers.CharField(source="host.region.code", read_only=True)
    supplier = serializers.CharField(source="host.organization.name", read_only=True)
    host = serializers.IntegerField(source="host_id", read_only=True)
    order = serializers.IntegerField(source="order_id", read_only=True)

    class Meta:
        model = Instance
        fields = [
            "id",
            "order",
            "instance_type",
            "status",
            "pricing",
            "price_per_hour",
            "host",
            "region",
            "supplier",
            "image",
            "command",
            "authorized_keys",
            "terminate_at",
            "reserved_until",
            "preemption_deadline",
            "minimum_billed_until",
            "disk_release_at",
            "created_at",
            "updated_at",
        ]


class InstanceDetailSerializer(InstanceSerializer):
    events = InstanceEventSerializer(many=True, read_only=True)

    class Meta(InstanceSerializer.Meta):
        fields = [*InstanceSerializer.Meta.fields, "events"]


class OrderSerializer(json_types.ModelSerializer):
    instance_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    region = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    instances = InstanceSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "instance_type",
            "requirements",
            "count",
            "pricing",
            "max_price_per_hour",
            "term_hours",
            "region",
            "same_host",
            "image",
            "command",
            "terminate_after_hours",
            "total_price_per_hour",
            "created_at",
            "instances",
        ]


class ProblemReportSerializer(json_types.ModelSerializer):
    instance = serializers.IntegerField(source="instance_id")

    class Meta:
        model = ProblemReport
        fields = [
            "id",
            "instance",
            "category",
            "description",
            "status",
            "supplier_answer",
            "answered_at",
            "resolution_reason",
            "credit_amount",
            "resolved_at",
            "created_at",
        ]
        read_only_fields = [
            "id",
            "status",
            "supplier_answer",
            "answered_at",
            "resolution_reason",
            "credit_amount",
            "resolved_at",
            "created_at",
        ]


class AnswerSerializer(json_types.Serializer):
    answer = serializers.CharField(max_length=4000)


class ResolveSerializer(json_types.Serializer):
    credit = serializers.DecimalField(max_digits=12, decimal_places=2, required=False, allow_null=True)
    reason = serializers.CharField(max_length=2000)
