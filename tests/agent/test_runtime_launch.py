"""What the runtimes do with a start payload's ports, environment and disk, and the output tail they
read: the docker CLI through a recording stand-in, the process runtime for real."""

import json
import stat
import sys

import pytest

from agent.runtimes import LOG_TAIL_BYTES, DockerRuntime, ProcessRuntime
from tests.support.celery_worker import wait_until

SECRET = "hf_s3cr3t_value"
SPEC = {
    "image": "vllm/vllm-openai:v0.6",
    "command": "",
    "vcpus": 8,
    "ram_gb": 48,
    "disk_gb": 730,
    "ports": {"22": 40000, "8000": 40001},
    "environment": {"HF_TOKEN": SECRET, "MODEL": "llama-3-8b", "DOCKER_HOST": "tcp://evil:2375"},
}


@pytest.fixture
def recording_docker(tmp_path):
    """A `docker` that records its arguments, and for `run` the values its environment gave to
    each `-e NAME` (which is where docker reads them from)."""
    script = tmp_path / "docker"
    script.write_text(f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
record = {{"args": args}}
if args and args[0] == "run":
    names = [args[i + 1] for i, a in enumerate(args) if a == "-e"]
    record["env"] = {{name: os.environ.get(name) for name in names}}
    record["docker_host"] = os.environ.get("DOCKER_HOST")
if args and args[0] == "inspect":
    sys.exit(1)
if args and args[0] == "logs":
    sys.stdout.write("".join(f"line {{i}}\\r\\n" for i in range(3)))
open({str(tmp_path / "calls.log")!r}, "a").write(json.dumps(record) + "\\n")
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def calls(tmp_path):
    return [json.loads(line) for line in (tmp_path / "calls.log").read_text().splitlines()]


def test_docker_publishes_ports_caps_the_disk_and_passes_values_outside_the_command_line(recording_docker, tmp_path):
    runtime = DockerRuntime(docker=str(recording_docker), keys_dir=tmp_path / "keys")
    runtime.start(9, SPEC, [0])
    run = next(c for c in calls(tmp_path) if c["args"][0] == "run")
    args = run["args"]
    image_at = args.index("vllm/vllm-openai:v0.6")
    published = [args[i + 1] for i, a in enumerate(args[:image_at]) if a == "-p"]
    assert published == ["40000:22", "40001:8000"]
    assert args[args.index("--storage-opt") + 1] == "size=730G"
    assert [args[i + 1] for i, a in enumerate(args[:image_at]) if a == "-e"] == ["HF_TOKEN", "MODEL"]
    assert not any(SECRET in a for a in args)  # never on a command line (visible in ps)
    assert run["env"] == {"HF_TOKEN": SECRET, "MODEL": "llama-3-8b"}
    assert run["docker_host"] is None  # a payload cannot point the docker CLI elsewhere


def test_docker_without_quota_support_and_without_ports(recording_docker, tmp_path):
    runtime = DockerRuntime(docker=str(recording_docker), keys_dir=tmp_path / "keys", disk_quota=False)
    runtime.start(10, {"image": "ubuntu:24.04", "disk_gb": 100}, [])
    args = next(c for c in calls(tmp_path) if c["args"][0] == "run")["args"]
    assert "--storage-opt" not in args and "-p" not in args and "-e" not in args


def test_malformed_ports_publish_nothing(recording_docker, tmp_path, caplog):
    runtime = DockerRuntime(docker=str(recording_docker), keys_dir=tmp_path / "keys")
    runtime.start(11, {"image": "ubuntu:24.04", "ports": {"22": 99999}}, [])
    assert "-p" not in next(c for c in calls(tmp_path) if c["args"][0] == "run")["args"]
    assert "ports are malformed" in caplog.text


def test_docker_log_tail(recording_docker, tmp_path):
    runtime = DockerRuntime(docker=str(recording_docker), keys_dir=tmp_path / "keys")
    assert runtime.log_tail(9) == "line 0\nline 1\nline 2\n"


def test_process_runtime_binds_its_host_ports_and_sees_its_environment(tmp_path, caplog):
    runtime = ProcessRuntime(tmp_path / "instances")
    spec = {**SPEC, "command": 'echo "ssh=$PORT_22 api=$PORT_8000 model=$MODEL token=${HF_TOKEN:+set} dh=$DOCKER_HOST"'}
    runtime.start(12, spec, [])
    try:
        assert wait_until(lambda: "token=" in runtime.log_tail(12), timeout=10)
        assert runtime.log_tail(12) == "ssh=40000 api=40001 model=llama-3-8b token=set dh=\n"
        assert SECRET not in caplog.text  # the agent never logs a value
    finally:
        runtime.remove(12)


def test_process_log_tail_is_bounded_and_keeps_the_end(tmp_path):
    runtime = ProcessRuntime(tmp_path / "instances")
    runtime.start(13, {"image": "x", "command": f"{sys.executable} -c \"print('x' * 300000 + 'END')\""}, [])
    try:
        assert wait_until(lambda: runtime.log_tail(13).endswith("END\n"), timeout=10)
        assert len(runtime.log_tail(13).encode()) == LOG_TAIL_BYTES
    finally:
        runtime.remove(13)
    assert runtime.log_tail(13) == ""  # removed with its directory
