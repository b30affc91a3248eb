"""The Webhooks pages: add an endpoint (its secret shown once), see each delivery with its tries,
send one again, turn an endpoint off and on, delete it; others' endpoints do not exist."""

import pytest
from django.urls import reverse

from accounts.services import notify
from marketplace import webhooks
from marketplace.models import WebhookDelivery, WebhookEndpoint
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_add_an_endpoint_and_see_its_secret_once(client, buyer, settings):
    client.force_login(buyer)
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    refused = client.post(reverse("webhook_endpoints"), {"url": "http://example.com/h", "events": ["*"]})
    assert refused.context["secret"] is None and "https" in str(refused.context["form"].errors)
    assert not WebhookEndpoint.objects.exists()
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    created = client.post(
        reverse("webhook_endpoints"), {"url": "http://127.0.0.1:9/h", "events": ["instance.status_changed"]}
    )
    secret = created.context["secret"]
    assert secret and secret in created.content.decode()
    page = client.get(reverse("webhook_endpoints")).content.decode()
    assert "127.0.0.1:9/h" in page and secret not in page and "instance.status_changed" in page


def test_deliveries_with_their_tries_replay_off_on_and_delete(client, buyer):
    endpoint, _ = webhooks.endpoint_create(user=buyer, url="http://127.0.0.1:9/h", events=["*"])
    notify(user=buyer, kind="balance_low", title="Low")
    delivery = WebhookDelivery.objects.get()
    webhooks.delivery_attempt(delivery_id=delivery.pk)  # nothing listens on port 9: a failed try
    client.force_login(buyer)
    url = reverse("webhook_endpoint", args=[endpoint.pk])
    page = client.get(url).content.decode()
    assert "notification.balance_low" in page and "ConnectionError" in page

    client.post(url, {"action": "replay", "delivery": delivery.pk})
    assert WebhookDelivery.objects.filter(replay_of=delivery).count() == 1
    client.post(url, {"action": "disable"})
    endpoint.refresh_from_db()
    assert not endpoint.active
    refused = client.post(url, {"action": "replay", "delivery": delivery.pk}, follow=True)
    assert "turn it on first" in refused.content.decode()
    client.post(url, {"action": "enable"})
    endpoint.refresh_from_db()
    assert endpoint.active

    stranger = UserFactory()
    client.force_login(stranger)
    assert client.get(url).status_code == 404
    assert client.post(url, {"action": "delete"}).status_code == 404
    client.force_login(buyer)
    client.post(url, {"action": "delete"})
    assert not WebhookEndpoint.objects.exists()
