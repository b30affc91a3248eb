"""Every API resource, mounted under /api/v1/ from one router."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from accounts.api.views import ApiKeyCreateView, ApiKeyViewSet, MeView
from marketplace.api.views import AcceleratorModelViewSet, InstanceTypeViewSet, OfferViewSet, RegionViewSet
from orders.api.views import InstanceViewSet, OrderViewSet, QuoteView
from suppliers.api.views import HostViewSet, OrganizationView

router = DefaultRouter()
router.register("accelerator-models", AcceleratorModelViewSet, basename="accelerator-model")
router.register("instance-types", InstanceTypeViewSet, basename="instance-type")
router.register("regions", RegionViewSet, basename="region")
router.register("offers", OfferViewSet, basename="offer")
router.register("hosts", HostViewSet, basename="host")
router.register("api-keys", ApiKeyViewSet, basename="api-key")
router.register("orders", OrderViewSet, basename="order")
router.register("instances", InstanceViewSet, basename="instance")

urlpatterns = [
    path("auth/keys/", ApiKeyCreateView.as_view(), name="auth-keys"),
    path("me/", MeView.as_view(), name="me"),
    path("organization/", OrganizationView.as_view(), name="organization"),
    path("quotes/", QuoteView.as_view(), name="quotes"),
    path("", include(router.urls)),
]
