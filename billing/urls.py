from django.urls import path

from . import views

app_name = "billing"

urlpatterns = [
    path("", views.buyer_billing, name="buyer"),
    path("earnings/", views.supplier_earnings, name="earnings"),
    path("stripe/webhook/", views.stripe_webhook, name="stripe_webhook"),
    path("statements/<str:month>/", views.statement_page, name="statement"),
    path("staff/adjustments/", views.staff_adjustments, name="staff_adjustments"),
]
