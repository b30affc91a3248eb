"""Request limits per API key and per account: over a limit, 429 `throttled` with Retry-After and
the limit named, nothing written; the count is one atomic increment in the shared cache, so
concurrent requests never get past the limit together."""

import threading
import uuid
from types import SimpleNamespace

import pytest
from rest_framework import exceptions
from rest_framework.test import APIClient

from accounts.models import SshKey
from accounts.services import api_key_issue
from marketplace.api.throttling import ApiKeyRateThrottle, parse_rate
from suppliers.agent_services import agent_register, host_registration_token_issue
from tests.factories import HostFactory, UserFactory, l4_host_data

pytestmark = pytest.mark.django_db


def key_client(user) -> tuple[APIClient, object]:
    issued = api_key_issue(user=user, name=f"k-{uuid.uuid4().hex[:6]}")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.key}")
    return client, issued.api_key


def test_a_key_over_its_limit_gets_429_with_retry_after_and_another_key_does_not(settings):
    settings.API_RATE_LIMITS = {"key": "3/minute", "account": ""}
    user = UserFactory()
    first, _ = key_client(user)
    second, _ = key_client(user)
    assert [first.get("/api/v1/me/").status_code for _ in range(3)] == [200, 200, 200]
    refused = first.get("/api/v1/me/")
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "throttled" and "this API key" in body["detail"] and "3/minute" in body["detail"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert second.get("/api/v1/me/").status_code == 200


def test_the_account_limit_counts_every_key_of_the_account_and_a_throttled_write_writes_nothing(settings):
    settings.API_RATE_LIMITS = {"key": "", "account": "4/minute"}
    user, other = UserFactory(), UserFactory()
    clients = [key_client(user)[0] for _ in range(2)]
    statuses = [clients[i % 2].get("/api/v1/me/").status_code for i in range(4)]
    assert statuses == [200] * 4
    refused = clients[1].post("/api/v1/ssh-keys/", {"public_key": "ssh-ed25519 AAAA x"}, format="json")
    assert refused.status_code == 429 and "this account" in refused.json()["detail"]
    assert not SshKey.objects.filter(user=user).exists()
    assert key_client(other)[0].get("/api/v1/me/").status_code == 200  # another account is not held back


def test_concurrent_requests_never_pass_the_limit_together(settings):
    settings.API_RATE_LIMITS = {"key": "20/minute", "account": ""}
    request = SimpleNamespace(auth=SimpleNamespace(pk=f"t-{uuid.uuid4().hex}"), user=None)
    allowed = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)
    throttle = ApiKeyRateThrottle()
    throttle.identity = lambda _request: request.auth.pk  # a key of its own, without the ORM

    def hammer():
        barrier.wait()
        for _ in range(5):
            try:
                ok = throttle.allow_request(request, None)
            except exceptions.Throttled:
                ok = False
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 40 and sum(allowed) == 20


def test_rates_parse_and_an_empty_limit_is_off(settings):
    assert parse_rate("600/minute") == (600, 60) and parse_rate("5/second") == (5, 1)
    settings.API_RATE_LIMITS = {"key": "", "account": ""}
    client, _ = key_client(UserFactory())
    assert all(client.get("/api/v1/me/").status_code == 200 for _ in range(5))


def test_requests_without_credentials_are_limited_per_address(settings, api_client):
    settings.API_RATE_LIMITS = {"key": "", "account": "", "anonymous": "2/minute"}
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    statuses = [api_client.get("/api/v1/regions/", REMOTE_ADDR=address).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    other = "203.0.113.77" if address != "203.0.113.77" else "203.0.113.78"
    assert api_client.get("/api/v1/regions/", REMOTE_ADDR=other).status_code == 200
    client, _ = key_client(UserFactory())  # a key is not held back by the address's limit
    assert client.get("/api/v1/regions/", REMOTE_ADDR=address).status_code == 200


def test_an_address_that_keeps_presenting_refused_credentials_gets_429(settings, api_client):
    settings.API_RATE_LIMITS = {"refused": "3/minute"}
    address = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    api_client.credentials(HTTP_AUTHORIZATION="Bearer cmk_guess_guess")
    statuses = [api_client.get("/api/v1/me/", REMOTE_ADDR=address).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    api_client.credentials(HTTP_AUTHORIZATION="Bearer hcr_guess")
    assert api_client.post("/api/v1/agent/heartbeat/", {}, format="json", REMOTE_ADDR=address).status_code == 429
    good, _ = key_client(UserFactory())  # a valid key from that address is not refused
    assert good.get("/api/v1/me/", REMOTE_ADDR=address).status_code == 200


def test_a_host_agent_is_limited_per_credential(settings, supplier_org):

    settings.API_RATE_LIMITS = {"host": "2/minute"}
    host = HostFactory(organization=supplier_org, name=f"l4-{uuid.uuid4().hex[:6]}", **l4_host_data())
    _, credential = agent_register(token=host_registration_token_issue(host=host, user=None))
    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}")
    statuses = [agent.post("/api/v1/agent/heartbeat/", {}, format="json").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
