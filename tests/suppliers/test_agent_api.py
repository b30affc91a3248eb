"""/api/v1/agent/...: host-credential auth, scoping, inventory checks, heartbeats, commands."""

import json
from pathlib import Path

import pytest
from django.utils import timezone
from freezegun import freeze_time
from rest_framework.test import APIClient

from marketplace.models import Offer
from orders.agent import hosts_mark_offline
from orders.models import HostCommand, InstanceEvent
from suppliers.agent_services import agent_register, host_credential_revoke, host_registration_token_issue
from suppliers.models import Host, HostCredential
from tests.conftest import bearer_client
from tests.factories import HostFactory, l4_host_data
from tests.orders.conftest import order

pytestmark = pytest.mark.django_db

H100_INVENTORY = json.loads(
    (Path(__file__).parents[1] / "agent" / "fixtures" / "h100x1-inventory-nvml.json").read_text()
)


def l4_inventory(count=4, **overrides):
    accelerators = [{"index": i, "name": "NVIDIA L4", "uuid": f"GPU-{i}", "memory_mib": 23034} for i in range(count)]
    return {
        "source": "nvidia-smi",
        "accelerators": accelerators,
        "driver_version": "550.90.07",
        "cpu_model": "AMD EPYC 7R13",
        "vcpus": 32,
        "ram_gb": 186,
        "disk_gb": 3900,
        **overrides,
    }


def agent_client(host) -> APIClient:
    _, credential = agent_register(token=host_registration_token_issue(host=host, user=None))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}")
    return client


@pytest.fixture
def host(supplier_org):
    return HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())


@pytest.fixture
def agent(host):
    return agent_client(host)


def test_registration_token_is_one_time(api_client, supplier_client, host):
    response = supplier_client.post(f"/api/v1/hosts/{host.pk}/registration-token/")
    assert response.status_code == 201
    token = response.json()["token"]
    registered = api_client.post("/api/v1/agent/register/", {"token": token}, format="json")
    assert registered.status_code == 201
    assert registered.json()["host_id"] == host.pk
    credential = registered.json()["credential"]
    assert HostCredential.objects.get(host=host).secret_hash != credential  # only the hash is kept
    again = api_client.post("/api/v1/agent/register/", {"token": token}, format="json")
    assert again.status_code == 401 and again.json()["code"] == "invalid_registration_token"


def test_another_supplier_cannot_make_tokens_for_my_host(other_supplier_client, host):
    assert other_supplier_client.post(f"/api/v1/hosts/{host.pk}/registration-token/").status_code == 404


def test_matching_inventory_keeps_offers(agent, host):
    response = agent.post("/api/v1/agent/inventory/", l4_inventory(), format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"matches_declaration": True, "differences": []}
    assert Offer.objects.filter(host=host).exists()


def test_contradicting_inventory_delists_until_resolved(agent, host, supplier_client):
    response = agent.post("/api/v1/agent/inventory/", l4_inventory(count=2), format="json")
    assert response.json()["differences"] == [{"field": "accelerator_count", "declared": 4, "reported": 2}]
    host.refresh_from_db()
    assert host.inventory_mismatch and not Offer.objects.listed().filter(host=host).exists()
    # The supplier sees the exact difference...
    seen = supplier_client.get(f"/api/v1/hosts/{host.pk}/").json()["inventory_mismatch"]
    assert seen == [{"field": "accelerator_count", "declared": 4, "reported": 2}]
    # ... and fixes the declaration: offers come back.
    fixed = supplier_client.patch(f"/api/v1/hosts/{host.pk}/", {"accelerator_count": 2}, format="json")
    assert fixed.status_code == 200 and fixed.json()["inventory_mismatch"] is None
    assert Offer.objects.filter(host=host).exists()


def test_real_h100_vm_flags_an_over_declared_host(supplier_org):
    # Captured on a real 1 x H100 VM (16 vCPU, 125 GB): declaring a full h100-80g.1x share is too much.
    h100 = HostFactory(organization=supplier_org, name="h100", accelerator_count=1, vcpus=24, ram_gb=256, disk_gb=2000)
    result = agent_client(h100).post("/api/v1/agent/inventory/", H100_INVENTORY, format="json").json()
    assert result["differences"] == [
        {"field": "vcpus", "declared": 24, "reported": 16},
        {"field": "ram_gb", "declared": 256, "reported": 125},
        {"field": "disk_gb", "declared": 2000, "reported": 251},
    ]


def test_heartbeat_returns_commands_and_acks_are_idempotent(agent, host, buyer):
    instance = order(buyer).instances.get()
    beat = agent.post("/api/v1/agent/heartbeat/", {"instances": []}, format="json")
    assert beat.status_code == 200
    (command,) = beat.json()["commands"]
    assert command["kind"] == "start" and command["instance_id"] == instance.pk
    assert command["payload"]["image"] == "pytorch/pytorch:2.5.1"
    for _ in range(2):
        ack = agent.post(f"/api/v1/agent/commands/{command['id']}/ack/", {"ok": True}, format="json")
        assert ack.status_code == 200 and ack.json()["status"] == "acknowledged"
    assert agent.post("/api/v1/agent/heartbeat/", {}, format="json").json()["commands"] == []
    state = agent.post(f"/api/v1/agent/instances/{instance.pk}/state/", {"status": "running"}, format="json")
    assert state.json() == {"id": instance.pk, "status": "running"}
    host.refresh_from_db()
    assert host.agent_status == "online" and host.last_heartbeat_at is not None


def test_host_a_credential_cannot_touch_host_b(supplier_org, buyer, host):
    other = HostFactory(organization=supplier_org, name="l4-b", **l4_host_data(price_per_unit_hour="0.50"))
    order(buyer, count=4)
    theirs = order(buyer).instances.get()
    assert theirs.host == other
    agent_a = agent_client(host)
    response = agent_a.post(f"/api/v1/agent/instances/{theirs.pk}/state/", {"status": "running"}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    their_command = HostCommand.objects.get(instance=theirs)
    assert (
        agent_a.post(f"/api/v1/agent/commands/{their_command.pk}/ack/", {"ok": True}, format="json").status_code == 404
    )
    assert all(
        c["instance_id"] != theirs.pk
        for c in agent_a.post("/api/v1/agent/heartbeat/", {}, format="json").json()["commands"]
    )
    theirs.refresh_from_db()
    their_command.refresh_from_db()
    assert theirs.status == "provisioning" and their_command.status == "pending"


def test_revoked_or_wrong_credentials_are_401(host, agent, buyer):
    host_credential_revoke(credential=HostCredential.objects.get(host=host))
    response = agent.post("/api/v1/agent/heartbeat/", {}, format="json")
    assert response.status_code == 401 and response.json()["code"] == "authentication_failed"
    # A user's API key is not a host credential, and a host credential is not a user's key.
    user_client = bearer_client(buyer)
    assert user_client.post("/api/v1/agent/heartbeat/", {}, format="json").status_code == 401
    fresh = agent_client(host)
    assert fresh.get("/api/v1/instances/").status_code == 401
    assert APIClient().post("/api/v1/agent/heartbeat/", {}, format="json").status_code == 401


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("inventory/", {"source": "magic", "accelerators": [], "vcpus": 1, "ram_gb": 1, "disk_gb": 1}),
        ("inventory/", {"source": "file", "accelerators": "eight", "vcpus": 1, "ram_gb": 1, "disk_gb": 1}),
        ("inventory/", {"source": "file", "accelerators": [], "vcpus": -1, "ram_gb": 1, "disk_gb": 1}),
        ("heartbeat/", {"instances": [{"id": "x", "status": "running"}]}),
        ("heartbeat/", {"instances": "all"}),
        ("selftest/", {"checks": [{"ok": True}]}),
        ("instances/1/state/", {"status": "exploded"}),
        ("commands/1/ack/", {}),
    ],
)
def test_malformed_payloads_are_400(agent, path, body):
    response = agent.post(f"/api/v1/agent/{path}", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"


def test_not_json_and_oversized_payloads_are_400(agent):
    garbage = agent.generic("POST", "/api/v1/agent/heartbeat/", "{nope", content_type="application/json")
    assert garbage.status_code == 400 and garbage.json()["code"] == "parse_error"
    huge = {"instances": [{"id": 1, "status": "running", "usage": {f"k{i}": 1.0 for i in range(40000)}}]}
    response = agent.post("/api/v1/agent/heartbeat/", huge, format="json")
    assert response.status_code == 400 and response.json()["code"] == "payload_too_large"


def test_selftest_is_recorded(agent, host):
    checks = json.loads((Path(__file__).parents[1] / "agent" / "fixtures" / "h100x1-selftest.json").read_text())[
        "checks"
    ]
    assert agent.post("/api/v1/agent/selftest/", {"checks": checks}, format="json").json() == {"passed": True}
    host.refresh_from_db()
    assert host.selftest_passed is True and host.selftest["checks"][0]["name"] == "driver"


def test_silent_hosts_go_offline_and_recover(agent, host, buyer):
    instance = order(buyer).instances.get()
    agent.post("/api/v1/agent/heartbeat/", {}, format="json")
    with freeze_time(timezone.now() + timezone.timedelta(minutes=5)):
        assert hosts_mark_offline().done == 1
    host.refresh_from_db()
    assert host.agent_status == Host.AgentStatus.OFFLINE
    assert not Offer.objects.listed().filter(host=host).exists()
    lost = InstanceEvent.objects.get(instance=instance, kind="host_lost")
    assert lost.from_status == lost.to_status == "provisioning"

    agent.post("/api/v1/agent/heartbeat/", {}, format="json")
    host.refresh_from_db()
    assert host.agent_status == Host.AgentStatus.ONLINE
    assert Offer.objects.filter(host=host).exists()
    assert InstanceEvent.objects.filter(instance=instance, kind="host_recovered").exists()
