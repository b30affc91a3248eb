from django.urls import path

from . import views

app_name = "orders"

urlpatterns = [
    path("offers/<int:offer_id>/quote/", views.offer_quote, name="offer_quote"),
    path("offers/<int:offer_id>/rent/", views.offer_rent, name="offer_rent"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("instances/", views.instance_list, name="instances"),
    path("instances/spend-limit/", views.spend_limit, name="spend_limit"),
    path("instances/<int:instance_id>/", views.instance_detail, name="instance_detail"),
    path("instances/<int:instance_id>/logs/", views.instance_logs, name="instance_logs"),
    path("instances/<int:instance_id>/utilization/", views.instance_utilization, name="instance_utilization"),
    path("instances/<int:instance_id>/report/", views.instance_report, name="instance_report"),
    path("instances/<int:instance_id>/<str:action>/", views.instance_action, name="instance_action"),
    path("templates/", views.launch_templates, name="templates"),
    path("templates/<int:template_id>/delete/", views.launch_template_delete, name="template_delete"),
    path("reports/<int:report_id>/", views.report_detail, name="report_detail"),
]
