"""The platform restarts under a running agent: the real agent (a subprocess) talks to the real
platform on gunicorn, which is stopped and started again while the agent runs an instance and a
command waits for it. The agent reconnects (retrying with backoff), the command runs once, and no
instance-second is lost from billing or billed twice."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.db import connections

from billing.models import UsageRecord
from orders.lifecycle import instance_stop
from orders.metering import meter_usage
from orders.models import HostCommand, Instance, InstanceEvent
from orders.placement import order_place
from orders.requests import OrderRequest
from suppliers.agent_services import host_registration_token_issue
from tests.agent.test_end_to_end import agent_command, group_alive
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data
from tests.support import celery_worker as workers
from tests.support.celery_worker import stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_platform(port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "marketplace.settings.test",
        "DATABASE_URL": workers.test_database_url(),
        "DATABASE_POOL": "false",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "marketplace.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/api/v1/instance-types/", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    assert wait_until(up, timeout=60), "the platform did not start"
    return process


@pytest.mark.django_db(transaction=True)
def test_a_restarted_platform_loses_no_command_and_no_billed_second(catalog, tmp_path):
    host = HostFactory(organization=OrganizationFactory(), name="l4-restart", **l4_host_data())
    inventory_file = tmp_path / "inventory.json"
    accelerators = [{"index": i, "name": "NVIDIA L4", "memory_mib": 23034} for i in range(4)]
    inventory_file.write_text(json.dumps({"accelerators": accelerators, "vcpus": 32, "ram_gb": 190, "disk_gb": 4000}))
    state_dir = tmp_path / "agent"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    platform = start_platform(port)
    agent = None
    try:
        token = host_registration_token_issue(host=host, user=None)
        registered = subprocess.run(
            agent_command(state_dir, "register", "--platform", url, "--token", token),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert registered.returncode == 0, registered.stderr
        run = agent_command(state_dir, "run", "--interval", "0.3", "--inventory-file", str(inventory_file))
        agent = subprocess.Popen(run, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

        order = order_place(
            buyer=UserFactory(),
            request=OrderRequest(instance_type="l4-24g.1x", image="local/demo:1", command="sleep 300"),
        )
        instance = order.instances.get()
        assert wait_until(lambda: Instance.objects.get(pk=instance.pk).status == "running")
        pid = json.loads((state_dir / "instances" / str(instance.pk) / "process.json").read_text())["pid"]
        for _ in range(3):  # a few ticks of metering while it runs
            wait_until(lambda: False, timeout=0.7)
            meter_usage()

        stop_process(platform)  # the platform goes down; the agent keeps trying
        instance_stop(instance=Instance.objects.get(pk=instance.pk))  # a command waits meanwhile
        assert wait_until(lambda: False, timeout=3) is False
        meter_usage()
        assert group_alive(pid)  # nothing reached the agent

        platform = start_platform(port)
        assert wait_until(lambda: Instance.objects.get(pk=instance.pk).status == "stopped", timeout=60)
        assert not group_alive(pid)
        meter_usage()
    finally:
        if agent is not None:
            stop_process(agent)
        stop_process(platform)
        connections.close_all()

    stop = HostCommand.objects.get(instance=instance, kind="stop")
    assert stop.status == "acknowledged" and stop.acknowledged_at is not None
    events = InstanceEvent.objects.filter(instance=instance)
    assert events.filter(to_status="stopped").count() == 1  # the stop ran once
    running_at = events.get(to_status="running").created_at
    stopped_at = events.get(to_status="stopping").created_at
    compute = list(
        UsageRecord.objects.filter(instance=instance, kind="compute")
        .order_by("window_start")
        .values_list("window_start", "window_end")
    )
    assert compute, "the running time was not metered"
    for (_, previous_end), (start, _) in itertools.pairwise(compute):
        assert start == previous_end  # contiguous: no second lost, none twice
    assert len(compute) >= 2
    assert abs(compute[0][0] - running_at) < timedelta(milliseconds=100)  # from the moment it ran
    assert timedelta(0) <= stopped_at - compute[-1][1] < timedelta(seconds=1)  # to the stop, but its last fraction
