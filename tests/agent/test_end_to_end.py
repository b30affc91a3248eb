"""The real agent in a subprocess against a live server: register, inventory, run an instance
with the process runtime, stop it, lose the host, get it back."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connections

from marketplace.models import Offer
from orders.agent import hosts_mark_offline
from orders.lifecycle import instance_stop, instance_terminate
from orders.models import Instance
from orders.placement import order_place
from orders.requests import OrderRequest
from suppliers.agent_services import host_registration_token_issue
from suppliers.models import Host
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data
from tests.support.celery_worker import stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]


def agent_command(state_dir, *args):
    return [sys.executable, "-m", "agent", "--state-dir", str(state_dir), *args]


def group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.django_db(transaction=True)
def test_agent_runs_an_instance_end_to_end(catalog, live_server, tmp_path, settings):
    settings.AGENT_OFFLINE_AFTER_SECONDS = 1
    host = HostFactory(organization=OrganizationFactory(), name="l4-e2e", **l4_host_data())
    inventory_file = tmp_path / "inventory.json"
    inventory_file.write_text(
        json.dumps(
            {
                "accelerators": [{"index": i, "name": "NVIDIA L4", "memory_mib": 23034} for i in range(4)],
                "cpu_model": "AMD EPYC 7R13",
                "vcpus": 32,
                "ram_gb": 190,
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
    assert json.loads(registered.stdout)["host_id"] == host.pk

    run = agent_command(state_dir, "run", "--interval", "0.3", "--inventory-file", str(inventory_file))
    agent = subprocess.Popen(run, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_until(lambda: Host.objects.get(pk=host.pk).agent_status == "online")
        host.refresh_from_db()
        assert host.inventory["source"] == "file" and host.inventory_mismatch is None

        order = order_place(
            buyer=UserFactory(),
            request=OrderRequest(
                instance_type="l4-24g.2x",
                image="local/demo:1",
                command="echo started on $CUDA_VISIBLE_DEVICES; sleep 300",
            ),
        )
        instance = order.instances.get()
        assert wait_until(lambda: Instance.objects.get(pk=instance.pk).status == "running")
        workdir = state_dir / "instances" / str(instance.pk)
        pid = json.loads((workdir / "process.json").read_text())["pid"]
        assert group_alive(pid)
        assert wait_until(lambda: "started on 0,1" in (workdir / "output.log").read_text())

        instance_stop(instance=Instance.objects.get(pk=instance.pk))
        assert wait_until(lambda: Instance.objects.get(pk=instance.pk).status == "stopped")
        assert not group_alive(pid)  # the process has ended; its directory (disk) is kept
        assert workdir.exists()

        agent.terminate()
        agent.wait(timeout=30)
        time.sleep(1.5)
        assert hosts_mark_offline().done == 1
        assert not Offer.objects.listed().filter(host=host).exists()

        agent = subprocess.Popen(run, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert wait_until(lambda: Host.objects.get(pk=host.pk).agent_status == "online")
        assert Offer.objects.listed().filter(host=host).exists()

        instance_terminate(instance=Instance.objects.get(pk=instance.pk))
        assert wait_until(lambda: Instance.objects.get(pk=instance.pk).status == "terminated")
        assert not workdir.exists()
        statuses = list(Instance.objects.get(pk=instance.pk).events.values_list("kind", "to_status"))
        assert ("host_lost", "stopped") in statuses and ("host_recovered", "stopped") in statuses
    finally:
        stop_process(agent)
        connections.close_all()
