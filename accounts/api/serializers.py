from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import ApiKey, SshKey, User
from accounts.roles import Role
from accounts.scopes import Scope
from marketplace.api import json_types


class ApiKeyCreateInputSerializer(json_types.Serializer):
    email = serializers.EmailField()
    password = serializers.CharField(trim_whitespace=False, max_length=256)
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=[s.value for s in Scope]),
        required=False,
        max_length=len(Scope),
        help_text="What the key may do (default: every scope but staff; staff only for staff accounts).",
    )
    expires_at = serializers.DateTimeField(required=False, help_text="When the key stops working; none: never.")


class ApiKeySerializer(json_types.ModelSerializer):
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=[s.value for s in Scope]), read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "created_at",
            "expires_at",
            "last_used_at",
            "last_used_ip",
            "revoked_at",
        ]


class ApiKeyIssuedSerializer(ApiKeySerializer):
    key = serializers.CharField(help_text="The full key. Shown once; store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]


class ActingTeamSerializer(json_types.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices, allow_null=True, help_text="Null for a team's own key.")


class MeSerializer(json_types.ModelSerializer):
    """The account a request acts for: the caller's own, or a team's (`team` says which, and the
    caller's role in it). `email` is the person's, also when they act for a team."""

    organization = serializers.SerializerMethodField()
    team = serializers.SerializerMethodField()
    email = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["id", "email", "full_name", "role", "is_staff", "spend_limit_per_hour", "organization", "team"]
        read_only_fields = ["id", "email", "full_name", "role", "is_staff", "organization", "team"]

    def _membership(self):
        request = self.context.get("request")
        return getattr(getattr(request, "_request", None), "team_membership", None)

    def get_email(self, obj: User) -> str:
        membership = self._membership()
        return membership.user.email if membership is not None else obj.email

    @extend_schema_field(ActingTeamSerializer(allow_null=True))
    def get_team(self, obj: User) -> dict | None:
        if not obj.is_team:
            return None
        membership = self._membership()
        return {"id": obj.team.id, "name": obj.team.name, "role": membership.role if membership else None}

    def get_organization(self, obj: User) -> dict | None:
        membership = getattr(obj, "membership", None)
        if membership is None:
            return None
        org = membership.organization
        return {"id": org.id, "name": org.name, "status": org.status, "role": membership.role}


class SpendLimitSerializer(json_types.Serializer):
    spend_limit_per_hour = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0)


class SshKeySerializer(json_types.ModelSerializer):
    class Meta:
        model = SshKey
        fields = ["id", "name", "key_type", "bits", "fingerprint", "public_key", "created_at"]
        read_only_fields = fields


class SshKeyInputSerializer(json_types.Serializer):
    name = serializers.CharField(
        required=False, allow_blank=True, max_length=100, help_text="A label; defaults to the key's comment."
    )
    public_key = serializers.CharField(
        max_length=16384, help_text="One OpenSSH public key line (Ed25519, ECDSA or RSA of 2048+ bits)."
    )
