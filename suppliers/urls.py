from django.urls import path

from . import views

app_name = "suppliers"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("analytics/", views.analytics, name="analytics"),
    path("onboarding/", views.onboarding, name="onboarding"),
    path("documents/", views.documents, name="documents"),
    path("members/", views.members, name="members"),
    path("documents/<int:document_id>/", views.document_download, name="document_download"),
    path("hosts/new/", views.host_create, name="host_create"),
    path("hosts/<int:host_id>/", views.host_detail, name="host_detail"),
    path("hosts/<int:host_id>/edit/", views.host_edit, name="host_edit"),
    path("hosts/<int:host_id>/listing/", views.host_listing, name="host_listing"),
    path("hosts/<int:host_id>/agent/", views.host_agent_status, name="host_agent_status"),
    path("hosts/<int:host_id>/maintenance/", views.host_maintenance, name="host_maintenance"),
    path("hosts/<int:host_id>/registration-token/", views.host_registration_token, name="host_registration_token"),
    path("hosts/<int:host_id>/delete/", views.host_delete, name="host_delete"),
]
