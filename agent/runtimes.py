"""Where instances run. One interface, two real runtimes:

- `process`: the instance's command as a local subprocess in its own directory, with
  CUDA_VISIBLE_DEVICES set to its devices; stop = SIGTERM, then SIGKILL after the grace period.
- `docker`: `docker run --gpus device=...` with the image, command and resource limits.

Both install the `authorized_keys` of the start payload (OpenSSH public key lines separated by
"\n") as the instance's `authorized_keys` file: see `authorized_keys_lines` and `write_authorized_keys`.
Both give the instance the payload's `environment` ({name: value}) and its `ports` ({container port:
host port}): docker publishes each (`-p host:container`); a process binds the host port itself, named
in `PORT_<container port>`. Environment values never go on a command line (docker reads them from
its own environment for `-e NAME`), and are never logged. `log_tail` returns the recent output.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

log = logging.getLogger("agent.runtimes")

# The start payload's key with the instance's SSH public keys, and what the instance sees.
AUTHORIZED_KEYS_KEY = "authorized_keys"
AUTHORIZED_KEYS_ENV = "SSH_AUTHORIZED_KEYS_FILE"
AUTHORIZED_KEYS_FILE = "authorized_keys"
AUTHORIZED_KEYS_MOUNT = "/root/.ssh/authorized_keys"
AUTHORIZED_KEYS_MAX_BYTES = 64 * 1024
LOG_TAIL_BYTES = 256 * 1024  # what the agent ships of an instance's output
PORT_ENV_PREFIX = "PORT_"
# Names an instance's environment may not set: they would steer the agent's own tools (the docker
# CLI reads DOCKER_HOST; the loader reads LD_PRELOAD) or what the agent sets itself.
UNSAFE_ENV_NAMES = frozenset({"PATH", "HOME", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", AUTHORIZED_KEYS_ENV})
UNSAFE_ENV_PREFIXES = ("DOCKER_", "LD_", "INSTANCE_", PORT_ENV_PREFIX)

# What an instance runs when its order gave no command: stays up and prints a heartbeat.
IDLE_COMMAND = [
    sys.executable,
    "-c",
    "import time\nwhile True:\n    print('instance alive', flush=True)\n    time.sleep(5)",
]


def authorized_keys_lines(instance_id: int, spec: dict) -> list[str]:
    """The key lines of the start payload, or [] (with a warning) when it breaks the rules the agent
    enforces whatever the platform validated: a string, at most 64 KiB, no control characters but
    the "\n" separator. Blank lines are dropped; the others are kept as they are."""
    value = spec.get(AUTHORIZED_KEYS_KEY)
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        log.warning(
            "instance %s: authorized_keys is not a string (%s); no keys installed", instance_id, type(value).__name__
        )
        return []
    if len(value.encode("utf-8", "surrogatepass")) > AUTHORIZED_KEYS_MAX_BYTES:
        log.warning(
            "instance %s: authorized_keys over %s bytes; no keys installed", instance_id, AUTHORIZED_KEYS_MAX_BYTES
        )
        return []
    lines = value.split("\n")
    for number, line in enumerate(lines, 1):
        # Cc: C0/C1 controls and DEL ("\r", "\t", NUL, ESC...); Cs: lone surrogates; Zl/Zp: the
        # Unicode line and paragraph separators, which some readers take for a newline.
        if any(unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") for char in line):
            log.warning(
                "instance %s: authorized_keys line %s has a control character; no keys installed", instance_id, number
            )
            return []
    return [line for line in lines if line.strip()]


def write_authorized_keys(path: Path, lines: list[str]) -> None:
    """Replace `path` with the key lines, mode 0600, atomically (a temp file in the same directory,
    then rename): a reader never sees half a file, and a re-delivered start never duplicates lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # created 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write("".join(f"{line}\n" for line in lines).encode())
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def environment_of(instance_id: int, spec: dict) -> dict[str, str]:
    """The payload's environment ({name: value}), or {} (with a warning naming no value) when it is
    not a mapping of strings. The platform validated the names; the agent checks the shape."""
    value = spec.get("environment") or {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        log.warning("instance %s: environment is not a mapping of strings; none set", instance_id)
        return {}
    if spec.get("environment_unreadable"):
        log.warning("instance %s: the platform could not decrypt %s", instance_id, spec["environment_unreadable"])
    unsafe = sorted(k for k in value if k in UNSAFE_ENV_NAMES or k.startswith(UNSAFE_ENV_PREFIXES))
    if unsafe:
        log.warning("instance %s: environment names reserved by the agent dropped: %s", instance_id, unsafe)
    return {k: v for k, v in value.items() if k.isidentifier() and "\0" not in v and k not in unsafe}


def ports_of(instance_id: int, spec: dict) -> dict[int, int]:
    """The payload's port map ({"22": 40022}) as {container port: host port}, or {} when malformed."""
    value = spec.get("ports") or {}
    try:
        ports = {int(inside): int(outside) for inside, outside in dict(value).items()}
    except (TypeError, ValueError):
        ports = {}
    if not all(1 <= p <= 65535 for pair in ports.items() for p in pair):
        ports = {}
    if value and not ports:
        log.warning("instance %s: ports are malformed; none published", instance_id)
    return ports


def tail_of_file(path: Path, max_bytes: int = LOG_TAIL_BYTES) -> str:
    """The last `max_bytes` of a file as text (carriage returns as line breaks), "" when absent."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - max_bytes))
            data = file.read()
    except OSError:
        return ""
    return data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")


class Runtime:
    name = "base"

    def log_tail(self, instance_id: int) -> str:
        return ""

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

    def keys_file(self, instance_id: int) -> Path:
        return self._dir(instance_id) / AUTHORIZED_KEYS_FILE

    def _install_keys(self, instance_id: int, spec: dict) -> Path | None:
        """The payload's keys as `<instance dir>/authorized_keys` (overwritten), or no file."""
        path = self.keys_file(instance_id).absolute()
        lines = authorized_keys_lines(instance_id, spec)
        if lines:
            write_authorized_keys(path, lines)
            return path
        path.unlink(missing_ok=True)
        return None

    def start(self, instance_id: int, spec: dict, devices: list[int]) -> None:
        if self.is_running(instance_id):
            return  # re-delivered command: already started (its keys file was written then)
        workdir = self._dir(instance_id)
        workdir.mkdir(parents=True, exist_ok=True)
        keys = self._install_keys(instance_id, spec)
        command = spec.get("command") or ""
        argv = ["/bin/sh", "-c", command] if command.strip() else IDLE_COMMAND
        env = {
            **os.environ,
            **environment_of(instance_id, spec),
            "CUDA_VISIBLE_DEVICES": ",".join(str(d) for d in devices),
            "INSTANCE_ID": str(instance_id),
            "INSTANCE_IMAGE": spec.get("image", ""),
        }
        for inside, outside in ports_of(instance_id, spec).items():
            env[f"{PORT_ENV_PREFIX}{inside}"] = str(outside)  # the host port the command binds for it
        env.pop(AUTHORIZED_KEYS_ENV, None)  # never the agent's own
        if keys is not None:
            env[AUTHORIZED_KEYS_ENV] = str(keys)
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
        self.keys_file(instance_id).unlink(missing_ok=True)
        shutil.rmtree(self._dir(instance_id), ignore_errors=True)

    def log_tail(self, instance_id: int) -> str:
        return tail_of_file(self._dir(instance_id) / "output.log")

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
    """Containers named `instance-<id>` on the local Docker engine. The instance's SSH keys live on
    the host under `<keys_dir>/<id>/authorized_keys`, bind-mounted read-only into the container."""

    name = "docker"

    def __init__(self, docker: str = "docker", keys_dir: Path | None = None, disk_quota: bool = True):
        self.docker = docker
        # `--storage-opt size=` needs a storage driver with quotas (overlay2 on xfs with pquota);
        # `--no-disk-quota` turns it off where the engine has none (the disk is then not enforced).
        self.disk_quota = disk_quota
        # `runtime_for` passes `<state dir>/instance-keys`; the default matches the CLI's state dir.
        self.keys_dir = Path(keys_dir) if keys_dir is not None else Path.home() / ".marketplace-agent" / "instance-keys"

    def keys_file(self, instance_id: int) -> Path:
        return (self.keys_dir / str(instance_id) / AUTHORIZED_KEYS_FILE).absolute()

    def _install_keys(self, instance_id: int, spec: dict) -> Path | None:
        """Write the payload's keys (overwritten). Without keys, a file left by an earlier start is
        emptied, not deleted: a container created with the mount needs its source on `docker start`."""
        path = self.keys_file(instance_id)
        lines = authorized_keys_lines(instance_id, spec)
        if lines:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_authorized_keys(path, lines)
            return path
        if path.exists():
            write_authorized_keys(path, [])
        return None

    def _name(self, instance_id: int) -> str:
        return f"instance-{instance_id}"

    def _run(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.docker, *args],
            capture_output=True,
            text=True,
            timeout=600,
            check=check,
            env={**os.environ, **env} if env else None,
        )

    def run_arguments(
        self, instance_id: int, spec: dict, devices: list[int], keys_file: Path | None = None
    ) -> list[str]:
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
        if self.disk_quota and spec.get("disk_gb"):
            args += ["--storage-opt", f"size={int(spec['disk_gb'])}G"]
        if keys_file is not None:
            args += ["-v", f"{keys_file}:{AUTHORIZED_KEYS_MOUNT}:ro"]
        for inside, outside in sorted(ports_of(instance_id, spec).items()):
            args += ["-p", f"{outside}:{inside}"]
        for name in sorted(environment_of(instance_id, spec)):
            args += ["-e", name]  # the value comes from docker's own environment, never the command line
        command = (spec.get("command") or "").strip()
        if command:  # replaces the image's own entrypoint (vLLM's, say), which would take it as arguments
            args += ["--entrypoint", "/bin/sh"]
        args.append(spec["image"])
        if command:
            args += ["-c", spec["command"]]
        return args

    def start(self, instance_id: int, spec: dict, devices: list[int]) -> None:
        if self.is_running(instance_id):
            return
        keys = self._install_keys(instance_id, spec)
        exists = self._run("inspect", self._name(instance_id), check=False).returncode == 0
        if exists:
            self._run("start", self._name(instance_id))  # its mount (if any) reads the rewritten file
        else:
            self._run(*self.run_arguments(instance_id, spec, devices, keys), env=environment_of(instance_id, spec))

    def is_running(self, instance_id: int) -> bool:
        result = self._run("inspect", "-f", "{{.State.Running}}", self._name(instance_id), check=False)
        return result.returncode == 0 and result.stdout.strip() == "true"

    def stop(self, instance_id: int, grace_seconds: float) -> None:
        self._run("stop", "-t", str(int(grace_seconds)), self._name(instance_id), check=False)

    def log_tail(self, instance_id: int) -> str:
        result = self._run("logs", "--tail", "5000", self._name(instance_id), check=False)
        if result.returncode != 0:
            return ""
        text = (result.stdout + result.stderr).replace("\r\n", "\n").replace("\r", "\n")
        return text.encode()[-LOG_TAIL_BYTES:].decode("utf-8", "replace")

    def remove(self, instance_id: int) -> None:
        self._run("rm", "-f", "-v", self._name(instance_id), check=False)
        shutil.rmtree(self.keys_file(instance_id).parent, ignore_errors=True)


def runtime_for(name: str, state_dir: Path, *, disk_quota: bool = True) -> Runtime:
    if name == "docker":
        return DockerRuntime(keys_dir=state_dir / "instance-keys", disk_quota=disk_quota)
    if name == "process":
        return ProcessRuntime(state_dir / "instances")
    raise ValueError(f"unknown runtime {name!r}: use process or docker")
