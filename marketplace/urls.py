from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from django.views.i18n import set_language
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from accounts.scopes import page_scope
from suppliers import views as supplier_views

from . import market_views, views

urlpatterns = [
    path("", page_scope(None)(RedirectView.as_view(pattern_name="offers", permanent=False)), name="index"),
    path("offers/", views.offer_search, name="offers"),
    path("offers/<int:offer_id>/", views.offer_detail, name="offer_detail"),
    path("instance-types/", views.instance_type_list, name="instance_types"),
    path("instance-types/<str:name>/", views.instance_type_detail, name="instance_type_detail"),
    path("alerts/", views.availability_alerts, name="availability_alerts"),
    path("webhooks/", views.webhook_endpoints, name="webhook_endpoints"),
    path("webhooks/<int:endpoint_id>/", views.webhook_endpoint, name="webhook_endpoint"),
    path("alerts/<int:alert_id>/delete/", views.availability_alert_delete, name="availability_alert_delete"),
    path("", include("orders.urls")),
    path("accounts/", include("accounts.urls")),
    path("supplier/", include("suppliers.urls")),
    path("billing/", include("billing.urls")),
    path("staff/moderation/", views.moderation_dashboard, name="moderation"),
    path("market/", market_views.market_depth_page, name="market_depth"),
    path("staff/market/", market_views.market_overview_page, name="market_overview"),
    path("favicon.ico", views.favicon),
    path("i18n/setlang/", page_scope(None)(set_language), name="set_language"),
    path("agent/agent.pyz", supplier_views.agent_download, name="agent_download"),
    path("agent/install.sh", supplier_views.agent_install_script, name="agent_install_script"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("marketplace.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

handler404 = "marketplace.error_views.not_found"
handler500 = "marketplace.error_views.server_error"
