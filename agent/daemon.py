"""The agent loop: report inventory, heartbeat, run the commands the platform queues, report back."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

from . import inventory
from .client import PlatformClient, PlatformError
from .runtimes import Runtime, runtime_for

log = logging.getLogger("agent")


class AgentState:
    """Local state kept across restarts: credential, device assignments, handled command ids."""

    def __init__(self, state_dir: Path):
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "state.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.data.setdefault("devices", {})  # instance id -> [device indexes]
        self.data.setdefault("handled_commands", [])
        self.data.setdefault("instances", {})  # instance id -> last known status

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)  # atomic: a crash never leaves half a file

    @property
    def credential(self) -> str | None:
        return self.data.get("credential")

    @property
    def platform(self) -> str | None:
        return self.data.get("platform")


def register(*, platform: str, token: str, state_dir: Path) -> dict:
    """Exchange a one-time registration token for this host's credential, kept in the state dir."""
    result = PlatformClient(platform).post("register/", {"token": token})
    state = AgentState(state_dir)
    state.data.update({"platform": platform, "credential": result["credential"], "host_id": result["host_id"]})
    state.save()
    os.chmod(state.path, 0o600)
    return {"host_id": result["host_id"], "host_name": result.get("host_name")}


class Agent:
    def __init__(
        self,
        *,
        state_dir: Path,
        runtime: Runtime | None = None,
        runtime_name: str = "process",
        inventory_file: str | None = None,
        interval: float = 10.0,
        client: PlatformClient | None = None,
        disk_quota: bool = True,
        log_interval: float | None = None,
    ):
        self.state = AgentState(state_dir)
        if not self.state.credential:
            raise SystemExit("not registered: run `python -m agent register --platform URL --token T` first")
        self.client = client or PlatformClient(self.state.platform, self.state.credential)
        self.runtime = runtime or runtime_for(runtime_name, self.state.dir, disk_quota=disk_quota)
        self.inventory_file = inventory_file
        self.interval = interval
        # Output is shipped at most this often per instance, and only when it changed.
        self.log_interval = 5.0 if log_interval is None else log_interval
        self._logs_shipped: dict[int, tuple[float, int]] = {}  # instance id -> (monotonic time, hash)
        self.stopping = threading.Event()
        self.device_count = 0

    # -- reports ------------------------------------------------------------------------------

    def report_inventory(self) -> dict:
        report = inventory.collect(inventory_file=self.inventory_file, data_dir=str(self.state.dir))
        self.device_count = len(report.get("accelerators") or [])
        result = self.client.post("inventory/", report)
        if not result.get("matches_declaration", True):
            log.warning("inventory contradicts the declaration: %s", result.get("differences"))
        return result

    def heartbeat(self) -> list[dict]:
        instances = []
        devices = self.state.data["devices"]
        readings = inventory.utilization() if any(devices.values()) else {}
        for instance_id, status in sorted(self.state.data["instances"].items()):
            running = self.runtime.is_running(int(instance_id))
            if status == "running" and not running:
                self._report_state(int(instance_id), "failed", "The instance process exited")
                status = self.state.data["instances"].get(instance_id, status)
            usage = self.runtime.usage(int(instance_id))
            if status == "running":
                usage.update(inventory.instance_utilization(readings, devices.get(instance_id) or []))
            instances.append({"id": int(instance_id), "status": status, "usage": usage})
        return self.client.post("heartbeat/", {"instances": instances}).get("commands", [])

    def ship_logs(self) -> int:
        """Send the tail of each running instance's output that changed since it was last sent, at
        most once per `log_interval`. Refusals (a rate limit, an instance gone) are not retried:
        the next turn sends the newer tail anyway. Returns how many were sent."""
        sent = 0
        now = time.monotonic()
        for instance_id, status in sorted(self.state.data["instances"].items()):
            key = int(instance_id)
            last_at, last_hash = self._logs_shipped.get(key, (float("-inf"), 0))
            if status not in ("running", "failed", "stopped") or now - last_at < self.log_interval:
                continue
            text = self.runtime.log_tail(key)
            if hash(text) == last_hash:
                continue
            try:
                self.client.post(f"instances/{key}/logs/", {"text": text}, max_attempts=1)
            except (PlatformError, ConnectionError) as error:
                log.info("output of instance %s not shipped: %s", key, error)
                continue
            self._logs_shipped[key] = (now, hash(text))
            sent += 1
        return sent

    def _report_state(self, instance_id: int, status: str, reason: str) -> None:
        try:
            self.client.post(f"instances/{instance_id}/state/", {"status": status, "reason": reason})
        except PlatformError as error:
            log.warning("state report for instance %s refused: %s", instance_id, error)
        if status == "terminated":
            self.state.data["instances"].pop(str(instance_id), None)
        else:
            self.state.data["instances"][str(instance_id)] = status
        self.state.save()

    # -- commands ------------------------------------------------------------------------------

    def _devices_for(self, instance_id: int, count: int) -> list[int]:
        assigned = self.state.data["devices"]
        if str(instance_id) in assigned:
            return assigned[str(instance_id)]
        used = {d for devices in assigned.values() for d in devices}
        free = [d for d in range(max(self.device_count, count)) if d not in used]
        devices = free[:count]
        assigned[str(instance_id)] = devices
        return devices

    def execute(self, command: dict) -> None:
        """Run one command and acknowledge it exactly once. A re-delivered command id is only
        acknowledged again (the platform ignores the repeat); it is never executed twice."""
        command_id = command["id"]
        if command_id in self.state.data["handled_commands"]:
            self._ack(command_id, True, "already handled")
            return
        instance_id, payload, kind = command["instance_id"], command.get("payload") or {}, command["kind"]
        ok, detail = True, ""
        try:
            if kind == "start":
                devices = self._devices_for(instance_id, int(payload.get("accelerators") or 0))
                self.runtime.start(instance_id, payload, devices)
                self._report_state(instance_id, "running", f"Started on devices {devices or 'none'}")
            elif kind == "stop":
                self.runtime.stop(instance_id, float(payload.get("grace_seconds", 30)))
                self.state.data["devices"].pop(str(instance_id), None)
                if payload.get("reason") == "preempted":
                    self.state.data["instances"][str(instance_id)] = "preempted"
                else:
                    self._report_state(instance_id, "stopped", "Stopped; disk kept")
            elif kind == "terminate":
                self.runtime.remove(instance_id)
                self.state.data["devices"].pop(str(instance_id), None)
                self._report_state(instance_id, "terminated", "Terminated; disk removed")
            else:
                ok, detail = False, f"unknown command kind {kind!r}"
        except Exception as error:  # a failed command is reported, never crashes the agent
            log.exception("command %s failed", command_id)
            ok, detail = False, str(error)[:500]
            if kind == "start":
                self._report_state(instance_id, "failed", f"Start failed: {detail}")
        self.state.data["handled_commands"] = (self.state.data["handled_commands"] + [command_id])[-1000:]
        self.state.save()
        self._ack(command_id, ok, detail)

    def _ack(self, command_id: int, ok: bool, detail: str) -> None:
        try:
            self.client.post(f"commands/{command_id}/ack/", {"ok": ok, "detail": detail})
        except PlatformError as error:
            log.warning("ack of command %s refused: %s", command_id, error)

    # -- loop ---------------------------------------------------------------------------------

    def run_once(self) -> int:
        commands = self.heartbeat()
        for command in commands:
            self.execute(command)
        self.ship_logs()
        return len(commands)

    def run(self) -> None:
        """Report inventory, then heartbeat every `interval` seconds until stopped. Survives a
        platform restart: failed calls are retried with backoff, then the loop carries on."""
        while not self.stopping.is_set():
            try:
                self.report_inventory()
                break
            except (ConnectionError, PlatformError) as error:
                log.warning("inventory report failed: %s", error)
                self.stopping.wait(self.interval)
        while not self.stopping.is_set():
            try:
                handled = self.run_once()
            except ConnectionError as error:
                log.warning("heartbeat failed: %s", error)
                handled = 0
            except PlatformError as error:
                log.error("heartbeat refused: %s", error)
                if error.status == 401:
                    raise SystemExit("the platform no longer accepts this host's credential") from error
                handled = 0
            self.stopping.wait(0 if handled else self.interval)


def selftest(*, state_dir: Path, inventory_file: str | None = None, report: bool = True) -> dict:
    """Driver and accelerators, disk, and platform reachability; reported when registered."""
    checks = []
    found = inventory.collect(inventory_file=inventory_file, data_dir=str(state_dir))
    accelerators = found.get("accelerators") or []
    if found["source"] in ("nvml", "nvidia-smi"):
        checks.append(
            {
                "name": "driver",
                "ok": bool(found.get("driver_version")),
                "detail": f"{found['source']}, driver {found.get('driver_version')}",
            }
        )
        checks.append(
            {
                "name": "accelerators",
                "ok": bool(accelerators),
                "count": len(accelerators),
                "detail": ", ".join(f"{a['index']}: {a['name']}" for a in accelerators) or "none found",
            }
        )
    else:
        checks.append(
            {
                "name": "accelerators",
                "ok": True,
                "count": len(accelerators),
                "detail": f"{len(accelerators)} from {found['source']} (no NVIDIA driver probed)",
            }
        )
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(state_dir)
    free_gb = usage.free // 1024**3
    checks.append({"name": "disk", "ok": free_gb >= 1, "detail": f"{free_gb} GB free of {usage.total // 1024**3}"})
    state = AgentState(state_dir)
    if state.platform:
        try:
            with urllib.request.urlopen(f"{state.platform.rstrip('/')}/api/schema/", timeout=10) as response:
                checks.append({"name": "platform", "ok": response.status == 200, "detail": state.platform})
        except OSError as error:
            checks.append({"name": "platform", "ok": False, "detail": f"{state.platform}: {error}"})
    result = {"checks": checks, "passed": all(c["ok"] for c in checks), "inventory": found}
    if report and state.credential:
        PlatformClient(state.platform, state.credential).post("selftest/", {"checks": checks})
    return result
