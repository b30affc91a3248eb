from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from marketplace.api import json_types
from orders.launch import MAX_DISK_GB, MAX_ENVIRONMENT_VARIABLES, environment_shown
from orders.models import (
    RESERVED_TERMS_HOURS,
    Instance,
    InstanceEvent,
    LaunchTemplate,
    Order,
    Pricing,
    ProblemReport,
)
from orders.ports import MAX_PORTS_PER_INSTANCE, connection_details
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


class EnvironmentVariableSerializer(json_types.Serializer):
    name = serializers.CharField(max_length=128, help_text="Letters, digits and _, not starting with a digit.")
    value = serializers.CharField(max_length=32 * 1024, allow_blank=True, required=False, default="")
    secret = serializers.BooleanField(
        default=False,
        help_text="Secret values are encrypted at rest and never shown again (only the name is).",
    )

    def to_internal_value(self, data):
        if isinstance(data, dict) and set(data) - set(self.fields):
            unknown = ", ".join(sorted(map(str, set(data) - set(self.fields))))
            raise serializers.ValidationError(
                gettext("Unknown key(s): %(keys)s. A variable has name, value and secret.") % {"keys": unknown}
            )
        return super().to_internal_value(data)


class EnvironmentShownSerializer(json_types.Serializer):
    name = serializers.CharField()
    value = serializers.CharField(required=False, help_text="Absent for secret variables.")
    secret = serializers.BooleanField()


def ports_field(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=65535),
        max_length=MAX_PORTS_PER_INSTANCE,
        **kwargs,
    )


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
    template = serializers.SlugField(
        required=False,
        max_length=64,
        help_text="A launch template by name (/api/v1/templates/): your own of that name, else the curated one. "
        "Its image, command, ports, environment and disk apply unless the order gives its own.",
    )
    ports = ports_field(
        required=False,
        help_text="Container ports to reach from outside, e.g. [22, 8888]: each gets a host port on a host that "
        "accepts inbound connections (409 no_free_ports when none are free).",
    )
    environment = EnvironmentVariableSerializer(
        many=True, required=False, max_length=MAX_ENVIRONMENT_VARIABLES, help_text="Environment variables."
    )
    disk_gb = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_DISK_GB,
        help_text="Each instance's disk: at least its type's default; the extra is priced at the host's storage "
        "price (in price_per_hour).",
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
    disk_gb = serializers.IntegerField(help_text="Each instance's disk.")
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


class ConnectionSerializer(json_types.Serializer):
    container_port = serializers.IntegerField()
    host_port = serializers.IntegerField()
    address = serializers.CharField()
    kind = serializers.ChoiceField(choices=["ssh", "http", "tcp"])
    command = serializers.CharField(help_text="Ready to use: `ssh -p 40022 root@203.0.113.5`, a URL, or host:port.")


class InstanceSerializer(json_types.ModelSerializer):
    instance_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    connections = serializers.SerializerMethodField()
    environment = serializers.SerializerMethodField()
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
            "disk_gb",
            "without_accelerators",
            "connections",
            "environment",
            "terminate_at",
            "reserved_until",
            "preemption_deadline",
            "minimum_billed_until",
            "disk_release_at",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(ConnectionSerializer(many=True))
    def get_connections(self, instance: Instance) -> list[dict]:
        """How to reach it (its ports are prefetched active-only by the views)."""
        return [c.as_dict() for c in connection_details(instance, ports=instance.ports.all())]

    @extend_schema_field(EnvironmentShownSerializer(many=True))
    def get_environment(self, instance: Instance) -> list[dict]:
        return environment_shown(instance.order.environment)


class InstanceDetailSerializer(InstanceSerializer):
    events = InstanceEventSerializer(many=True, read_only=True)

    class Meta(InstanceSerializer.Meta):
        fields = [*InstanceSerializer.Meta.fields, "events"]


class OrderSerializer(json_types.ModelSerializer):
    instance_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    region = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)
    template = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    ports = ports_field(read_only=True)
    instances = InstanceSerializer(many=True, read_only=True)
    placed_by = serializers.EmailField(
        source="placed_by.email", read_only=True, allow_null=True, default=None, help_text="For a team's orders."
    )

    class Meta:
        model = Order
        fields = [
            "id",
            "placed_by",
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
            "template",
            "ports",
            "disk_gb",
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


class LaunchTemplateSerializer(json_types.ModelSerializer):
    owner = serializers.SerializerMethodField()
    title = serializers.CharField(required=False, max_length=120, help_text="Defaults to the name.")
    ports = ports_field(required=False, default=list)
    environment = EnvironmentVariableSerializer(many=True, required=False, max_length=MAX_ENVIRONMENT_VARIABLES)

    class Meta:
        model = LaunchTemplate
        fields = ["id", "name", "title", "description", "image", "command", "ports", "environment", "disk_gb", "owner"]
        read_only_fields = ["id", "owner"]
        validators: list = []  # uniqueness per owner is the service's (it knows the owner)

    @extend_schema_field(serializers.ChoiceField(choices=["curated", "yours"]))
    def get_owner(self, template: LaunchTemplate) -> str:
        return "curated" if template.owner_id is None else "yours"


class LogSerializer(json_types.Serializer):
    instance = serializers.IntegerField()
    text = serializers.CharField(allow_blank=True, help_text="The last lines of the instance's output.")
    lines = serializers.IntegerField(help_text="How many lines `text` holds.")
    shipped_at = serializers.DateTimeField(allow_null=True, help_text="When its host's agent last sent output.")


class StartSerializer(json_types.Serializer):
    accelerators = serializers.BooleanField(
        default=True, help_text="false: no-GPU mode (CPU, RAM and disk only, billed at the host's no-GPU rate)."
    )


class UtilizationSampleSerializer(json_types.Serializer):
    at = serializers.IntegerField(help_text="Unix time.")
    utilization_percent = serializers.FloatField()
    memory_used_mib = serializers.FloatField()


class UtilizationSerializer(json_types.Serializer):
    instance = serializers.IntegerField()
    samples = UtilizationSampleSerializer(many=True)
    uptime_seconds = serializers.FloatField(allow_null=True)
    cost_so_far = serializers.DecimalField(max_digits=16, decimal_places=6)
    reported_at = serializers.DateTimeField(allow_null=True)
