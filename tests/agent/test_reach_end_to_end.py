"""The real agent (process runtime) against a live server: an order with a port gets connection
details, an HTTP request to the mapped address reaches the instance's own server, and the request
shows in the instance's log tail through the API."""

import json
import socket
import subprocess
import urllib.request

import pytest
from django.db import connections

from agent.runtimes import ProcessRuntime
from orders.lifecycle import instance_start, instance_stop
from orders.models import Instance
from orders.placement import order_place
from orders.requests import OrderRequest
from suppliers.agent_services import host_registration_token_issue
from suppliers.models import Host
from tests.conftest import bearer_client
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data
from tests.support.celery_worker import stop_process, wait_until

from .test_end_to_end import ROOT, agent_command

SERVER = 'echo "devices=[$CUDA_VISIBLE_DEVICES]"; exec python3 -m http.server $PORT_8000 --bind 127.0.0.1'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_a_rented_port_reaches_the_instance_and_its_log_shows_it(catalog, live_server, tmp_path, settings):
    settings.LOG_SHIP_MIN_INTERVAL_SECONDS = 0
    port = free_port()
    host = HostFactory(
        organization=OrganizationFactory(),
        name="l4-reach",
        **l4_host_data(vcpus=40, ram_gb=224, public_address="127.0.0.1", port_range_start=port, port_range_end=port),
    )
    inventory_file = tmp_path / "inventory.json"
    inventory_file.write_text(
        json.dumps(
            {
                "accelerators": [{"index": i, "name": "NVIDIA L4", "memory_mib": 23034} for i in range(4)],
                "vcpus": 40,
                "ram_gb": 222,
                "disk_gb": 4000,
            }
        )
    )
    state_dir = tmp_path / "agent"
    token = host_registration_token_issue(host=host, user=None)
    registered = subprocess.run(
        agent_command(state_dir, "register", "--platform", live_server.url, "--token", token),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert registered.returncode == 0, registered.stderr
    run = agent_command(
        state_dir, "run", "--interval", "0.3", "--log-interval", "0.3", "--inventory-file", str(inventory_file)
    )
    agent = subprocess.Popen(run, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    buyer = UserFactory()
    client = bearer_client(buyer)
    try:
        assert wait_until(lambda: Host.objects.get(pk=host.pk).agent_status == "online")
        order = order_place(
            buyer=buyer,
            request=OrderRequest(instance_type="l4-24g.1x", image="python:3.12", command=SERVER, ports=[8000]),
        )
        instance = order.instances.get()
        assert wait_until(lambda: Instance.objects.get(pk=instance.pk).status == "running")

        connection = client.get(f"/api/v1/instances/{instance.pk}/").json()["connections"][0]
        assert connection["command"] == f"http://127.0.0.1:{port}/"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{connection['command']}?from=the-buyer", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        assert wait_until(answers, timeout=30)  # the instance's own server, on the host port it was given

        def log_shows_the_request() -> bool:
            text = client.get(f"/api/v1/instances/{instance.pk}/logs/?tail=50").json()["text"]
            return "GET /?from=the-buyer" in text

        assert wait_until(log_shows_the_request, timeout=30)
        stranger = bearer_client(UserFactory())
        assert stranger.get(f"/api/v1/instances/{instance.pk}/logs/").status_code == 404

        # No-GPU mode: stopped, then started without its accelerator; another order takes all four.
        instance_stop(instance=Instance.objects.get(pk=instance.pk))
        assert wait_until(lambda: Instance.objects.get(pk=instance.pk).status == "stopped")
        instance_start(instance=Instance.objects.get(pk=instance.pk), accelerators=False)
        assert wait_until(lambda: Instance.objects.get(pk=instance.pk).status == "running")
        output = state_dir / "instances" / str(instance.pk) / "output.log"
        assert wait_until(lambda: "devices=[]" in output.read_text())  # it runs, with no device
        assert wait_until(answers, timeout=30)  # on the same host port
        others = order_place(buyer=UserFactory(), request=OrderRequest(instance_type="l4-24g.1x", image="x", count=4))
        assert others.instances.count() == 4
    finally:
        stop_process(agent)
        runtime = ProcessRuntime(state_dir / "instances")
        for leftover in (state_dir / "instances").glob("*/process.json"):
            runtime.remove(int(leftover.parent.name))  # the instance's server outlives the agent
        connections.close_all()
