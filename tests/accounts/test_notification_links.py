"""Notifications lead to their object: the in-app list links it, the email and the webhook event
carry its address, and a supplier reaches a problem report from the notification and from the
dashboard."""

import pytest
from django.test import Client

from accounts.services import notify
from marketplace.models import WebhookDelivery
from marketplace.webhooks import endpoint_create
from orders.disputes import report_answer, report_create
from tests.factories import HostFactory, l4_host_data
from tests.orders.conftest import order

pytestmark = pytest.mark.django_db


@pytest.fixture
def report(buyer, supplier_org):
    HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())
    instance = order(buyer).instances.get()
    return report_create(buyer=buyer, instance=instance, category="performance", description="GPU 0 throttles.")


def test_a_supplier_reaches_a_problem_report_from_its_notification_and_the_dashboard(report, supplier):
    notification = supplier.notifications.get(kind="problem_report")
    assert notification.link == f"/reports/{report.pk}/"
    client = Client()
    client.force_login(supplier)
    listed = client.get("/accounts/notifications/").content.decode()
    assert f'<a href="/reports/{report.pk}/">' in listed
    opened = client.get(notification.link)
    assert opened.status_code == 200 and "GPU 0 throttles." in opened.content.decode()
    dashboard = client.get("/supplier/").content.decode()
    assert "Problem reports to answer" in dashboard and f'href="/reports/{report.pk}/"' in dashboard
    report_answer(user=supplier, report=report, answer="A fan failed; replaced.")
    assert report.buyer.notifications.get(kind="problem_report").link == f"/reports/{report.pk}/"
    assert "Problem reports to answer" in client.get("/supplier/").content.decode()  # answered, still open


def test_the_email_and_the_webhook_event_carry_the_objects_address(
    buyer, settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.SITE_URL = "https://market.example.com"
    endpoint_create(user=buyer, url="https://127.0.0.1:9/hooks", events=["*"])
    with django_capture_on_commit_callbacks(execute=True):
        notify(user=buyer, kind="balance_low", title="Low balance", body="Top up.", link="/billing/")
    assert mailoutbox[-1].body.endswith("https://market.example.com/billing/")
    payload = WebhookDelivery.objects.get().payload
    assert payload["data"]["url"] == "https://market.example.com/billing/"
