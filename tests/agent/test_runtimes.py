"""The two runtimes, for real: local processes, and the docker CLI (a recording stand-in binary)."""

import json
import os
import stat
import sys
import time

import pytest

from agent.runtimes import DockerRuntime, ProcessRuntime, runtime_for


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
    assert run[-3:] == ["pytorch/pytorch:2.5.1", "-c", "python train.py"]
    assert run[run.index("--entrypoint") + 1] == "/bin/sh"
    assert ["stop", "-t", "30", "instance-5"] in calls
    assert ["start", "instance-5"] in calls
    assert ["rm", "-f", "-v", "instance-5"] in calls
    assert os.path.exists(tmp_path / "containers.json")


# -- authorized_keys: the start payload's SSH public keys ----------------------------------------

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA1111111111111111111111111111111111111111111 alice@laptop"
KEY_B = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC2222222222222222222222222222222222222 bob@desk"


def test_process_runtime_installs_the_authorized_keys(tmp_path):
    runtime = ProcessRuntime(tmp_path)
    spec = {
        "command": 'echo "keys=$SSH_AUTHORIZED_KEYS_FILE"; cat "$SSH_AUTHORIZED_KEYS_FILE"; sleep 60',
        "authorized_keys": f"{KEY_A}\n{KEY_B}",
    }
    runtime.start(11, spec, [])
    keys = tmp_path / "11" / "authorized_keys"
    log = tmp_path / "11" / "output.log"
    try:
        assert keys.read_text().splitlines() == [KEY_A, KEY_B]
        assert stat.S_IMODE(keys.stat().st_mode) == 0o600
        assert wait_for(lambda: log.exists() and KEY_B in log.read_text())
        assert f"keys={keys.absolute()}" in log.read_text()
        assert KEY_A in log.read_text()
        assert not list(keys.parent.glob(".authorized_keys*"))  # no temp file left behind

        runtime.start(11, spec, [])  # re-delivered while running
        runtime.stop(11, grace_seconds=5)
        runtime.start(11, spec, [])  # started again after a stop: the file is rewritten, not appended
        assert keys.read_text().splitlines() == [KEY_A, KEY_B]
    finally:
        runtime.remove(11)
    assert not keys.exists()
    assert not (tmp_path / "11").exists()


def test_process_runtime_without_keys_has_no_file_and_no_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SSH_AUTHORIZED_KEYS_FILE", "/agent/own/file")  # never leaks to the instance
    runtime = ProcessRuntime(tmp_path)
    runtime.start(
        12, {"command": 'echo "keys=[${SSH_AUTHORIZED_KEYS_FILE-unset}]"; sleep 60', "authorized_keys": ""}, []
    )
    log = tmp_path / "12" / "output.log"
    try:
        assert wait_for(lambda: log.exists() and "keys=" in log.read_text())
        assert "keys=[unset]" in log.read_text()
        assert not (tmp_path / "12" / "authorized_keys").exists()
    finally:
        runtime.remove(12)


def test_process_runtime_restart_without_keys_removes_the_old_file(tmp_path):
    runtime = ProcessRuntime(tmp_path)
    runtime.start(13, {"command": "sleep 60", "authorized_keys": KEY_A}, [])
    runtime.stop(13, grace_seconds=5)
    runtime.start(13, {"command": "sleep 60"}, [])  # no key in the payload: the old keys do not stay
    try:
        assert not (tmp_path / "13" / "authorized_keys").exists()
    finally:
        runtime.remove(13)


@pytest.mark.parametrize(
    "value",
    [
        f"{KEY_A}\r\n{KEY_B}",  # a carriage return
        f"{KEY_A}\n{KEY_B}\x1b[2J",  # an escape sequence
        f"{KEY_A}\x00",  # NUL
        f"{KEY_A}\u2028{KEY_B}",  # the Unicode line separator
        f"{KEY_A}\n" * 1000,  # over 64 KiB
        ["not", "a", "string"],
    ],
)
def test_keys_that_break_the_rules_are_dropped_with_a_warning(tmp_path, caplog, value):
    runtime = ProcessRuntime(tmp_path)
    with caplog.at_level("WARNING", logger="agent.runtimes"):
        runtime.start(14, {"command": 'echo "keys=[${SSH_AUTHORIZED_KEYS_FILE-unset}]"', "authorized_keys": value}, [])
    log = tmp_path / "14" / "output.log"
    try:
        assert wait_for(lambda: log.exists() and "keys=" in log.read_text())
        assert "keys=[unset]" in log.read_text()
        assert not (tmp_path / "14" / "authorized_keys").exists()
        assert any(
            "authorized_keys" in r.getMessage() and "no keys installed" in r.getMessage() for r in caplog.records
        )
    finally:
        runtime.remove(14)


def test_blank_lines_are_dropped(tmp_path):
    runtime = ProcessRuntime(tmp_path)
    runtime.start(15, {"command": "true", "authorized_keys": f"\n{KEY_A}\n\n{KEY_B}\n"}, [])
    try:
        assert (tmp_path / "15" / "authorized_keys").read_text() == f"{KEY_A}\n{KEY_B}\n"
    finally:
        runtime.remove(15)


def docker_calls(tmp_path):
    return [json.loads(line) for line in (tmp_path / "calls.log").read_text().splitlines()]


def test_docker_runtime_mounts_the_authorized_keys_read_only(fake_docker, tmp_path):
    keys_dir = tmp_path / "state" / "instance-keys"
    runtime = DockerRuntime(docker=str(fake_docker), keys_dir=keys_dir)
    spec = {"image": "pytorch/pytorch:2.5.1", "command": "python train.py", "authorized_keys": f"{KEY_A}\n{KEY_B}"}
    runtime.start(6, spec, [0])
    keys = keys_dir / "6" / "authorized_keys"
    assert keys.read_text().splitlines() == [KEY_A, KEY_B]
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    run = next(c for c in docker_calls(tmp_path) if c[0] == "run")
    assert run[run.index("-v") + 1] == f"{keys.absolute()}:/root/.ssh/authorized_keys:ro"
    assert run.index("-v") < run.index("pytorch/pytorch:2.5.1")  # an option of `run`, not of the command
    assert run[-3:] == ["pytorch/pytorch:2.5.1", "-c", "python train.py"]

    runtime.stop(6, grace_seconds=5)
    runtime.start(6, spec, [0])  # `docker start` of the same container: the file is rewritten, not appended
    assert keys.read_text().splitlines() == [KEY_A, KEY_B]
    assert [c[0] for c in docker_calls(tmp_path)].count("run") == 1

    runtime.remove(6)
    assert not keys.exists()
    assert not (keys_dir / "6").exists()


def test_docker_runtime_without_keys_mounts_nothing(fake_docker, tmp_path):
    keys_dir = tmp_path / "state" / "instance-keys"
    runtime = DockerRuntime(docker=str(fake_docker), keys_dir=keys_dir)
    runtime.start(7, {"image": "ubuntu:24.04", "command": ""}, [])
    runtime.start(8, {"image": "ubuntu:24.04", "authorized_keys": "ssh-ed25519 AAAA\x07bell"}, [])  # dropped
    runs = [c for c in docker_calls(tmp_path) if c[0] == "run"]
    assert len(runs) == 2
    for run in runs:
        assert "-v" not in run
        assert not any("authorized_keys" in arg for arg in run)
    assert not (keys_dir / "7").exists() and not (keys_dir / "8").exists()


def test_runtime_for_keeps_docker_keys_under_the_agent_state(tmp_path):
    runtime = runtime_for("docker", tmp_path)
    assert isinstance(runtime, DockerRuntime)
    assert runtime.keys_dir == tmp_path / "instance-keys"
