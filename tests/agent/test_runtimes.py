"""The two runtimes, for real: local processes, and the docker CLI (a recording stand-in binary)."""

import json
import os
import stat
import sys
import time

import pytest

from agent.runtimes import DockerRuntime, ProcessRuntime


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_process_runtime_runs_the_command_with_its_devices(tmp_path):
    runtime = ProcessRuntime(tmp_path)
    runtime.start(7, {"command": "echo devices=$CUDA_VISIBLE_DEVICES; sleep 60"}, [2, 3])
    assert runtime.is_running(7)
    log = tmp_path / "7" / "output.log"
    assert wait_for(lambda: log.exists() and "devices=2,3" in log.read_text())
    runtime.start(7, {"command": "echo again"}, [2, 3])  # re-delivered: not started twice
    assert log.read_text().count("devices=") == 1

    runtime.stop(7, grace_seconds=5)
    assert not runtime.is_running(7)
    assert (tmp_path / "7").exists()  # stop keeps the disk
    runtime.remove(7)
    assert not (tmp_path / "7").exists()


def test_process_usage_reports_uptime_for_the_platform_to_compare(tmp_path):
    runtime = ProcessRuntime(tmp_path)
    runtime.start(8, {"command": "sleep 60"}, [0])
    try:
        time.sleep(1.2)
        usage = runtime.usage(8)
        assert 1.0 <= usage["uptime_seconds"] < 30 and usage["cpu_seconds"] >= 0
    finally:
        runtime.remove(8)
    assert runtime.usage(8) == {}


def test_stop_kills_after_the_grace_period(tmp_path):
    runtime = ProcessRuntime(tmp_path)
    stubborn = (
        f'{sys.executable} -c "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"'
    )
    runtime.start(8, {"command": stubborn}, [])
    time.sleep(0.5)
    started = time.monotonic()
    runtime.stop(8, grace_seconds=1)
    assert not runtime.is_running(8)
    assert 0.9 <= time.monotonic() - started < 8


def test_a_restarted_agent_finds_its_processes(tmp_path):
    ProcessRuntime(tmp_path).start(9, {"command": "sleep 60"}, [])
    again = ProcessRuntime(tmp_path)  # a new agent process reading the same state
    assert again.is_running(9)
    again.stop(9, grace_seconds=2)
    assert not again.is_running(9)


def test_idle_instance_without_command(tmp_path):
    runtime = ProcessRuntime(tmp_path)
    runtime.start(10, {"command": ""}, [])
    assert wait_for(lambda: "instance alive" in (tmp_path / "10" / "output.log").read_text())
    runtime.remove(10)


@pytest.fixture
def fake_docker(tmp_path):
    """A `docker` executable that records its arguments and keeps container state in files."""
    script = tmp_path / "docker"
    script.write_text(f"""#!{sys.executable}
import json, os, sys
state = {str(tmp_path / "containers.json")!r}
log = {str(tmp_path / "calls.log")!r}
args = sys.argv[1:]
open(log, "a").write(json.dumps(args) + "\\n")
containers = json.load(open(state)) if os.path.exists(state) else {{}}
def save(): json.dump(containers, open(state, "w"))
if args[0] == "run":
    containers[args[args.index("--name") + 1]] = True; save(); print("abc123")
elif args[0] == "inspect":
    name = args[-1]
    if name not in containers: sys.exit(1)
    print("true" if containers[name] else "false")
elif args[0] == "stop":
    containers[args[-1]] = False; save()
elif args[0] == "start":
    containers[args[-1]] = True; save()
elif args[0] == "rm":
    containers.pop(args[-1], None); save()
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_docker_runtime_drives_the_docker_cli(fake_docker, tmp_path):

    runtime = DockerRuntime(docker=str(fake_docker))
    spec = {"image": "pytorch/pytorch:2.5.1", "command": "python train.py", "vcpus": 24, "ram_gb": 256}
    runtime.start(5, spec, [0, 1])
    assert runtime.is_running(5)
    runtime.stop(5, grace_seconds=30)
    assert not runtime.is_running(5)
    runtime.start(5, spec, [0, 1])  # the stopped container (and its disk) is started again
    runtime.remove(5)
    calls = [json.loads(line) for line in (tmp_path / "calls.log").read_text().splitlines()]
    run = next(c for c in calls if c[0] == "run")
    assert run[run.index("--gpus") + 1] == '"device=0,1"'
    assert run[run.index("--cpus") + 1] == "24" and run[run.index("--memory") + 1] == "256g"
    assert run[-4:] == ["pytorch/pytorch:2.5.1", "/bin/sh", "-c", "python train.py"]
    assert ["stop", "-t", "30", "instance-5"] in calls
    assert ["start", "instance-5"] in calls
    assert ["rm", "-f", "-v", "instance-5"] in calls
    assert os.path.exists(tmp_path / "containers.json")
