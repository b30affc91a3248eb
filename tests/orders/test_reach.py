"""Reaching an instance, platform side: host ports from the host's range, connection details,
environment (secrets write-only, encrypted at rest), disk size and its price, launch templates,
and output tails visible only to the renter and staff."""

import hashlib
import json
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from marketplace.errors import Conflict, InvalidInput
from marketplace.models import IdempotencyRecord
from marketplace.secrets import secret_decrypt
from orders.agent import command_for_agent
from orders.launch import launch_template_create
from orders.lifecycle import instance_terminate
from orders.logs import agent_ship_log
from orders.models import HostCommand, Instance, InstancePort, LaunchTemplate
from orders.ports import NoFreePorts
from suppliers.hosts import host_update
from tests.conftest import bearer_client
from tests.factories import HostFactory, UserFactory, l4_host_data

from .conftest import order

INBOUND = {"public_address": "203.0.113.5", "port_range_start": 40000, "port_range_end": 40003}


@pytest.fixture
def inbound_host(supplier_org):
    """4 x L4 behind 203.0.113.5, forwarding host ports 40000-40003 (four ports in all)."""
    return HostFactory(organization=supplier_org, name="l4-inbound", **l4_host_data(**INBOUND))


@pytest.fixture
def buyer_client(buyer):
    return bearer_client(buyer)


def start_command(instance: Instance) -> HostCommand:
    return HostCommand.objects.get(instance=instance, kind=HostCommand.Kind.START)


# -- host declaration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"public_address": "203.0.113.5", "port_range_start": 40000}, "port_range_end"),
        ({"public_address": "203.0.113.5", "port_range_start": 40010, "port_range_end": 40000}, "port_range_end"),
        ({"public_address": "203.0.113.5", "port_range_start": 22, "port_range_end": 30}, "port_range_start"),
        ({"public_address": "203.0.113.5", "port_range_start": 10000, "port_range_end": 40000}, "port_range_end"),
        ({"port_range_start": 40000, "port_range_end": 40010}, "public_address"),
        ({"public_address": "not an address", "port_range_start": 40000, "port_range_end": 40010}, "public_address"),
        ({"public_address": "-bad-.example.com"}, "public_address"),
    ],
)
def test_a_bad_port_declaration_names_its_field(supplier_org, fields, field):
    with pytest.raises(InvalidInput) as refused:
        HostFactory(organization=supplier_org, **l4_host_data(**fields))
    assert field in refused.value.fields


def test_a_dns_name_or_ipv6_address_is_accepted(supplier_org):
    host = HostFactory(organization=supplier_org, **l4_host_data(**{**INBOUND, "public_address": "gpu1.example.com"}))
    assert host.accepts_inbound
    host = HostFactory(organization=supplier_org, **l4_host_data(**{**INBOUND, "public_address": "2001:db8::5"}))
    assert host.accepts_inbound


# -- ports ------------------------------------------------------------------------------------


def test_ports_are_assigned_from_the_range_and_shown_ready_to_use(buyer, buyer_client, inbound_host):
    placed = order(buyer, ports=[8888, 22])
    instance = placed.instances.get()
    assert sorted(instance.ports.values_list("container_port", "host_port")) == [(22, 40000), (8888, 40001)]
    assert start_command(instance).payload["ports"] == {"22": 40000, "8888": 40001}

    body = buyer_client.get(f"/api/v1/instances/{instance.pk}/").json()
    assert body["connections"] == [
        {
            "container_port": 22,
            "host_port": 40000,
            "address": "203.0.113.5",
            "kind": "ssh",
            "command": "ssh -p 40000 root@203.0.113.5",
        },
        {
            "container_port": 8888,
            "host_port": 40001,
            "address": "203.0.113.5",
            "kind": "http",
            "command": "http://203.0.113.5:40001/",
        },
    ]
    assert buyer_client.get(f"/api/v1/orders/{placed.pk}/").json()["ports"] == [22, 8888]


def test_ports_are_exhausted_then_409_no_free_ports_and_terminate_frees_them(buyer, inbound_host):
    first = order(buyer, ports=[22, 8888]).instances.get()
    order(buyer, ports=[22, 8888])  # 4 of 4 host ports now held; the GPUs still have room
    with pytest.raises(NoFreePorts) as refused:
        order(buyer, ports=[22])
    assert refused.value.code == "no_free_ports" and refused.value.status_code == 409
    assert Instance.objects.count() == 2  # nothing half-written
    order(buyer)  # an order without ports still fits

    instance_terminate(instance=first, actor_user=buyer)
    assert not InstancePort.objects.active().filter(instance=first).exists()
    again = order(buyer, ports=[22]).instances.get()
    assert again.ports.get().host_port == 40000  # the lowest freed port


def test_the_api_answers_409_no_free_ports(buyer_client, inbound_host):
    for _ in range(2):
        response = buyer_client.post(
            "/api/v1/orders/", {"instance_type": "l4-24g.1x", "image": "ubuntu:24.04", "ports": [22, 80]}, format="json"
        )
        assert response.status_code == 201, response.content
    response = buyer_client.post(
        "/api/v1/orders/", {"instance_type": "l4-24g.1x", "image": "ubuntu:24.04", "ports": [22]}, format="json"
    )
    assert response.status_code == 409 and response.json()["code"] == "no_free_ports"
    quote = buyer_client.post("/api/v1/quotes/", {"instance_type": "l4-24g.1x", "ports": [22]}, format="json")
    assert quote.status_code == 409 and quote.json()["code"] == "no_free_ports"


def test_an_order_with_ports_skips_hosts_without_inbound_ports(buyer, l4_host, inbound_host):
    assert not l4_host.accepts_inbound
    for _ in range(3):
        assert order(buyer, ports=[22]).instances.get().host_id == inbound_host.pk
    assert order(buyer).instances.get().host_id in (l4_host.pk, inbound_host.pk)


@pytest.mark.parametrize("ports", [[0], [70000], [22, 22], list(range(1, 18)), ["22"], [True]])
def test_bad_ports_are_400(buyer_client, inbound_host, ports):
    response = buyer_client.post(
        "/api/v1/orders/", {"instance_type": "l4-24g.1x", "image": "ubuntu:24.04", "ports": ports}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "ports" in response.json()["fields"]


def test_one_host_port_cannot_have_two_holders(buyer, inbound_host):
    instance = order(buyer, ports=[22]).instances.get()
    other = order(buyer).instances.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        InstancePort.objects.create(instance=other, host=inbound_host, container_port=22, host_port=40000)
    assert instance.ports.get().host_port == 40000


def test_the_range_cannot_shrink_under_held_ports(supplier, buyer, inbound_host):
    order(buyer, ports=[22, 8888])  # holds 40000 and 40001
    with pytest.raises(Conflict) as refused:
        host_update(host=inbound_host, port_range_start=40001, port_range_end=40003)
    assert refused.value.extra["ports_in_use"] == [40000]
    host_update(host=inbound_host, port_range_start=40000, port_range_end=40100)  # growing is fine


# -- environment ------------------------------------------------------------------------------


def test_secret_values_are_write_only_and_encrypted_at_rest(buyer, buyer_client, inbound_host):
    environment = [
        {"name": "HF_TOKEN", "value": "hf_s3cr3t_value", "secret": True},
        {"name": "MODEL", "value": "llama-3-8b"},
    ]
    response = buyer_client.post(
        "/api/v1/orders/",
        {"instance_type": "l4-24g.1x", "image": "vllm/vllm-openai:v0.6", "environment": environment},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert "hf_s3cr3t_value" not in response.content.decode()
    instance_id = response.json()["instances"][0]["id"]
    shown = buyer_client.get(f"/api/v1/instances/{instance_id}/").json()["environment"]
    assert shown == [{"name": "HF_TOKEN", "secret": True}, {"name": "MODEL", "value": "llama-3-8b", "secret": False}]

    with connection.cursor() as cursor:  # at rest: neither the order row nor the command row has it
        cursor.execute("SELECT environment FROM orders_order")
        orders_at_rest = json.dumps([row[0] for row in cursor.fetchall()])
        cursor.execute("SELECT payload FROM orders_hostcommand")
        commands_at_rest = json.dumps([row[0] for row in cursor.fetchall()])
    assert "hf_s3cr3t_value" not in orders_at_rest and "hf_s3cr3t_value" not in commands_at_rest
    stored = Instance.objects.get(pk=instance_id).order.environment[0]
    assert stored["secret"] and secret_decrypt(stored["ciphertext"]) == "hf_s3cr3t_value"

    handed_over = command_for_agent(start_command(Instance.objects.get(pk=instance_id)))  # what the agent gets
    assert handed_over["payload"]["environment"] == {"HF_TOKEN": "hf_s3cr3t_value", "MODEL": "llama-3-8b"}


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "1BAD", "value": "x"},
        {"name": "WITH SPACE", "value": "x"},
        {"name": "CUDA_VISIBLE_DEVICES", "value": "0,1,2,3"},
        {"name": "PORT_22", "value": "1"},
        {"name": "DOCKER_HOST", "value": "tcp://evil:2375"},
        {"name": "LD_PRELOAD", "value": "/tmp/x.so"},
        {"name": "OK", "value": "bell\x07"},
        {"name": "OK", "value": "x", "ciphertext": "forged"},
    ],
)
def test_bad_environment_is_400_naming_the_variable(buyer_client, inbound_host, entry):
    response = buyer_client.post(
        "/api/v1/orders/",
        {"instance_type": "l4-24g.1x", "image": "ubuntu:24.04", "environment": [entry]},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert any(name.startswith("environment") for name in response.json()["fields"])
    assert not Instance.objects.exists()


# -- disk -------------------------------------------------------------------------------------


def test_a_bigger_disk_is_priced_at_the_host_storage_rate_and_held(buyer, buyer_client, inbound_host):
    quote = buyer_client.post("/api/v1/quotes/", {"instance_type": "l4-24g.1x", "disk_gb": 1230}, format="json").json()
    # 0.40/h compute + 730 GB extra x $0.10 per GB-month / 730 h = $0.10/h
    assert quote["lines"][0]["disk_gb"] == 1230
    assert quote["lines"][0]["price_per_hour"] == "0.500000"
    assert Decimal(quote["stopped_disk_per_hour"]) == Decimal("0.168493")  # 1230 GB x 0.10 / 730

    instance = order(buyer, disk_gb=1230).instances.get()
    assert instance.disk_gb == 1230 and instance.price_per_hour == Decimal("0.500000")
    assert instance.allocations.get().disk_gb == 1230
    assert start_command(instance).payload["disk_gb"] == 1230


def test_a_disk_below_the_default_or_beyond_the_host_is_refused(buyer, buyer_client, inbound_host):
    response = buyer_client.post(
        "/api/v1/orders/", {"instance_type": "l4-24g.1x", "image": "ubuntu:24.04", "disk_gb": 100}, format="json"
    )
    assert response.status_code == 400 and "disk_gb" in response.json()["fields"]
    response = buyer_client.post(
        "/api/v1/orders/", {"instance_type": "l4-24g.1x", "image": "ubuntu:24.04", "disk_gb": 5000}, format="json"
    )
    assert response.status_code == 409 and response.json()["code"] == "insufficient_capacity"  # the host has 4000


# -- templates --------------------------------------------------------------------------------


def test_an_order_by_template_takes_its_image_ports_environment_and_disk(buyer, inbound_host):
    LaunchTemplate.objects.create(
        name="jupyter",
        title="PyTorch + JupyterLab",
        image="pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
        command="jupyter lab --ip 0.0.0.0 --port 8888",
        ports=[22, 8888],
        environment=[{"name": "JUPYTER_TOKEN_FILE", "value": "/root/.jupyter-token"}],
        disk_gb=600,
    )
    placed = order(buyer, image="", template="jupyter", environment=[{"name": "EXTRA", "value": "1"}])
    instance = placed.instances.get()
    assert placed.template.name == "jupyter" and instance.image.startswith("pytorch/pytorch")
    assert sorted(instance.ports.values_list("container_port", flat=True)) == [22, 8888]
    assert instance.disk_gb == 600
    assert [e["name"] for e in placed.environment] == ["JUPYTER_TOKEN_FILE", "EXTRA"]


def test_templates_are_the_buyer_s_own_or_curated(buyer, buyer_client, inbound_host):
    LaunchTemplate.objects.create(name="team-ubuntu", title="Ubuntu with SSH", image="ubuntu:24.04", ports=[22])
    response = buyer_client.post(
        "/api/v1/templates/",
        {"name": "my-vllm", "title": "My vLLM", "image": "vllm/vllm-openai:v0.6", "ports": [8000], "disk_gb": 600},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["owner"] == "yours"
    stranger = bearer_client(UserFactory(email="stranger@example.com"))
    seen = [t["name"] for t in stranger.get("/api/v1/templates/").json()["results"]]
    assert "team-ubuntu" in seen and "my-vllm" not in seen
    mine = response.json()["id"]
    assert stranger.get(f"/api/v1/templates/{mine}/").status_code == 404
    assert stranger.delete(f"/api/v1/templates/{mine}/").status_code == 404
    stranger_order = stranger.post(
        "/api/v1/orders/", {"instance_type": "l4-24g.1x", "template": "my-vllm"}, format="json"
    )
    assert stranger_order.status_code == 400 and "template" in stranger_order.json()["fields"]
    again = buyer_client.post("/api/v1/templates/", {"name": "my-vllm", "image": "x:1"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "template_exists"
    assert buyer_client.delete(f"/api/v1/templates/{mine}/").status_code == 204


def test_a_template_carries_no_secrets(buyer):
    with pytest.raises(InvalidInput) as refused:
        secret = {"name": "K", "value": "v", "secret": True}
        launch_template_create(owner=buyer, data={"name": "t", "image": "x:1", "environment": [secret]})
    assert "environment" in refused.value.fields


# -- logs -------------------------------------------------------------------------------------


def test_logs_are_the_renter_s_and_staff_s_only(buyer, buyer_client, inbound_host, settings):
    settings.LOG_SHIP_MIN_INTERVAL_SECONDS = 0
    instance = order(buyer).instances.get()
    agent_ship_log(host=inbound_host, instance_id=instance.pk, text="".join(f"line {i}\n" for i in range(500)))
    body = buyer_client.get(f"/api/v1/instances/{instance.pk}/logs/?tail=3").json()
    assert body["text"] == "line 497\nline 498\nline 499\n" and body["lines"] == 3
    assert len(buyer_client.get(f"/api/v1/instances/{instance.pk}/logs/").json()["text"].splitlines()) == 200

    stranger = bearer_client(UserFactory(email="stranger@example.com"))
    assert stranger.get(f"/api/v1/instances/{instance.pk}/logs/").status_code == 404
    staff = bearer_client(UserFactory(email="staff@example.com", is_staff=True))
    assert staff.get(f"/api/v1/instances/{instance.pk}/logs/?tail=1").json()["text"] == "line 499\n"
    assert buyer_client.get(f"/api/v1/instances/{instance.pk}/logs/?tail=0").status_code == 400
    assert buyer_client.get(f"/api/v1/instances/{instance.pk}/logs/?tail=x").status_code == 400


def test_shipping_is_bounded_rate_limited_and_scoped_to_the_host(buyer, supplier_org, inbound_host, settings):
    instance = order(buyer).instances.get()
    agent_ship_log(host=inbound_host, instance_id=instance.pk, text="x" * (300 * 1024) + "END")
    assert instance.log.text.endswith("END") and len(instance.log.text) == 256 * 1024
    with pytest.raises(Exception) as limited:
        agent_ship_log(host=inbound_host, instance_id=instance.pk, text="again")
    assert getattr(limited.value, "code", None) == "log_rate_limited" and limited.value.status_code == 429
    other_host = HostFactory(organization=supplier_org, name="other", **l4_host_data())
    with pytest.raises(Exception) as refused:
        agent_ship_log(host=other_host, instance_id=instance.pk, text="forged")
    assert getattr(refused.value, "status_code", None) == 404


def test_the_idempotency_fingerprint_of_an_order_with_a_secret_is_keyed(buyer_client, inbound_host, settings):
    """The stored fingerprint is an HMAC with the server's key: from the table alone nobody can
    confirm a guessed secret value by hashing candidate bodies."""
    body = {
        "instance_type": "l4-24g.1x",
        "image": "ubuntu:24.04",
        "environment": [{"name": "HF_TOKEN", "value": "hf_guessable", "secret": True}],
    }
    first = buyer_client.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = buyer_client.post("/api/v1/orders/", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    stored = IdempotencyRecord.objects.get(key="k-1").request_fingerprint
    plain = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
    guess = hashlib.sha256(f"POST /api/v1/orders/\n{plain}".encode()).hexdigest()
    assert stored != guess and len(stored) == 64
