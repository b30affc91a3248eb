from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from accounts import services
from accounts.models import ApiKey, SshKey
from accounts.scopes import ACCOUNT, Scope

from .serializers import (
    ApiKeyCreateInputSerializer,
    ApiKeyIssuedSerializer,
    ApiKeySerializer,
    MeSerializer,
    SpendLimitSerializer,
    SshKeyInputSerializer,
    SshKeySerializer,
)


class ApiKeyCreateThrottle(AnonRateThrottle):
    scope = "api_key_create"


class ApiKeyCreateView(APIView):
    """Exchange email + password for an API key, shown once. Send it as `Authorization: Bearer <key>`.

    Failed exchanges count toward the login lockout of the account and of the client address, shared with
    the login page and the admin (429 `login_locked` once locked; it lifts by itself)."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [ApiKeyCreateThrottle]

    @extend_schema(request=ApiKeyCreateInputSerializer, responses={201: ApiKeyIssuedSerializer})
    def post(self, request):
        data = ApiKeyCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # The Django request, not DRF's wrapper: the login throttle marks it, and AxesMiddleware reads it.
        issued = services.api_key_issue_with_password(request=request._request, **data.validated_data)
        body = ApiKeySerializer(issued.api_key).data | {"key": issued.key}
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """The caller's own API keys. DELETE revokes a key."""

    serializer_class = ApiKeySerializer
    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = ACCOUNT
    queryset = ApiKey.objects.none()

    def get_queryset(self):
        return ApiKey.objects.filter(user=self.request.user)

    def perform_destroy(self, instance):
        services.api_key_revoke(api_key=instance)


class SshKeyViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """The caller's own SSH public keys. An order installs the ones it names (`ssh_keys`), or all of
    them, as its instances' authorized_keys; deleting a key leaves instances already ordered as they are."""

    serializer_class = SshKeySerializer
    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.INSTANCES
    queryset = SshKey.objects.none()

    def get_queryset(self):
        return SshKey.objects.filter(user=self.request.user)

    @extend_schema(request=SshKeyInputSerializer, responses={201: SshKeySerializer})
    def create(self, request):
        data = SshKeyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key = services.ssh_key_add(user=request.user, **data.validated_data)
        return Response(SshKeySerializer(key).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        services.ssh_key_delete(user=self.request.user, key_id=instance.pk)


class MeView(APIView):
    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.BILLING

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        return Response(MeSerializer(request.user, context={"request": request}).data)

    @extend_schema(request=SpendLimitSerializer, responses=MeSerializer)
    def patch(self, request):
        """Set your ceiling on the total hourly price of your live instances. A PATCH changes only
        the fields it names: an empty one changes nothing."""
        data = SpendLimitSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        user = request.user
        if "spend_limit_per_hour" in data.validated_data:
            user = services.buyer_set_spend_limit(
                buyer=user, limit_per_hour=data.validated_data["spend_limit_per_hour"]
            )
            if getattr(request.user, "_staff_withheld", False):
                user.withhold_staff_powers()  # as this key sees the account (nothing is saved after)
        return Response(MeSerializer(user, context={"request": request}).data)
