"""Outgoing webhooks: events recorded with the change that caused them, posted signed, retried with
backoff, every try visible, replayable; failing endpoints disabled with a notice; no delivery to
private or loopback addresses where that is not allowed; one real Celery worker delivers."""

import datetime as dt
import hashlib
import hmac
import json
import re
import ssl
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Notification
from accounts.scopes import DEFAULT_SCOPES
from accounts.services import api_key_issue, notify
from marketplace import webhook_destinations, webhooks
from marketplace.errors import InvalidInput
from marketplace.models import WebhookDelivery, WebhookEndpoint
from marketplace.tasks import webhook_deliver_task
from orders.agent import instance_agent_report
from orders.placement import order_place
from orders.requests import OrderRequest
from tests.factories import HostFactory, UserFactory, l4_host_data
from tests.support.celery_worker import celery_worker, wait_until

pytestmark = pytest.mark.django_db


class Receiver:
    """A local HTTPS-less receiver (tests allow http to 127.0.0.1): records requests, answers `status`."""

    def __init__(self):
        self.requests: list[tuple[dict, bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()


def standalone_verify(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    """The receiver's snippet from the module docstring, verbatim in spirit."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    signed = f"{parts['t']}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(parts["t"])) <= tolerance
    return fresh and hmac.compare_digest(expected.encode(), parts["v1"].encode())


def full_client(user):

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key_issue(user=user, name='hooks', scopes=DEFAULT_SCOPES).key}")
    return client


def test_an_instance_status_change_is_posted_signed_and_recorded(receiver, buyer, supplier_org):
    client = full_client(buyer)
    created = client.post(
        "/api/v1/webhook-endpoints/", {"url": receiver.url, "events": ["instance.status_changed"]}, format="json"
    )
    assert created.status_code == 201, created.content
    secret = created.json()["secret"]
    assert secret.startswith("whsec_") and secret not in WebhookEndpoint.objects.get().secret_encrypted
    assert "secret" not in client.get("/api/v1/webhook-endpoints/").json()["results"][0]

    HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())
    instance = order_place(buyer=buyer, request=OrderRequest(instance_type="l4-24g.1x", image="x")).instances.get()
    instance_agent_report(instance=instance, status="running")
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == "instance.status_changed" and delivery.payload["data"]["to"] == "running"

    assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "succeeded"
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) is None  # delivered once, never twice
    ((headers, body),) = receiver.requests
    assert json.loads(body)["data"] == {**delivery.payload["data"]} and json.loads(body)["id"] == str(delivery.event_id)
    assert headers["Marketplace-Event"] == "instance.status_changed"
    assert standalone_verify(secret, body, headers["Marketplace-Signature"])
    assert webhooks.signature_verify(secret, body, headers["Marketplace-Signature"])
    assert not webhooks.signature_verify(secret, body + b" ", headers["Marketplace-Signature"])  # altered body
    assert not webhooks.signature_verify("whsec_other", body, headers["Marketplace-Signature"])
    stale = time.time() + 3600
    assert not webhooks.signature_verify(secret, body, headers["Marketplace-Signature"], now=stale)  # replayed late

    listed = client.get(f"/api/v1/webhook-endpoints/{delivery.endpoint_id}/deliveries/").json()["results"]
    assert listed[0]["status"] == "succeeded" and listed[0]["tries"][0]["status_code"] == 200


def test_an_event_of_a_rolled_back_change_is_never_sent(receiver, buyer):
    webhooks.endpoint_create(user=buyer, url=receiver.url, events=["*"])
    with pytest.raises(RuntimeError), transaction.atomic():
        notify(user=buyer, kind="balance_low", title="Low")
        assert WebhookDelivery.objects.count() == 1
        raise RuntimeError
    assert not WebhookDelivery.objects.exists()
    notify(user=buyer, kind="balance_low", title="Low", body="Top up")
    delivery = WebhookDelivery.objects.get()
    assert delivery.event_type == "notification.balance_low" and delivery.payload["data"]["body"] == "Top up"


def test_failures_are_retried_with_backoff_then_fail_each_try_recorded(receiver, buyer, settings):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 100
    receiver.status = 500
    webhooks.endpoint_create(user=buyer, url=receiver.url, events=["notification.balance_low"])
    notify(user=buyer, kind="balance_low", title="Low")
    notify(user=buyer, kind="credit_note", title="Not subscribed")
    delivery = WebhookDelivery.objects.get()
    before = timezone.now()
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "pending"
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.next_attempt_at >= before + timedelta(seconds=29)
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) is None  # not due yet
    assert webhooks.deliveries_due() == []
    for _ in range(len(webhooks.RETRY_DELAYS)):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        assert webhooks.deliveries_due() == [delivery.pk]
        webhooks.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == len(webhooks.RETRY_DELAYS) + 1
    assert [a.status_code for a in delivery.attempt_rows.all()] == [500] * delivery.attempts
    assert len(receiver.requests) == delivery.attempts


def test_an_endpoint_that_keeps_failing_is_disabled_and_its_owner_told(receiver, buyer, settings):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    receiver.status = 503
    endpoint, _ = webhooks.endpoint_create(user=buyer, url=receiver.url, events=["notification.balance_low"])
    for n in range(4):
        notify(user=buyer, kind="balance_low", title=f"Low {n}")
    first, second, third, fourth = WebhookDelivery.objects.order_by("id")
    for delivery in (first, second, third):
        webhooks.delivery_attempt(delivery_id=delivery.pk)
    endpoint.refresh_from_db()
    assert not endpoint.active and "3 failed deliveries in a row" in endpoint.disabled_reason
    fourth.refresh_from_db()
    assert fourth.status == "failed"  # waiting deliveries are not sent to a disabled endpoint
    assert Notification.objects.filter(user=buyer, kind="webhook_disabled").exists()
    # Replaying needs the endpoint on again; on again, its failure count starts over.
    with pytest.raises(InvalidInput):
        webhooks.delivery_replay(delivery=first)
    webhooks.endpoint_update(endpoint=endpoint, active=True)
    receiver.status = 204
    replay = webhooks.delivery_replay(delivery=first)
    assert replay.event_id == first.event_id and replay.replay_of_id == first.pk
    assert webhooks.delivery_attempt(delivery_id=replay.pk) == "succeeded"
    endpoint.refresh_from_db()
    assert endpoint.active and endpoint.consecutive_failures == 0


def test_no_delivery_to_private_or_loopback_addresses_where_not_allowed(receiver, buyer, settings):
    endpoint, _ = webhooks.endpoint_create(user=buyer, url=receiver.url, events=["*"])
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    for url, message in (
        ("http://example.com/hook", "https"),
        ("https://127.0.0.1/hook", "non-public"),
        ("https://localhost:8443/hook", "non-public"),
        ("https://10.1.2.3/hook", "non-public"),
        ("https://[::1]/hook", "non-public"),
        ("https://169.254.169.254/latest/meta-data", "non-public"),
        ("https://[64:ff9b::a00:1]/hook", "non-public"),  # NAT64 of 10.0.0.1
        ("https://127.0.0.1\\@example.com/hook", "platform delivers"),  # parsers disagree on the host
        ("https://user@example.com/hook", "platform delivers"),
        ("https://exämple.com/hook", "platform delivers"),
        ("https://[::1/hook", "platform delivers"),
        ("https://example.com:99999/hook", "platform delivers"),
        ("https://example.com:0/hook", "platform delivers"),
    ):
        with pytest.raises(InvalidInput, match=message):
            webhooks.endpoint_create(user=buyer, url=url, events=["*"])
    # An endpoint registered where it was allowed is refused at delivery time: nothing is sent.
    notify(user=buyer, kind="balance_low", title="Low")
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "pending"
    assert receiver.requests == [] and "https" in delivery.attempt_rows.get().error


def test_endpoints_and_deliveries_are_their_owners_only(receiver, buyer):
    endpoint, _ = webhooks.endpoint_create(user=buyer, url=receiver.url, events=["*"])
    notify(user=buyer, kind="balance_low", title="Low")
    delivery = WebhookDelivery.objects.get()
    stranger = full_client(UserFactory())
    assert stranger.get("/api/v1/webhook-endpoints/").json()["results"] == []
    assert stranger.get(f"/api/v1/webhook-endpoints/{endpoint.pk}/deliveries/").status_code == 404
    assert stranger.post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay/").status_code == 404
    assert stranger.delete(f"/api/v1/webhook-endpoints/{endpoint.pk}/").status_code == 404
    owner = full_client(buyer)
    bad = owner.post(
        "/api/v1/webhook-endpoints/", {"url": receiver.url, "events": ["instance.exploded"]}, format="json"
    )
    assert bad.status_code == 400 and "events" in bad.json()["fields"]
    replay = owner.post(f"/api/v1/webhook-deliveries/{delivery.pk}/replay/")
    assert replay.status_code == 201 and replay.json()["replay_of"] == delivery.pk
    assert owner.delete(f"/api/v1/webhook-endpoints/{endpoint.pk}/").status_code == 204


def test_a_worker_that_died_mid_delivery_is_picked_up_by_the_sweeper(receiver, buyer):
    webhooks.endpoint_create(user=buyer, url=receiver.url, events=["*"])
    notify(user=buyer, kind="balance_low", title="Low")
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status="sending", claimed_at=timezone.now() - timedelta(minutes=6)
    )
    assert webhooks.deliveries_due() == [delivery.pk]
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_delivers(receiver, catalog):

    user = UserFactory(email="hooks-worker@example.com")
    webhooks.endpoint_create(user=user, url=receiver.url, events=["*"])
    notify(user=user, kind="balance_low", title="Low")
    delivery = WebhookDelivery.objects.get()
    with celery_worker() as queue:
        webhook_deliver_task.apply_async((delivery.pk,), queue=queue)
        assert wait_until(lambda: WebhookDelivery.objects.get(pk=delivery.pk).status == "succeeded")
    assert len(receiver.requests) == 1


def test_every_notification_kind_in_the_code_can_be_subscribed_to():

    root = Path(__file__).resolve().parents[2]
    kinds = set()
    for app in ("accounts", "billing", "orders", "suppliers", "marketplace"):
        for path in (root / app).rglob("*.py"):
            text = path.read_text()
            for match in re.finditer(r"notify(?:_all)?\(", text):
                kinds.update(re.findall(r'kind="([a-z_]+)"', text[match.end() : match.end() + 400].split(")\n")[0]))
    kinds.add("availability_alert")  # marketplace.alerts names it in a constant
    assert kinds and kinds <= set(webhooks.NOTIFICATION_KINDS), kinds - set(webhooks.NOTIFICATION_KINDS)


def test_lost_messages_and_dead_workers_are_swept_and_counted_never_looped(receiver, buyer):
    webhooks.endpoint_create(user=buyer, url=receiver.url, events=["*"])
    notify(user=buyer, kind="balance_low", title="Low")
    delivery = WebhookDelivery.objects.get()
    assert webhooks.deliveries_due() == []  # its message was queued at commit: not sent twice
    WebhookDelivery.objects.filter(pk=delivery.pk).update(queued_at=timezone.now() - timedelta(minutes=3))
    assert webhooks.deliveries_due() == [delivery.pk]  # the message was lost
    assert webhooks.deliveries_due() == []  # queued again once, not at every sweep of a backlog
    # A delivery whose worker dies on every try runs out of tries.
    for _ in range(len(webhooks.RETRY_DELAYS) + 1):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status="sending", claimed_at=timezone.now() - timedelta(minutes=6)
        )
        webhooks.deliveries_due()
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == len(webhooks.RETRY_DELAYS) + 1


def test_finished_deliveries_are_pruned_after_their_retention(receiver, buyer):
    webhooks.endpoint_create(user=buyer, url=receiver.url, events=["*"])
    for n in range(3):
        notify(user=buyer, kind="balance_low", title=f"Low {n}")
    old, recent, waiting = WebhookDelivery.objects.order_by("id")
    WebhookDelivery.objects.filter(pk__in=[old.pk, waiting.pk]).update(created_at=timezone.now() - timedelta(days=31))
    for delivery in (old, recent):
        webhooks.delivery_attempt(delivery_id=delivery.pk)
    assert webhooks.deliveries_prune() == 1
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {recent.pk, waiting.pk}


def test_https_deliveries_connect_to_the_checked_address_and_verify_the_hosts_certificate(tmp_path):
    """The pinned connection: TCP to the address checked, TLS for the URL's host name (a certificate
    for another name is refused), `Host` the URL's."""

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("hooks.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    receiver = Receiver()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    port = receiver.server.server_port
    try:
        for host, ok in (("hooks.test", True), ("other.test", False)):
            with requests.Session() as session:
                session.mount("https://", webhook_destinations._PinnedAdapter(host))
                try:
                    response = session.post(
                        f"https://127.0.0.1:{port}/hooks",
                        data=b"{}",
                        headers={"Host": f"{host}:{port}"},
                        verify=str(tmp_path / "cert.pem"),
                        timeout=5,
                    )
                    assert ok and response.status_code == 200
                except requests.exceptions.SSLError:
                    assert not ok
    finally:
        receiver.server.shutdown()
    assert [headers["Host"] for headers, _ in receiver.requests] == [f"hooks.test:{port}"]


def test_a_new_secret_signs_from_now_on_and_is_shown_once(receiver, buyer):
    client = full_client(buyer)
    endpoint, first = webhooks.endpoint_create(user=buyer, url=receiver.url, events=["*"])
    rotated = client.post(f"/api/v1/webhook-endpoints/{endpoint.pk}/rotate-secret/")
    assert rotated.status_code == 200
    second = rotated.json()["secret"]
    assert second != first and "secret" not in client.get(f"/api/v1/webhook-endpoints/{endpoint.pk}/").json()
    notify(user=buyer, kind="balance_low", title="Low")
    webhooks.delivery_attempt(delivery_id=WebhookDelivery.objects.get().pk)
    ((headers, body),) = receiver.requests
    assert webhooks.signature_verify(second, body, headers["Marketplace-Signature"])
    assert not webhooks.signature_verify(first, body, headers["Marketplace-Signature"])
    assert full_client(UserFactory()).post(f"/api/v1/webhook-endpoints/{endpoint.pk}/rotate-secret/").status_code == 404


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),  # IPv4-mapped
        ("::ffff:93.184.216.34", True),
        ("2002:a00:1::", False),  # 6to4 around 10.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64
        ("64:ff9b:1::7f00:1", False),  # local-use NAT64
        ("::127.0.0.1", False),  # IPv4-compatible
        ("::ffff:0:a00:1", False),  # IPv4-translated
        ("fec0::1", False),  # site-local
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
    ],
)
def test_ipv6_forms_that_carry_an_ipv4_address_are_judged_by_it(address, public):
    assert webhook_destinations._public(address) is public


def test_an_at_sign_in_the_path_or_query_is_fine_but_not_in_the_host_part(buyer):
    endpoint, _ = webhooks.endpoint_create(
        user=buyer, url="http://127.0.0.1:9/@team/hook?email=a@b.example", events=["*"]
    )
    assert endpoint.url.endswith("a@b.example")


def test_a_delivery_tries_each_checked_address_in_turn(receiver):
    port = receiver.server.server_port
    destination = webhook_destinations.Destination("http", "127.0.0.1", port, "/hooks", ("::1", "127.0.0.1"))
    assert webhook_destinations.post_pinned(destination, b"{}", {"Content-Type": "application/json"}) == 200
    assert len(receiver.requests) == 1


def test_a_try_whose_worker_died_is_listed_and_counted(receiver, buyer, settings):
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 2
    endpoint, _ = webhooks.endpoint_create(user=buyer, url=receiver.url, events=["*"])
    notify(user=buyer, kind="balance_low", title="Low")
    delivery = WebhookDelivery.objects.get()
    for _ in range(2):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status="sending", claimed_at=timezone.now() - timedelta(minutes=6)
        )
        webhooks.deliveries_due()
    delivery.refresh_from_db()
    endpoint.refresh_from_db()
    assert [a.error for a in delivery.attempt_rows.all()] == ["The worker stopped during the try."] * 2
    assert not endpoint.active and "worker stopped" in endpoint.disabled_reason
    assert Notification.objects.filter(user=buyer, kind="webhook_disabled").count() == 1
