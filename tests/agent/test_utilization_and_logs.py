"""The agent's accelerator readings (nvidia-smi's CSV; a stand-in binary on PATH) per instance in
the heartbeat, and its output shipments: only what changed, at most once per interval."""

import json
import stat
import sys

from agent import inventory
from agent.daemon import Agent
from agent.runtimes import Runtime


class RecordingClient:
    def __init__(self):
        self.posts = []

    def post(self, path, body, *, max_attempts=None):
        self.posts.append((path, body, max_attempts))
        return {}


class StubRuntime(Runtime):
    def __init__(self):
        self.output = {}

    def is_running(self, instance_id):
        return True

    def usage(self, instance_id):
        return {"uptime_seconds": 12.0}

    def log_tail(self, instance_id):
        return self.output.get(instance_id, "")


def test_nvidia_smi_readings_are_parsed_and_bad_rows_skipped():
    text = "0, 87, 30123\n1, 13, 1024\n2, [N/A], 5\n3, 140, 5\ngarbage\n"
    assert inventory.parse_utilization_csv(text) == {0: (87.0, 30123.0), 1: (13.0, 1024.0)}
    assert inventory.instance_utilization({0: (87.0, 30123.0), 1: (13.0, 1024.0)}, [0, 1]) == {
        "accelerator_utilization_percent": 50.0,
        "accelerator_memory_used_mib": 31147.0,
    }
    assert inventory.instance_utilization({0: (87.0, 1.0)}, []) == {}


def agent_with(tmp_path, monkeypatch, *, log_interval=0.0):
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir(parents=True)
    smi.write_text(f"#!{sys.executable}\nprint('0, 90, 20000')\nprint('1, 70, 10000')\nprint('2, 5, 100')\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{smi.parent}:/usr/bin:/bin")
    state_dir = tmp_path / "state"
    state_dir.mkdir(parents=True)
    state = {
        "platform": "http://platform",
        "credential": "hcr_x",
        "instances": {"5": "running", "6": "running"},
        "devices": {"5": [0, 1], "6": []},
    }
    (state_dir / "state.json").write_text(json.dumps(state))
    client, runtime = RecordingClient(), StubRuntime()
    return Agent(state_dir=state_dir, runtime=runtime, client=client, log_interval=log_interval), client, runtime


def test_the_heartbeat_carries_each_instance_s_accelerator_readings(tmp_path, monkeypatch):
    agent, client, _ = agent_with(tmp_path, monkeypatch)
    agent.heartbeat()
    path, body, _ = client.posts[-1]
    assert path == "heartbeat/"
    usage = {report["id"]: report["usage"] for report in body["instances"]}
    assert usage[5] == {
        "uptime_seconds": 12.0,
        "accelerator_utilization_percent": 80.0,
        "accelerator_memory_used_mib": 30000.0,
    }
    assert usage[6] == {"uptime_seconds": 12.0}  # no devices (no-GPU mode or a CPU instance)


def test_output_is_shipped_when_it_changes_once_per_interval_without_retries(tmp_path, monkeypatch):
    agent, client, runtime = agent_with(tmp_path, monkeypatch)
    runtime.output = {5: "hello\n"}
    assert agent.ship_logs() == 1
    assert ("instances/5/logs/", {"text": "hello\n"}, 1) in client.posts  # one try: no retry storm
    assert agent.ship_logs() == 0  # unchanged
    runtime.output = {5: "hello\nworld\n"}
    assert agent.ship_logs() == 1
    slow, _, slow_runtime = agent_with(tmp_path / "slow", monkeypatch, log_interval=3600)
    slow_runtime.output = {5: "a\n"}
    assert slow.ship_logs() == 1
    slow_runtime.output = {5: "a\nb\n"}
    assert slow.ship_logs() == 0  # within the interval
