"""Outgoing webhooks over the API: `/api/v1/webhook-endpoints/` (register, list, change, delete;
each endpoint's deliveries with their tries) and `/api/v1/webhook-deliveries/{id}/replay/`.
Signing and retries: `marketplace.webhooks`."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.scopes import ACCOUNT
from marketplace import webhooks
from marketplace.api import json_types
from marketplace.api.inputs import CheckedLookupMixin
from marketplace.api.pagination import CursorPagination
from marketplace.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

EVENT_CHOICES = [webhooks.ALL_EVENTS, *webhooks.EVENT_TYPES]


class WebhookEndpointSerializer(json_types.ModelSerializer):
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_CHOICES), read_only=True)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "events",
            "active",
            "consecutive_failures",
            "disabled_at",
            "disabled_reason",
            "created_at",
        ]
        read_only_fields = fields


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(help_text="The signing secret. Shown once; store it now.")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookEndpointInputSerializer(json_types.Serializer):
    url = serializers.CharField(max_length=2000, help_text="An https:// URL on a public address.")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_CHOICES),
        min_length=1,
        max_length=len(EVENT_CHOICES),
        help_text='Event types to receive, or ["*"] for all.',
    )
    description = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


class WebhookEndpointUpdateSerializer(json_types.Serializer):
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_CHOICES),
        min_length=1,
        max_length=len(EVENT_CHOICES),
        required=False,
    )
    active = serializers.BooleanField(required=False, help_text="true turns a disabled endpoint on again.")


class WebhookAttemptSerializer(json_types.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["at", "status_code", "error", "duration_ms"]
        read_only_fields = fields


class WebhookDeliverySerializer(json_types.ModelSerializer):
    tries = WebhookAttemptSerializer(source="attempt_rows", many=True, read_only=True)
    endpoint = serializers.IntegerField(source="endpoint_id", read_only=True)
    replay_of = serializers.IntegerField(source="replay_of_id", read_only=True, allow_null=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "endpoint",
            "event_id",
            "event_type",
            "status",
            "attempts",
            "next_attempt_at",
            "created_at",
            "finished_at",
            "replay_of",
            "payload",
            "tries",
        ]
        read_only_fields = fields


class WebhookEndpointViewSet(
    CheckedLookupMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your webhook endpoints: HTTPS addresses that receive your events (instance status changes,
    preemption notices, low balance, payouts, problem report updates, ...), signed with the
    endpoint's secret (`Marketplace-Signature: t=...,v1=...`, HMAC-SHA256 of `t.body`). Failed
    deliveries are retried with backoff for about five hours; an endpoint that keeps failing is
    disabled and you are told. Changing or deleting one needs a key with every scope of the account."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = ACCOUNT
    serializer_class = WebhookEndpointSerializer
    queryset = WebhookEndpoint.objects.none()

    def get_queryset(self):
        return WebhookEndpoint.objects.filter(user=self.request.user)

    def get_object(self):
        return webhooks.endpoint_for_user(user=self.request.user, endpoint_id=self.kwargs["pk"])

    def perform_destroy(self, instance):
        webhooks.endpoint_delete(endpoint=instance)

    @extend_schema(request=WebhookEndpointInputSerializer, responses={201: WebhookEndpointCreatedSerializer})
    def create(self, request):
        data = WebhookEndpointInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = webhooks.endpoint_create(user=request.user, **data.validated_data)
        body = WebhookEndpointSerializer(endpoint).data | {"secret": secret}
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=WebhookEndpointUpdateSerializer, responses=WebhookEndpointSerializer)
    def partial_update(self, request, pk=None):
        data = WebhookEndpointUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = webhooks.endpoint_update(endpoint=self.get_object(), **data.validated_data)
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(request=None, responses=WebhookEndpointCreatedSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """A new signing secret, shown once; the old one stops signing at once."""
        endpoint = self.get_object()
        secret = webhooks.endpoint_secret_rotate(endpoint=endpoint)
        return Response(WebhookEndpointSerializer(endpoint).data | {"secret": secret})

    @extend_schema(responses=WebhookDeliverySerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=CursorPagination)
    def deliveries(self, request, pk=None):
        """The endpoint's deliveries, newest first, each with its tries."""
        endpoint = self.get_object()
        queryset = endpoint.deliveries.prefetch_related("attempt_rows")
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


class WebhookDeliveryViewSet(CheckedLookupMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """One delivery of yours with its tries; `replay` sends its event again."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = ACCOUNT
    serializer_class = WebhookDeliverySerializer
    queryset = WebhookDelivery.objects.none()

    def get_queryset(self):
        return WebhookDelivery.objects.filter(endpoint__user=self.request.user).prefetch_related("attempt_rows")

    @extend_schema(request=None, responses={201: WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        replay = webhooks.delivery_replay(delivery=self.get_object())
        return Response(WebhookDeliverySerializer(replay).data, status=status.HTTP_201_CREATED)
