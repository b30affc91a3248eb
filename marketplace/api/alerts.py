"""Availability alerts over the API: `/api/v1/availability-alerts/` (see `marketplace.alerts`)."""

from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.response import Response

from accounts.scopes import Scope
from marketplace import alerts
from marketplace.api import json_types
from marketplace.api.inputs import CheckedLookupMixin
from marketplace.idempotency import idempotent
from marketplace.models import AvailabilityAlert, InstanceType, Region
from marketplace.money import PRICE_DIGITS, PRICE_PLACES


class AvailabilityAlertSerializer(json_types.ModelSerializer):
    """An availability alert. `matched`: matching supply was on sale at the last check (a standing
    alert fires again only after it was not); `active` false: a one-shot alert that fired."""

    instance_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    region = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)

    class Meta:
        model = AvailabilityAlert
        fields = [
            "id",
            "instance_type",
            "region",
            "max_price_per_hour",
            "standing",
            "active",
            "matched",
            "last_notified_at",
            "created_at",
        ]
        read_only_fields = fields


class AvailabilityAlertInputSerializer(json_types.Serializer):
    """What to be told about: an instance type, optionally in a region and at or under a price."""

    instance_type = serializers.SlugRelatedField(
        slug_field="name", queryset=InstanceType.objects.active(), help_text="An instance type name, e.g. h100-80g.1x."
    )
    region = serializers.SlugRelatedField(
        slug_field="code",
        queryset=Region.objects.all(),
        required=False,
        allow_null=True,
        help_text="A region code; any region when absent or null.",
    )
    max_price_per_hour = serializers.DecimalField(
        max_digits=PRICE_DIGITS,
        decimal_places=PRICE_PLACES,
        required=False,
        allow_null=True,
        help_text="USD per hour per instance, above 0; any price when absent or null.",
    )
    standing = serializers.BooleanField(
        default=False,
        help_text="false: fire once, then turn off. true: fire each time matching supply returns after having been "
        "gone.",
    )

    def to_internal_value(self, data):
        # DRF reads "" as null for a nullable relation; the schema says a region code or null.
        if isinstance(data, dict) and data.get("region") == "":
            raise serializers.ValidationError(
                {"region": [gettext("A region code, or null (or leave it out) for any region.")]}
            )
        return super().to_internal_value(data)


class AvailabilityAlertViewSet(
    CheckedLookupMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your availability alerts: be notified when an instance type is on sale (in a region, at or
    under a price per hour). A one-shot alert turns off when it fires; a standing one fires again each
    time matching supply returns after having sold out, never repeatedly while it stays. Staff see
    everyone's; only the owner deletes one."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.ORDERS
    serializer_class = AvailabilityAlertSerializer
    queryset = AvailabilityAlert.objects.none()

    def get_queryset(self):
        return alerts.availability_alert_list_for_user(user=self.request.user)

    def get_object(self):
        return alerts.availability_alert_get_for_user(user=self.request.user, alert_id=self.kwargs["pk"])

    @extend_schema(request=AvailabilityAlertInputSerializer, responses={201: AvailabilityAlertSerializer})
    @idempotent
    def create(self, request):
        data = AvailabilityAlertInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        alert = alerts.availability_alert_create(user=request.user, **data.validated_data)
        return Response(AvailabilityAlertSerializer(alert).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        alerts.availability_alert_delete(user=self.request.user, alert_id=instance.pk)
