"""What this server has: accelerators (NVML, else nvidia-smi, else a declared file), CPU, RAM, disk."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path

from . import __version__

NVIDIA_SMI_FIELDS = (
    "index,uuid,name,memory.total,power.limit,driver_version,pci.bus_id,mig.mode.current,"
    "utilization.gpu,memory.used,temperature.gpu"
)
_MISSING = {"", "[n/a]", "n/a", "[not supported]", "not supported", "[unknown error]"}


def _number(value: str) -> float | None:
    value = value.strip()
    if value.lower() in _MISSING:
        return None
    try:
        return float(value.split()[0])
    except (ValueError, IndexError):
        return None


def parse_nvidia_smi_csv(text: str) -> tuple[list[dict], str | None]:
    """Parse `nvidia-smi --query-gpu=<NVIDIA_SMI_FIELDS> --format=csv,noheader,nounits`.

    Returns (accelerators, driver_version). "No devices were found" (or nothing) is no GPUs.
    """
    accelerators: list[dict] = []
    driver = None
    for row in csv.reader(io.StringIO(text)):
        cells = [c.strip() for c in row]
        if len(cells) < 8 or not cells[0].isdigit():
            continue  # blank lines, "No devices were found", warnings
        memory = _number(cells[3])
        power = _number(cells[4])
        mig = cells[7] if cells[7].lower() not in _MISSING else None
        accelerators.append(
            {
                "index": int(cells[0]),
                "uuid": cells[1],
                "name": cells[2],
                "memory_mib": int(memory) if memory is not None else None,
                "power_limit_w": power,
                "mig_mode": mig,
                "pci_bus_id": cells[6],
                "utilization_pct": _number(cells[8]) if len(cells) > 8 else None,
                "memory_used_mib": _number(cells[9]) if len(cells) > 9 else None,
            }
        )
        driver = driver or (cells[5] if cells[5].lower() not in _MISSING else None)
    return accelerators, driver


def parse_nvidia_smi_list(text: str) -> list[dict]:
    """Parse `nvidia-smi -L`: GPUs and, when MIG is on, their MIG devices."""
    devices: list[dict] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("GPU "):
            head, _, rest = stripped.partition(":")
            name, _, uuid = rest.partition("(UUID:")
            devices.append(
                {
                    "kind": "gpu",
                    "index": int(head.split()[1]),
                    "name": name.strip(),
                    "uuid": uuid.strip(" )"),
                    "mig": [],
                }
            )
        elif stripped.startswith("MIG ") and devices:
            profile = stripped.split()[1]
            uuid = stripped.partition("(UUID:")[2].strip(" )")
            devices[-1]["mig"].append({"profile": profile, "uuid": uuid})
    return devices


def _from_nvml() -> tuple[list[dict], str | None] | None:
    try:
        import pynvml  # noqa: PLC0415  (optional: nvidia-ml-py, only on GPU hosts)
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver
        return None
    try:

        def text(value):
            return value.decode() if isinstance(value, bytes) else value

        accelerators = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                mig_current, _ = pynvml.nvmlDeviceGetMigMode(handle)
                mig = "Enabled" if mig_current else "Disabled"
            except Exception:
                mig = None
            try:
                power = pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000
            except Exception:
                power = None
            accelerators.append(
                {
                    "index": index,
                    "uuid": text(pynvml.nvmlDeviceGetUUID(handle)),
                    "name": text(pynvml.nvmlDeviceGetName(handle)),
                    "memory_mib": memory.total // (1024 * 1024),
                    "power_limit_w": power,
                    "mig_mode": mig,
                }
            )
        return accelerators, text(pynvml.nvmlSystemGetDriverVersion())
    finally:
        pynvml.nvmlShutdown()


def _from_nvidia_smi() -> tuple[list[dict], str | None] | None:
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None
    try:
        out = subprocess.run(
            [binary, f"--query-gpu={NVIDIA_SMI_FIELDS}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_nvidia_smi_csv(out.stdout)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ram_gb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // (1024 * 1024)
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024**3


def _existing(path: str) -> str:
    """The nearest existing folder at or above `path` (the state dir may not exist yet)."""
    candidate = Path(path).absolute()
    while not candidate.exists():
        candidate = candidate.parent
    return str(candidate)


def collect(*, inventory_file: str | None = None, data_dir: str = "/") -> dict:
    """The inventory report. A declared file (JSON) wins when given: simulated and exotic hosts."""
    if inventory_file:
        declared = json.loads(Path(inventory_file).read_text())
        return {"source": "file", "hostname": socket.gethostname(), "agent_version": __version__, **declared}
    source, accelerators, driver = "none", [], None
    for name, probe in (("nvml", _from_nvml), ("nvidia-smi", _from_nvidia_smi)):
        found = probe()
        if found is not None:
            source, (accelerators, driver) = name, found
            break
    return {
        "source": source,
        "accelerators": accelerators,
        "driver_version": driver,
        "cpu_model": cpu_model(),
        "vcpus": os.cpu_count() or 0,
        "ram_gb": ram_gb(),
        "disk_gb": shutil.disk_usage(_existing(data_dir)).total // 1024**3,
        "hostname": socket.gethostname(),
        "agent_version": __version__,
    }


# --- Utilization: per device, sampled at each heartbeat ---------------------------------------

UTILIZATION_FIELDS = "index,utilization.gpu,memory.used"


def parse_utilization_csv(text: str) -> dict[int, tuple[float, float]]:
    """Parse `nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits`
    into {index: (utilization %, memory used MiB)}; rows with "[N/A]" or garbage are skipped."""
    readings: dict[int, tuple[float, float]] = {}
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 3 or not parts[0].isdigit():
            continue
        util, memory = _number(parts[1]), _number(parts[2])
        if util is not None and memory is not None and 0 <= util <= 100 and memory >= 0:
            readings[int(parts[0])] = (util, memory)
    return readings


def _utilization_from_nvml() -> dict[int, tuple[float, float]] | None:
    try:
        import pynvml  # noqa: PLC0415  (optional: nvidia-ml-py, only on GPU hosts)
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver
        return None
    try:
        readings = {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            readings[index] = (float(rates.gpu), memory.used / (1024 * 1024))
        return readings
    except Exception:
        return None
    finally:
        pynvml.nvmlShutdown()


def utilization() -> dict[int, tuple[float, float]]:
    """Each accelerator's utilization (%) and memory used (MiB) now: NVML, else nvidia-smi, else {}."""
    readings = _utilization_from_nvml()
    if readings is not None:
        return readings
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return {}
    try:
        out = subprocess.run(
            [binary, f"--query-gpu={UTILIZATION_FIELDS}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse_utilization_csv(out.stdout)


def instance_utilization(readings: dict[int, tuple[float, float]], devices: list[int]) -> dict[str, float]:
    """An instance's usage counters from its devices' readings: mean utilization, total memory used."""
    mine = [readings[d] for d in devices if d in readings]
    if not mine:
        return {}
    return {
        "accelerator_utilization_percent": round(sum(u for u, _ in mine) / len(mine), 1),
        "accelerator_memory_used_mib": round(sum(m for _, m in mine), 1),
    }
