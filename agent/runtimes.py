"""Where instances run. One interface, two real runtimes:

- `process`: the instance's command as a local subprocess in its own directory, with
  CUDA_VISIBLE_DEVICES set to its devices; stop = SIGTERM, then SIGKILL after the grace period.
- `docker`: `docker run --gpus device=...` with the image, command and resource limits.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

# What an instance runs when its order gave no command: stays up and prints a heartbeat.
IDLE_COMMAND = [
    sys.executable,
    "-c",
    "import time\nwhile True:\n    print('instance alive', flush=True)\n    time.sleep(5)",
]


class Runtime:
    name = "base"

    def start(self, instance_id: int, spec: dict, devices: list[int]) -> None: ...
    def stop(self, instance_id: int, grace_seconds: float) -> None: ...
    def remove(self, instance_id: int) -> None: ...
    def is_running(self, instance_id: int) -> bool: ...

    def usage(self, instance_id: int) -> dict:
        return {}


class ProcessRuntime(Runtime):
    """Runs each instance as a process group under `<root>/<instance_id>/`. The pid is kept on
    disk so an agent restart finds its instances again."""

    name = "process"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, instance_id: int) -> Path:
        return self.root / str(instance_id)

    def _pid(self, instance_id: int) -> int | None:
        try:
            return json.loads((self._dir(instance_id) / "process.json").read_text())["pid"]
        except (OSError, ValueError, KeyError):
            return None

    def start(self, instance_id: int, spec: dict, devices: list[int]) -> None:
        if self.is_running(instance_id):
            return  # re-delivered command: already started
        workdir = self._dir(instance_id)
        workdir.mkdir(parents=True, exist_ok=True)
        command = spec.get("command") or ""
        argv = ["/bin/sh", "-c", command] if command.strip() else IDLE_COMMAND
        env = {
            **os.environ,
            "CUDA_VISIBLE_DEVICES": ",".join(str(d) for d in devices),
            "INSTANCE_ID": str(instance_id),
            "INSTANCE_IMAGE": spec.get("image", ""),
        }
        log = open(workdir / "output.log", "ab")  # noqa: SIM115 (the child owns it)
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        (workdir / "process.json").write_text(json.dumps({"pid": process.pid, "started": time.time()}))
        self._children = getattr(self, "_children", {})
        self._children[instance_id] = process

    def is_running(self, instance_id: int) -> bool:
        """True while any process of the instance's process group is alive."""
        pid = self._pid(instance_id)
        if pid is None:
            return False
        child = getattr(self, "_children", {}).get(instance_id)
        if child is not None:
            child.poll()  # reap the group leader if it exited
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not (_is_zombie(pid) and _group_size(pid) <= 1)

    def stop(self, instance_id: int, grace_seconds: float) -> None:
        pid = self._pid(instance_id)
        if pid is None or not self.is_running(instance_id):
            return
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and self.is_running(instance_id):
            time.sleep(0.1)
        if self.is_running(instance_id):
            _signal_group(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.is_running(instance_id):
                time.sleep(0.05)
        child = getattr(self, "_children", {}).pop(instance_id, None)
        if child is not None:
            child.wait(timeout=5)

    def remove(self, instance_id: int) -> None:
        self.stop(instance_id, grace_seconds=5)
        shutil.rmtree(self._dir(instance_id), ignore_errors=True)

    def usage(self, instance_id: int) -> dict:
        """CPU seconds of the instance's process, and how long it has been up (`uptime_seconds`,
        which the platform compares with the compute it bills)."""
        pid = self._pid(instance_id)
        try:
            # /proc/<pid>/stat after the command name: utime, stime and starttime are fields 14, 15
            # and 22 (1-based), i.e. 11, 12 and 19 here; starttime counts clock ticks since boot.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks = os.sysconf("SC_CLK_TCK")
            booted_for = float(Path("/proc/uptime").read_text().split()[0])
            return {
                "cpu_seconds": (int(fields[11]) + int(fields[12])) / ticks,
                "uptime_seconds": round(max(0.0, booted_for - int(fields[19]) / ticks), 2),
            }
        except (OSError, ValueError, IndexError, TypeError):
            return {}


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _group_size(pgid: int) -> int:
    """How many processes are in the process group (Linux /proc)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    count += 1
            except (OSError, IndexError, ValueError):
                continue
    return count


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class DockerRuntime(Runtime):
    """Containers named `instance-<id>` on the local Docker engine."""

    name = "docker"

    def __init__(self, docker: str = "docker"):
        self.docker = docker

    def _name(self, instance_id: int) -> str:
        return f"instance-{instance_id}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([self.docker, *args], capture_output=True, text=True, timeout=600, check=check)

    def run_arguments(self, instance_id: int, spec: dict, devices: list[int]) -> list[str]:
        args = [
            "run",
            "-d",
            "--name",
            self._name(instance_id),
            "--restart",
            "no",
            "--label",
            f"marketplace.instance={instance_id}",
        ]
        if devices:
            args += ["--gpus", f'"device={",".join(str(d) for d in devices)}"']
        if spec.get("vcpus"):
            args += ["--cpus", str(spec["vcpus"])]
        if spec.get("ram_gb"):
            args += ["--memory", f"{spec['ram_gb']}g"]
        args.append(spec["image"])
        if (spec.get("command") or "").strip():
            args += ["/bin/sh", "-c", spec["command"]]
        return args

    def start(self, instance_id: int, spec: dict, devices: list[int]) -> None:
        if self.is_running(instance_id):
            return
        exists = self._run("inspect", self._name(instance_id), check=False).returncode == 0
        if exists:
            self._run("start", self._name(instance_id))
        else:
            self._run(*self.run_arguments(instance_id, spec, devices))

    def is_running(self, instance_id: int) -> bool:
        result = self._run("inspect", "-f", "{{.State.Running}}", self._name(instance_id), check=False)
        return result.returncode == 0 and result.stdout.strip() == "true"

    def stop(self, instance_id: int, grace_seconds: float) -> None:
        self._run("stop", "-t", str(int(grace_seconds)), self._name(instance_id), check=False)

    def remove(self, instance_id: int) -> None:
        self._run("rm", "-f", "-v", self._name(instance_id), check=False)


def runtime_for(name: str, state_dir: Path) -> Runtime:
    if name == "docker":
        return DockerRuntime()
    if name == "process":
        return ProcessRuntime(state_dir / "instances")
    raise ValueError(f"unknown runtime {name!r}: use process or docker")
