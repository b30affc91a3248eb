"""Every API operation has an example request and response in the schema, recorded from real calls.

The scenario below walks the API as its users do (a visitor, a buyer, a supplier, its host's agent,
staff) and records, per operation, the request body and the answer. The schema serves the examples
stored in `marketplace/api/examples.json` (`marketplace.api.schema.add_examples`). This test fails
when an operation has no example, or the stored file misses one the scenario records: run it with
RECORD_API_EXAMPLES=1 to write the file again.
"""

import json
import os
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from accounts.scopes import ALL_SCOPES, DEFAULT_SCOPES
from accounts.services import api_key_issue, notify
from accounts.teams import team_invite
from marketplace.api.schema import EXAMPLES_FILE
from orders.supply import host_update
from suppliers.organizations import organization_invite
from tests.billing.test_stripe import stripe_api  # noqa: F401 - a fixture: a local fake of Stripe's API
from tests.factories import HostFactory, UserFactory, l4_host_data
from tests.suppliers.test_api import HOST_BODY

pytestmark = pytest.mark.django_db

INVENTORY = {
    "source": "nvidia-smi",
    "accelerators": [{"index": i, "name": "NVIDIA L4", "uuid": f"GPU-{i}", "memory_mib": 23034} for i in range(4)],
    "driver_version": "550.90.07",
    "cpu_model": "AMD EPYC 7R13",
    "vcpus": 32,
    "ram_gb": 186,
    "disk_gb": 3900,
}


def operations() -> list[tuple[str, re.Pattern, str]]:
    """(method, path pattern, operationId) of every operation in the schema."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = []
    for path, item in schema["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", r"[^/]+", path) + r"(\?.*)?$")
        for method, operation in item.items():
            found.append((method.upper(), pattern, operation["operationId"]))
    return found


class Recorder:
    """API clients whose calls are recorded per operation (a 2xx answer replaces an earlier error)."""

    def __init__(self):
        self.operations = operations()
        self.examples: dict[str, dict] = {}

    def client(self, key: str | None = None) -> APIClient:
        client = APIClient()
        if key:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        recorder = self
        for method in ("get", "post", "put", "patch", "delete"):
            setattr(client, method, recorder._recording(getattr(client, method), method.upper()))
        return client

    def _recording(self, original, method: str):
        def call(path, data=None, **kwargs):
            response = original(path, data, format="json", **kwargs) if method != "GET" else original(path, data)
            assert response.status_code < 300, (
                f"{method} {path} {data}: {response.status_code} {response.content[:300]}"
            )
            self.record(method, path, data, response)
            return response

        return call

    def record(self, method, path, body, response):
        for op_method, pattern, operation_id in self.operations:
            if op_method == method and pattern.match(path):
                known = self.examples.get(operation_id)
                if known and known["status"] < 300 <= response.status_code:
                    return
                self.examples[operation_id] = {
                    "request": redacted(body) if method in ("POST", "PUT", "PATCH") else None,
                    "status": response.status_code,
                    "response": redacted(response.json()) if response.content else None,
                }
                return


SHOWN_ONCE = {"key", "credential", "secret", "token"}


def redacted(value):
    """Secrets the API shows once stay out of the published examples."""
    if isinstance(value, dict):
        return {
            k: f"<the {k}, shown once>" if k in SHOWN_ONCE and isinstance(v, str) else redacted(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def ssh_public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " me@laptop"


def scenario(recorder: Recorder, supplier_org, supplier) -> None:
    visitor = recorder.client()
    for path in ("accelerator-models/", "accelerator-models/l4-24g/", "instance-types/", "instance-types/l4-24g.1x/"):
        visitor.get(f"/api/v1/{path}")
    visitor.get("/api/v1/regions/")
    visitor.get("/api/v1/regions/us-east/")

    host = HostFactory(
        organization=supplier_org,
        name="l4-a",
        **l4_host_data(public_address="203.0.113.5", port_range_start=40000, port_range_end=40999),
    )
    offers = visitor.get("/api/v1/offers/?accelerator_model=l4-24g&ordering=price_per_hour&page_size=2").json()
    visitor.get(f"/api/v1/offers/{offers['results'][0]['id']}/")

    buyer = UserFactory(email="buyer@example.com", credit=Decimal("500"))
    issued = visitor.post(
        "/api/v1/auth/keys/",
        {"email": buyer.email, "password": "demo12345", "name": "laptop", "scopes": list(DEFAULT_SCOPES)},
    ).json()
    api = recorder.client(issued["key"])
    api.get("/api/v1/me/")
    api.patch("/api/v1/me/", {"spend_limit_per_hour": "25.00"})
    api.get("/api/v1/api-keys/")
    spare = api_key_issue(user=buyer, name="spare", scopes=["read"]).api_key
    api.get(f"/api/v1/api-keys/{spare.pk}/")
    api.delete(f"/api/v1/api-keys/{spare.pk}/")

    key = api.post("/api/v1/ssh-keys/", {"public_key": ssh_public_key(), "name": "laptop"}).json()
    api.get("/api/v1/ssh-keys/")
    api.get(f"/api/v1/ssh-keys/{key['id']}/")
    template = api.post(
        "/api/v1/templates/",
        {"name": "my-notebook", "image": "jupyter/base-notebook:2024-10-07", "ports": [8888], "disk_gb": 100},
    ).json()
    api.get("/api/v1/templates/")
    api.get(f"/api/v1/templates/{template['id']}/")
    alert = api.post(
        "/api/v1/availability-alerts/", {"instance_type": "h100-80g.1x", "max_price_per_hour": "3.00"}
    ).json()
    api.get("/api/v1/availability-alerts/")
    api.get(f"/api/v1/availability-alerts/{alert['id']}/")
    api.delete(f"/api/v1/availability-alerts/{alert['id']}/")

    api.post("/api/v1/quotes/", {"instance_type": "l4-24g.1x", "count": 2})
    order = api.post(
        "/api/v1/orders/",
        {"instance_type": "l4-24g.1x", "count": 1, "image": "pytorch/pytorch:2.5.1", "ports": [22, 8888]},
        HTTP_IDEMPOTENCY_KEY="example-1",
    ).json()
    api.get("/api/v1/orders/")
    api.get(f"/api/v1/orders/{order['id']}/")
    instance_id = order["instances"][0]["id"]
    visitor.get("/api/v1/market/depth/?instance_type=l4-24g.1x&region=us-east")

    supplier_api = recorder.client(api_key_issue(user=supplier, name="ops", scopes=DEFAULT_SCOPES).key)
    token = supplier_api.post(f"/api/v1/hosts/{host.pk}/registration-token/").json()["token"]
    credential = visitor.post("/api/v1/agent/register/", {"token": token}).json()["credential"]
    agent = recorder.client(credential)
    agent.post("/api/v1/agent/inventory/", INVENTORY)
    agent.post("/api/v1/agent/selftest/", {"checks": [{"name": "nvidia-smi", "ok": True, "detail": "4 x L4"}]})
    beat = agent.post("/api/v1/agent/heartbeat/", {"instances": []}).json()
    for command in beat["commands"]:
        agent.post(f"/api/v1/agent/commands/{command['id']}/ack/", {"ok": True})
    agent.post(f"/api/v1/agent/instances/{instance_id}/state/", {"status": "running"})
    agent.post(f"/api/v1/agent/instances/{instance_id}/logs/", {"text": "Jupyter Server 2.14 is running at :8888\n"})

    api.get("/api/v1/instances/")
    api.get(f"/api/v1/instances/{instance_id}/")
    api.get(f"/api/v1/instances/{instance_id}/logs/?tail=20")
    api.get(f"/api/v1/instances/{instance_id}/utilization/")
    host_update(host=host, price_per_unit_hour=Decimal("0.35"))
    api.post(f"/api/v1/instances/{instance_id}/accept-price/")
    api.post(f"/api/v1/instances/{instance_id}/stop/")
    agent.post(f"/api/v1/agent/instances/{instance_id}/state/", {"status": "stopped"})
    api.post(f"/api/v1/instances/{instance_id}/start/")

    report = api.post(
        "/api/v1/problem-reports/",
        {"instance": instance_id, "category": "performance", "description": "GPU 0 throttles at 60% load."},
    ).json()
    supplier_api.post(f"/api/v1/problem-reports/{report['id']}/answer/", {"answer": "A fan failed; replaced."})
    staff = UserFactory(email="staff@example.com", is_staff=True)
    staff_api = recorder.client(api_key_issue(user=staff, name="staff", scopes=ALL_SCOPES).key)
    staff_api.post(
        f"/api/v1/problem-reports/{report['id']}/resolve/", {"reason": "Throttling confirmed; the fan was replaced."}
    )
    api.get("/api/v1/problem-reports/")
    api.get(f"/api/v1/problem-reports/{report['id']}/")
    api.post(f"/api/v1/instances/{instance_id}/terminate/")

    api.post("/api/v1/billing/top-ups/", {"amount": "50.00"})
    top_ups = api.get("/api/v1/billing/top-ups/").json()["results"]
    api.get(f"/api/v1/billing/top-ups/{top_ups[0]['id']}/")
    api.get("/api/v1/billing/balance/")
    api.get("/api/v1/billing/usage/")
    api.get("/api/v1/billing/ledger/")
    api.get("/api/v1/billing/statements/")
    api.get(f"/api/v1/billing/statements/{timezone.now():%Y-%m}/")

    supplier_api.get("/api/v1/organization/")
    supplier_api.patch("/api/v1/organization/", {"website": "https://alpha.example.com"})
    newcomer = UserFactory(email="newcomer@example.com")
    newcomer_api = recorder.client(api_key_issue(user=newcomer, name="onboarding", scopes=DEFAULT_SCOPES).key)
    newcomer_api.post(
        "/api/v1/organization/",
        {
            "name": "Gamma Compute",
            "contact_name": "Ada Gamma",
            "contact_email": "ops@gamma.example.com",
            "payout_country": "DE",
            "country": "DE",
        },
        HTTP_IDEMPOTENCY_KEY="org-1",
    )
    supplier_api.get("/api/v1/organization/members/")
    ops = supplier_api.post("/api/v1/organization/invitations/", {"email": "ops@alpha.example.com", "role": "member"})
    supplier_api.get("/api/v1/organization/invitations/")
    supplier_api.delete(f"/api/v1/organization/invitations/{ops.json()['id']}/")
    engineer = UserFactory(email="engineer@alpha.example.com")
    joining = organization_invite(by=supplier, email=engineer.email, role="read_only")  # the emailed link
    engineer_api = recorder.client(api_key_issue(user=engineer, name="laptop", scopes=DEFAULT_SCOPES).key)
    engineer_api.post("/api/v1/invitations/accept/", {"token": joining.token})
    supplier_api.patch(f"/api/v1/organization/members/{engineer.pk}/", {"role": "member"})
    supplier_api.delete(f"/api/v1/organization/members/{engineer.pk}/")
    supplier_api.get("/api/v1/hosts/")
    created = supplier_api.post("/api/v1/hosts/", HOST_BODY).json()
    supplier_api.get(f"/api/v1/hosts/{created['id']}/")
    supplier_api.put(f"/api/v1/hosts/{created['id']}/", {**HOST_BODY, "price_per_unit_hour": "2.40"})
    supplier_api.patch(f"/api/v1/hosts/{created['id']}/", {"price_per_unit_hour": "2.35"})
    start = timezone.now() + timedelta(days=2)
    supplier_api.post(
        f"/api/v1/hosts/{host.pk}/maintenance/",
        {"starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=2)).isoformat(), "reason": "Firmware"},
    )
    supplier_api.get(f"/api/v1/hosts/{host.pk}/maintenance/")
    supplier_api.post(f"/api/v1/hosts/{host.pk}/delist/")
    supplier_api.post(f"/api/v1/hosts/{host.pk}/relist/")
    supplier_api.delete(f"/api/v1/hosts/{created['id']}/")
    supplier_api.get("/api/v1/billing/earnings/")
    supplier_api.get("/api/v1/billing/payouts/")

    hook = api.post(
        "/api/v1/webhook-endpoints/",
        {"url": "http://127.0.0.1:9/market-events", "events": ["instance.status_changed", "notification.balance_low"]},
    ).json()
    notify(user=buyer, kind="balance_low", title="Your balance is low", body="About 3 hours of runway left.")
    api.get("/api/v1/webhook-endpoints/")
    api.get(f"/api/v1/webhook-endpoints/{hook['id']}/")
    api.patch(f"/api/v1/webhook-endpoints/{hook['id']}/", {"events": ["*"]})
    deliveries = api.get(f"/api/v1/webhook-endpoints/{hook['id']}/deliveries/").json()["results"]
    api.get(f"/api/v1/webhook-deliveries/{deliveries[0]['id']}/")
    api.post(f"/api/v1/webhook-deliveries/{deliveries[0]['id']}/replay/")
    api.post(f"/api/v1/webhook-endpoints/{hook['id']}/rotate-secret/")
    api.delete(f"/api/v1/webhook-endpoints/{hook['id']}/")
    api.delete(f"/api/v1/templates/{template['id']}/")
    api.delete(f"/api/v1/ssh-keys/{key['id']}/")

    team = api.post("/api/v1/teams/", {"name": "Vision research"}, HTTP_IDEMPOTENCY_KEY="team-1").json()
    api.get("/api/v1/teams/")
    api.patch(f"/api/v1/teams/{team['id']}/", {"name": "Vision lab"})
    later = api.post(f"/api/v1/teams/{team['id']}/invitations/", {"email": "later@example.com", "role": "read_only"})
    api.delete(f"/api/v1/teams/{team['id']}/invitations/{later.json()['id']}/")
    colleague = UserFactory(email="colleague@example.com")
    invited = team_invite(team_id=team["id"], by=buyer, email=colleague.email, role="member")  # the emailed link
    colleague_api = recorder.client(api_key_issue(user=colleague, name="laptop", scopes=DEFAULT_SCOPES).key)
    colleague_api.post("/api/v1/invitations/accept/", {"token": invited.token})
    api.get(f"/api/v1/teams/{team['id']}/")
    api.patch(f"/api/v1/teams/{team['id']}/members/{colleague.pk}/", {"role": "billing"})
    api.delete(f"/api/v1/teams/{team['id']}/members/{colleague.pk}/")


def test_every_operation_has_a_recorded_example(stripe_api, supplier_org, supplier):  # noqa: F811
    recorder = Recorder()
    scenario(recorder, supplier_org, supplier)
    all_operations = {operation_id for _, _, operation_id in recorder.operations}
    failed = {op: example["status"] for op, example in recorder.examples.items() if example["status"] >= 300}
    assert not failed, f"the scenario's calls were refused: {failed}"
    assert set(recorder.examples) == all_operations, f"no example for {sorted(all_operations - set(recorder.examples))}"
    if os.environ.get("RECORD_API_EXAMPLES"):
        EXAMPLES_FILE.write_text(json.dumps(dict(sorted(recorder.examples.items())), indent=1, default=str) + "\n")
    stored = json.loads(EXAMPLES_FILE.read_text())
    assert set(stored) == all_operations, "marketplace/api/examples.json is stale: run with RECORD_API_EXAMPLES=1"
    assert {op: e["status"] for op, e in stored.items()} == {op: e["status"] for op, e in recorder.examples.items()}
