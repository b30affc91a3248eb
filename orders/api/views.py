from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.teams import person_of
from accounts.scopes import Scope
from marketplace.api.inputs import CheckedLookupMixin
from marketplace.api.pagination import CursorPagination
from marketplace.idempotency import idempotent
from orders import disputes, launch, lifecycle, logs, placement, price_changes, quotes, selectors
from orders.models import Instance, InstancePort, LaunchTemplate, ProblemReport

from .serializers import (
    AnswerSerializer,
    InstanceDetailSerializer,
    InstanceSerializer,
    LaunchTemplateSerializer,
    LogSerializer,
    OrderInputSerializer,
    OrderSerializer,
    ProblemReportSerializer,
    QuoteSerializer,
    ResolveSerializer,
    StartSerializer,
    UtilizationSerializer,
)


class QuoteView(APIView):
    """What an order would cost and where it would be placed now. Nothing is held."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.ORDERS

    @extend_schema(request=OrderInputSerializer, responses=QuoteSerializer)
    def post(self, request):
        data = OrderInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        quote = quotes.quote_create(request=data.to_order_request(), buyer=request.user)
        return Response(QuoteSerializer(quote).data)


class OrderViewSet(CheckedLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The caller's orders. POST places one (send an Idempotency-Key)."""

    serializer_class = OrderSerializer
    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.ORDERS
    pagination_class = CursorPagination
    queryset = selectors.Order.objects.none()

    def get_queryset(self):
        instances = Instance.objects.select_related(
            "instance_type", "host__region", "host__organization", "order"
        ).prefetch_related(Prefetch("ports", queryset=InstancePort.objects.active()))
        return selectors.order_list_for_user(user=self.request.user).prefetch_related(
            Prefetch("instances", queryset=instances)
        )

    def get_object(self):
        return self.get_queryset().get(
            pk=selectors.order_get_for_user(user=self.request.user, order_id=self.kwargs["pk"]).pk
        )

    @extend_schema(request=OrderInputSerializer, responses={201: OrderSerializer})
    @idempotent
    def create(self, request):
        data = OrderInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        order = placement.order_place(buyer=request.user, request=data.to_order_request(), placed_by=person_of(request))
        return Response(OrderSerializer(self.get_queryset().get(pk=order.pk)).data, status=status.HTTP_201_CREATED)


class TailSerializer(serializers.Serializer):
    """Query parameters of the logs action (strings, as query parameters are)."""

    tail = serializers.IntegerField(
        min_value=1,
        max_value=logs.MAX_TAIL_LINES,
        default=logs.DEFAULT_TAIL_LINES,
        required=False,
        help_text="How many of the last lines.",
    )


class InstanceViewSet(CheckedLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The caller's instances, with start / stop / terminate actions. Others' instances are 404."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.INSTANCES
    pagination_class = CursorPagination
    queryset = Instance.objects.none()

    def get_serializer_class(self):
        return InstanceSerializer if self.action == "list" else InstanceDetailSerializer

    def get_queryset(self):
        queryset = selectors.instance_list_for_user(user=self.request.user)
        if self.action != "list":
            queryset = queryset.prefetch_related("events")
        return queryset

    def get_object(self):
        instance = selectors.instance_get_for_user(user=self.request.user, instance_id=self.kwargs["pk"])
        return self.get_queryset().get(pk=instance.pk)

    def _act(self, operation):
        instance = self.get_object()
        operation(instance=instance, actor_user=self.request.user)
        return Response(InstanceDetailSerializer(self.get_object()).data)

    @extend_schema(request=None, responses=InstanceDetailSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        """Stop: accelerators go back to the market; the disk stays on the host."""
        return self._act(lifecycle.instance_stop)

    @extend_schema(request=StartSerializer, responses=InstanceDetailSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None):
        """Start again on the same host, or 409 `capacity_taken` with where to get it instead.
        `{"accelerators": false}` starts it in no-GPU mode: its disk with a little CPU and RAM, billed at
        the host's no-GPU rate, its accelerators free for others; a later plain start takes them back
        (409 `capacity_taken` when they are rented, with where else the type is available)."""
        data = StartSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        accelerators = data.validated_data["accelerators"]
        return self._act(
            lambda instance, actor_user: lifecycle.instance_start(
                instance=instance, actor_user=actor_user, accelerators=accelerators
            )
        )

    @extend_schema(request=None, responses=InstanceDetailSerializer)
    @action(detail=True, methods=["post"])
    def terminate(self, request, pk=None):
        return self._act(lifecycle.instance_terminate)

    @extend_schema(
        parameters=[TailSerializer],
        responses=LogSerializer,
    )
    @action(detail=True, methods=["get"])
    def logs(self, request, pk=None):
        """The instance's recent output, as its host's agent last sent it (the last 256 KiB at most)."""
        tail = TailSerializer(data=request.query_params)
        tail.is_valid(raise_exception=True)
        instance = selectors.instance_get_for_user(user=request.user, instance_id=pk)
        text, log = logs.instance_log_tail(instance=instance, lines=tail.validated_data["tail"])
        return Response(
            LogSerializer(
                {
                    "instance": instance.pk,
                    "text": text,
                    "lines": len(text.splitlines()),
                    "shipped_at": log.shipped_at if log else None,
                }
            ).data
        )

    @extend_schema(responses=UtilizationSerializer)
    @action(detail=True, methods=["get"])
    def utilization(self, request, pk=None):
        """The last hour of accelerator readings (one a minute, as its host's agent sent them), its
        uptime and its cost so far."""
        instance = selectors.instance_get_for_user(user=request.user, instance_id=pk)
        return Response(
            UtilizationSerializer({"instance": instance.pk, **selectors.instance_utilization(instance=instance)}).data
        )

    @extend_schema(request=None, responses=InstanceDetailSerializer)
    @action(detail=True, methods=["post"], url_path="accept-price")
    def accept_price(self, request, pk=None):
        """Move an on-demand rental to the host's current price, from now on."""
        price_changes.instance_accept_current_price(instance=self.get_object(), buyer=request.user)
        return Response(InstanceDetailSerializer(self.get_object()).data)


class LaunchTemplateViewSet(
    CheckedLookupMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Launch templates: curated ones (everyone sees them) and your own (you only). POST makes one of
    yours; an order names one by `template`. Staff curate the shared ones in the admin."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.ORDERS
    serializer_class = LaunchTemplateSerializer
    queryset = LaunchTemplate.objects.none()

    def get_queryset(self):
        return launch.launch_templates_visible(self.request.user)

    @extend_schema(request=LaunchTemplateSerializer, responses={201: LaunchTemplateSerializer})
    @idempotent
    def create(self, request):
        data = LaunchTemplateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        template = launch.launch_template_create(owner=request.user, data=dict(data.validated_data))
        return Response(LaunchTemplateSerializer(template).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        launch.launch_template_delete(template=instance, user=self.request.user)


class ProblemReportViewSet(
    CheckedLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Problem reports: buyers file them on their instances, suppliers answer, staff resolve."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.INSTANCES
    pagination_class = CursorPagination
    api_key_scopes = {"answer": Scope.SUPPLIER, "resolve": Scope.STAFF}
    serializer_class = ProblemReportSerializer
    queryset = ProblemReport.objects.none()

    def get_queryset(self):
        return disputes.report_list_for_user(user=self.request.user)

    def get_object(self):
        return disputes.report_get_for_user(user=self.request.user, report_id=self.kwargs["pk"])

    @extend_schema(request=ProblemReportSerializer, responses={201: ProblemReportSerializer})
    @idempotent
    def create(self, request):
        data = ProblemReportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        instance = selectors.instance_get_for_user(user=request.user, instance_id=data.validated_data["instance_id"])
        report = disputes.report_create(
            buyer=request.user,
            instance=instance,
            category=data.validated_data["category"],
            description=data.validated_data["description"],
        )
        return Response(ProblemReportSerializer(report).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AnswerSerializer, responses=ProblemReportSerializer)
    @action(detail=True, methods=["post"])
    def answer(self, request, pk=None):
        data = AnswerSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        report = disputes.report_answer(
            user=request.user, report=self.get_object(), answer=data.validated_data["answer"]
        )
        return Response(ProblemReportSerializer(report).data)

    @extend_schema(request=ResolveSerializer, responses=ProblemReportSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        data = ResolveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        report = disputes.report_resolve(
            staff=request.user,
            report=self.get_object(),
            credit=data.validated_data.get("credit"),
            reason=data.validated_data["reason"],
        )
        return Response(ProblemReportSerializer(report).data)
