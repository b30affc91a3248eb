"""Every API resource, mounted under /api/v1/ from one router."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from accounts.api.teams import InvitationAcceptView, TeamViewSet
from accounts.api.views import ApiKeyCreateView, ApiKeyViewSet, MeView, SshKeyViewSet
from billing.api.views import (
    BalanceView,
    EarningsView,
    LedgerView,
    PayoutViewSet,
    StatementListView,
    StatementView,
    TopUpViewSet,
    UsageView,
)
from marketplace.api.alerts import AvailabilityAlertViewSet
from marketplace.api.market import MarketDepthView
from marketplace.api.views import AcceleratorModelViewSet, InstanceTypeViewSet, OfferViewSet, RegionViewSet
from marketplace.api.webhooks import WebhookDeliveryViewSet, WebhookEndpointViewSet
from orders.api.views import InstanceViewSet, LaunchTemplateViewSet, OrderViewSet, ProblemReportViewSet, QuoteView
from suppliers.api.agent import (
    AgentCommandAckView,
    AgentHeartbeatView,
    AgentInstanceLogView,
    AgentInstanceStateView,
    AgentInventoryView,
    AgentRegisterView,
    AgentSelftestView,
)
from suppliers.api.views import (
    HostViewSet,
    OrganizationInvitationListView,
    OrganizationInvitationView,
    OrganizationMemberListView,
    OrganizationMemberView,
    OrganizationView,
)

router = DefaultRouter()
router.register("accelerator-models", AcceleratorModelViewSet, basename="accelerator-model")
router.register("instance-types", InstanceTypeViewSet, basename="instance-type")
router.register("regions", RegionViewSet, basename="region")
router.register("offers", OfferViewSet, basename="offer")
router.register("hosts", HostViewSet, basename="host")
router.register("api-keys", ApiKeyViewSet, basename="api-key")
router.register("ssh-keys", SshKeyViewSet, basename="ssh-key")
router.register("availability-alerts", AvailabilityAlertViewSet, basename="availability-alert")
router.register("orders", OrderViewSet, basename="order")
router.register("instances", InstanceViewSet, basename="instance")
router.register("templates", LaunchTemplateViewSet, basename="template")
router.register("problem-reports", ProblemReportViewSet, basename="problem-report")
router.register("billing/top-ups", TopUpViewSet, basename="top-up")
router.register("billing/payouts", PayoutViewSet, basename="payout")
router.register("webhook-endpoints", WebhookEndpointViewSet, basename="webhook-endpoint")
router.register("webhook-deliveries", WebhookDeliveryViewSet, basename="webhook-delivery")
router.register("teams", TeamViewSet, basename="team")

urlpatterns = [
    path("auth/keys/", ApiKeyCreateView.as_view(), name="auth-keys"),
    path("me/", MeView.as_view(), name="me"),
    path("invitations/accept/", InvitationAcceptView.as_view(), name="invitation-accept"),
    path("organization/", OrganizationView.as_view(), name="organization"),
    path("organization/members/", OrganizationMemberListView.as_view(), name="organization-members"),
    path("organization/members/<int:user_id>/", OrganizationMemberView.as_view(), name="organization-member"),
    path("organization/invitations/", OrganizationInvitationListView.as_view(), name="organization-invitations"),
    path(
        "organization/invitations/<int:invitation_id>/",
        OrganizationInvitationView.as_view(),
        name="organization-invitation",
    ),
    path("quotes/", QuoteView.as_view(), name="quotes"),
    path("market/depth/", MarketDepthView.as_view(), name="market-depth"),
    path("billing/balance/", BalanceView.as_view(), name="billing-balance"),
    path("billing/usage/", UsageView.as_view(), name="billing-usage"),
    path("billing/ledger/", LedgerView.as_view(), name="billing-ledger"),
    path("billing/earnings/", EarningsView.as_view(), name="billing-earnings"),
    path("billing/statements/", StatementListView.as_view(), name="billing-statements"),
    path("billing/statements/<str:month>/", StatementView.as_view(), name="billing-statement"),
    path("agent/register/", AgentRegisterView.as_view(), name="agent-register"),
    path("agent/inventory/", AgentInventoryView.as_view(), name="agent-inventory"),
    path("agent/heartbeat/", AgentHeartbeatView.as_view(), name="agent-heartbeat"),
    path("agent/commands/<int:command_id>/ack/", AgentCommandAckView.as_view(), name="agent-command-ack"),
    path("agent/instances/<int:instance_id>/state/", AgentInstanceStateView.as_view(), name="agent-instance-state"),
    path("agent/instances/<int:instance_id>/logs/", AgentInstanceLogView.as_view(), name="agent-instance-logs"),
    path("agent/selftest/", AgentSelftestView.as_view(), name="agent-selftest"),
    path("", include(router.urls)),
]
