from decimal import Decimal

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, mixins, permissions, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.teams import person_of
from accounts.scopes import Scope
from billing import payments, selectors
from billing.models import LedgerPosting, Payout, TopUp, UsageRecord
from marketplace.api import json_types
from marketplace.api.inputs import CheckedLookupMixin
from marketplace.api.pagination import CursorPagination
from marketplace.currency import platform_currency
from marketplace.errors import NotFound
from marketplace.idempotency import idempotent
from orders.selectors import buyer_balance
from suppliers.errors import SupplierErrorCode
from suppliers.selectors import organization_for_user


class BalanceSerializer(json_types.Serializer):
    balance = serializers.DecimalField(max_digits=20, decimal_places=6)
    currency = serializers.CharField()
    burn_per_hour = serializers.DecimalField(max_digits=20, decimal_places=6)
    runway_hours = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)


class UsageSerializer(json_types.ModelSerializer):
    instance = serializers.IntegerField(source="instance_id")
    charge = serializers.SerializerMethodField()
    settled = serializers.SerializerMethodField()

    class Meta:
        model = UsageRecord
        fields = [
            "id",
            "instance",
            "kind",
            "window_start",
            "window_end",
            "seconds",
            "rate_per_hour",
            "charge",
            "settled",
        ]

    def get_charge(self, obj) -> str:
        return str(selectors.usage_charge(obj))

    def get_settled(self, obj) -> bool:
        return obj.settled_by_id is not None


class LedgerEntrySerializer(json_types.ModelSerializer):
    kind = serializers.CharField(source="transaction.kind")
    description = serializers.CharField(source="transaction.description")
    created_at = serializers.DateTimeField(source="transaction.created_at")

    class Meta:
        model = LedgerPosting
        fields = ["id", "amount", "currency", "kind", "description", "created_at"]


class TopUpSerializer(json_types.ModelSerializer):
    class Meta:
        model = TopUp
        fields = ["id", "amount", "currency", "status", "checkout_url", "created_at", "completed_at"]
        read_only_fields = ["id", "currency", "status", "checkout_url", "created_at", "completed_at"]


class TopUpInputSerializer(json_types.Serializer):
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0.01"))


class PayoutSerializer(json_types.ModelSerializer):
    class Meta:
        model = Payout
        fields = ["id", "amount", "currency", "status", "stripe_transfer_id", "created_at", "paid_at"]


class BalanceView(APIView):
    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.BILLING

    @extend_schema(responses=BalanceSerializer)
    def get(self, request):
        return Response(BalanceSerializer(buyer_balance(user=request.user)).data)


class UsageView(generics.ListAPIView):
    """Your usage records, newest first; charges are computed with the settlement rounding rule."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.BILLING
    pagination_class = CursorPagination
    serializer_class = UsageSerializer
    queryset = UsageRecord.objects.none()

    def get_queryset(self):
        return selectors.usage_for_user(user=self.request.user)


class LedgerView(generics.ListAPIView):
    """Your wallet's postings: top-ups, credits, usage charges, refunds."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.BILLING
    pagination_class = CursorPagination
    serializer_class = LedgerEntrySerializer
    queryset = LedgerPosting.objects.none()

    def get_queryset(self):
        return selectors.ledger_for_user(user=self.request.user)


class TopUpViewSet(CheckedLookupMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """POST creates a Stripe Checkout Session: pay at `checkout_url`; the webhook credits you."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.BILLING
    pagination_class = CursorPagination
    serializer_class = TopUpSerializer
    queryset = TopUp.objects.none()

    def get_queryset(self):
        return selectors.top_ups_for_user(user=self.request.user)

    @extend_schema(request=TopUpInputSerializer, responses={201: TopUpSerializer})
    @idempotent
    def create(self, request):
        data = TopUpInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        base = request.build_absolute_uri("/billing/")
        top_up = payments.top_up_create(
            user=request.user,
            payer=person_of(request),
            amount=data.validated_data["amount"],
            success_url=f"{base}?top_up=success",
            cancel_url=f"{base}?top_up=cancelled",
        )
        return Response(TopUpSerializer(top_up).data, status=status.HTTP_201_CREATED)


class PayoutViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Your organization's payouts (suppliers)."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.BILLING
    pagination_class = CursorPagination
    serializer_class = PayoutSerializer
    queryset = Payout.objects.none()

    def get_queryset(self):
        organization = organization_for_user(user=self.request.user, area=Scope.BILLING)
        if organization is None:
            raise NotFound("You have no supplier organization.", code=SupplierErrorCode.NOT_A_SUPPLIER)
        return selectors.payouts_for_organization(organization=organization)


class StatementLineSerializer(json_types.Serializer):
    date = serializers.DateTimeField(source="transaction.created_at")
    kind = serializers.CharField(source="transaction.kind")
    description = serializers.CharField(source="transaction.description")
    amount = serializers.DecimalField(max_digits=20, decimal_places=6)


class StatementSerializer(json_types.Serializer):
    month = serializers.CharField()
    currency = serializers.CharField()
    opening_balance = serializers.DecimalField(max_digits=20, decimal_places=6)
    closing_balance = serializers.DecimalField(max_digits=20, decimal_places=6)
    totals = serializers.DictField(child=serializers.DecimalField(max_digits=20, decimal_places=6))
    lines = StatementLineSerializer(many=True)


class StatementListView(APIView):
    """Months with activity; GET /billing/statements/YYYY-MM/ for one (HTML at /billing/statements/YYYY-MM/)."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.BILLING

    @extend_schema(responses=dict, operation_id="billing_statements_list")
    def get(self, request):
        months = selectors.statement_months(user=request.user)
        return Response({"results": [{"month": m, "url": request.build_absolute_uri(f"{m}/")} for m in months]})


MONTH_PATTERN = r"^(?!0000)\d{4}-(?:0[1-9]|1[0-2])$"


class StatementView(CheckedLookupMixin, APIView):
    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.BILLING

    @extend_schema(
        responses=StatementSerializer,
        parameters=[
            OpenApiParameter("month", str, OpenApiParameter.PATH, pattern=MONTH_PATTERN, description="YYYY-MM")
        ],
    )
    def get(self, request, month: str):
        return Response(StatementSerializer(selectors.statement(user=request.user, month=month)).data)


class EarningsView(APIView):
    """Suppliers: payable balance, what the supplier owes (credits charged beyond its earnings, repaid
    from later earnings before any payout), what was paid out, and settled earnings per host."""

    permission_classes = [permissions.IsAuthenticated]
    api_key_scope = Scope.BILLING

    @extend_schema(responses=dict)
    def get(self, request):
        organization = organization_for_user(user=request.user, area=Scope.BILLING)
        if organization is None:
            raise NotFound("You have no supplier organization.", code=SupplierErrorCode.NOT_A_SUPPLIER)
        earnings = selectors.supplier_earnings(organization=organization)
        by_host = selectors.revenue_by_host(organization=organization)
        return Response(
            {
                "payable": str(earnings["payable"]),
                "owed_by_supplier": str(earnings["owed_by_supplier"]),
                "paid_out": str(earnings["paid_out"]),
                "currency": platform_currency().code,
                "revenue_by_host": [{**row, "earned": str(row["earned"])} for row in by_host],
            }
        )
