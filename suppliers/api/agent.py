"""/api/v1/agent/...: the host agent's API. Host credentials only, never user sessions or keys."""

from __future__ import annotations

from django.utils.translation import gettext as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import authentication, exceptions, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from marketplace.api import json_types
from marketplace.api.throttling import credential_refused
from marketplace.errors import ErrorCode, InvalidInput
from orders import agent as instance_agent
from orders import reconciliation
from orders.logs import LOG_MAX_CHARACTERS, agent_ship_log
from orders.models import InstanceStatus
from suppliers import agent_services
from suppliers.models import HostCredential

MAX_PAYLOAD_BYTES = 256 * 1024


class HostCredentialAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer hcr_...`: the credential from /agent/register/."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace").split()
        if not header or header[0].lower() != "bearer":
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(_("Malformed Authorization header: use 'Bearer <credential>'."))
        credential = agent_services.host_credential_authenticate(secret=header[1])
        if credential is None:
            credential_refused(request)  # 429 once an address keeps presenting refused credentials
            raise exceptions.AuthenticationFailed(_("Unknown or revoked host credential."))
        return (HostAgentUser(credential), credential)

    def authenticate_header(self, request) -> str:
        return "Bearer"


class HostAgentUser:
    """The request.user of an agent call: not a person, authenticated as one host."""

    is_authenticated = True
    is_staff = False
    is_active = True

    def __init__(self, credential: HostCredential):
        self.credential = credential
        self.host = credential.host
        self.pk = None


class HostCredentialScheme(OpenApiAuthenticationExtension):
    target_class = "suppliers.api.agent.HostCredentialAuthentication"
    name = "hostCredential"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A host credential from /api/v1/agent/register/."}


class IsHostAgent(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, HostCredential)


class AgentView(APIView):
    authentication_classes = [HostCredentialAuthentication]
    permission_classes = [IsHostAgent]

    def initial(self, request, *args, **kwargs):
        if len(request.body or b"") > MAX_PAYLOAD_BYTES:
            raise InvalidInput(
                _("The payload is larger than %(size)s KiB.") % {"size": MAX_PAYLOAD_BYTES // 1024},
                code=ErrorCode.PAYLOAD_TOO_LARGE,
            )
        super().initial(request, *args, **kwargs)

    @property
    def host(self):
        return self.request.auth.host

    def validated(self, serializer_class):
        data = serializer_class(data=self.request.data)
        data.is_valid(raise_exception=True)
        return data.validated_data


# --- Serializers ----------------------------------------------------------------------------


class RegisterSerializer(json_types.Serializer):
    token = serializers.CharField(max_length=200)


class AcceleratorSerializer(json_types.Serializer):
    index = serializers.IntegerField(min_value=0, max_value=1024)
    name = serializers.CharField(max_length=200)
    uuid = serializers.CharField(max_length=200, required=False, allow_blank=True)
    memory_mib = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    power_limit_w = serializers.FloatField(min_value=0, max_value=100_000, required=False, allow_null=True)
    mig_mode = serializers.CharField(max_length=32, required=False, allow_blank=True, allow_null=True)


class InventorySerializer(json_types.Serializer):
    source = serializers.ChoiceField(choices=["nvml", "nvidia-smi", "file", "none"])
    accelerators = AcceleratorSerializer(many=True, max_length=256)
    driver_version = serializers.CharField(max_length=64, required=False, allow_blank=True, allow_null=True)
    cpu_model = serializers.CharField(max_length=200, required=False, allow_blank=True)
    vcpus = serializers.IntegerField(min_value=0, max_value=100_000)
    ram_gb = serializers.IntegerField(min_value=0, max_value=10_000_000)
    disk_gb = serializers.IntegerField(min_value=0, max_value=100_000_000)
    hostname = serializers.CharField(max_length=255, required=False, allow_blank=True)
    agent_version = serializers.CharField(max_length=32, required=False, allow_blank=True)


class InstanceReportSerializer(json_types.Serializer):
    id = serializers.IntegerField(min_value=1)
    status = serializers.CharField(max_length=32)
    usage = serializers.DictField(
        child=serializers.FloatField(),
        required=False,
        help_text=(
            f"At most {reconciliation.MAX_USAGE_COUNTERS} counters, names of at most "
            f"{reconciliation.MAX_COUNTER_NAME} characters. `{reconciliation.UPTIME_COUNTER}` (seconds the "
            "instance has been up) is compared with metered compute."
        ),
    )

    def validate_usage(self, usage: dict) -> dict:
        if len(usage) > reconciliation.MAX_USAGE_COUNTERS:
            raise serializers.ValidationError(
                _("At most %(limit)s counters.") % {"limit": reconciliation.MAX_USAGE_COUNTERS}
            )
        if any(len(name) > reconciliation.MAX_COUNTER_NAME for name in usage):
            raise serializers.ValidationError(
                _("Counter names are at most %(limit)s characters.") % {"limit": reconciliation.MAX_COUNTER_NAME}
            )
        return usage


class HeartbeatSerializer(json_types.Serializer):
    instances = InstanceReportSerializer(many=True, max_length=1024, required=False, default=list)


class AckSerializer(json_types.Serializer):
    ok = serializers.BooleanField()
    detail = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class InstanceStateSerializer(json_types.Serializer):
    status = serializers.ChoiceField(
        choices=[InstanceStatus.RUNNING, InstanceStatus.STOPPED, InstanceStatus.TERMINATED, InstanceStatus.FAILED]
    )
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class SelftestCheckSerializer(json_types.Serializer):
    name = serializers.CharField(max_length=64)
    ok = serializers.BooleanField()
    count = serializers.IntegerField(
        min_value=0, max_value=1024, required=False, help_text="Devices the accelerators check found."
    )
    detail = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")


class SelftestSerializer(json_types.Serializer):
    checks = SelftestCheckSerializer(many=True, max_length=64)


def command_json(command) -> dict:
    return instance_agent.command_for_agent(command)


# --- Views ----------------------------------------------------------------------------------


class AgentRegisterThrottle(AnonRateThrottle):
    scope = "agent_register"


class AgentRegisterView(APIView):
    """Exchange a one-time registration token for a host credential (shown once)."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [AgentRegisterThrottle]

    @extend_schema(request=RegisterSerializer, responses={201: dict})
    def post(self, request):
        data = RegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        host, credential = agent_services.agent_register(token=data.validated_data["token"])
        return Response(
            {"host_id": host.pk, "host_name": host.name, "credential": credential}, status=status.HTTP_201_CREATED
        )


class AgentInventoryView(AgentView):
    @extend_schema(request=InventorySerializer, responses=dict)
    def post(self, request):
        data = InventorySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        differences = agent_services.agent_report_inventory(host=self.host, inventory=dict(data.data))
        return Response({"matches_declaration": not differences, "differences": differences})


class AgentHeartbeatView(AgentView):
    @extend_schema(request=HeartbeatSerializer, responses=dict)
    def post(self, request):
        data = self.validated(HeartbeatSerializer)
        commands = instance_agent.agent_heartbeat(host=self.host, instances=data["instances"])
        return Response({"commands": [command_json(c) for c in commands]})


class AgentCommandAckView(AgentView):
    @extend_schema(request=AckSerializer, responses=dict)
    def post(self, request, command_id: int):
        data = self.validated(AckSerializer)
        command = instance_agent.agent_command_ack(
            host=self.host, command_id=command_id, ok=data["ok"], detail=data["detail"]
        )
        return Response({"id": command.pk, "status": command.status})


class AgentInstanceStateView(AgentView):
    @extend_schema(request=InstanceStateSerializer, responses=dict)
    def post(self, request, instance_id: int):
        data = self.validated(InstanceStateSerializer)
        instance = instance_agent.agent_report_instance_state(
            host=self.host, instance_id=instance_id, status=data["status"], reason=data["reason"]
        )
        return Response({"id": instance.pk, "status": instance.status})


class InstanceLogSerializer(json_types.Serializer):
    text = serializers.CharField(
        max_length=LOG_MAX_CHARACTERS, allow_blank=True, trim_whitespace=False, help_text="The output's tail."
    )


class AgentInstanceLogView(AgentView):
    """The tail of an instance's output (at most 256 KiB; at most one shipment per instance every
    few seconds, else 429 log_rate_limited)."""

    @extend_schema(request=InstanceLogSerializer, responses=dict)
    def post(self, request, instance_id: int):
        data = self.validated(InstanceLogSerializer)
        log = agent_ship_log(host=self.host, instance_id=instance_id, text=data["text"])
        return Response({"instance": instance_id, "characters": len(log.text)})


class AgentSelftestView(AgentView):
    @extend_schema(request=SelftestSerializer, responses=dict)
    def post(self, request):
        data = self.validated(SelftestSerializer)
        host = agent_services.agent_report_selftest(host=self.host, result={"checks": data["checks"]})
        return Response({"passed": host.selftest_passed})
