"""Does what the agent reports match what the supplier declared? Pure functions over plain data."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# The OS reports a little less RAM and disk than the hardware has (kernel reservations, GiB vs GB).
RAM_TOLERANCE = 0.90
DISK_TOLERANCE = 0.90
GPU_MEMORY_TOLERANCE = 0.90


@dataclass(frozen=True)
class Declaration:
    accelerator_kind: str  # gpu | dsa | cpu
    accelerator_names: tuple[str, ...]  # what drivers call the declared model
    accelerator_count: int  # accelerators, or CPU sockets on CPU hosts
    accelerator_memory_gb: int
    vcpus: int
    ram_gb: int
    disk_gb: int


# Where an agent's inventory came from. A file the supplier typed is a claim, not evidence: only a
# probe of the hardware (NVML, nvidia-smi; the OS for CPU-only hosts) can confirm a declaration.
PROBED_SOURCES = frozenset({"nvml", "nvidia-smi"})


def inventory_is_evidence(declared: Declaration, inventory: dict) -> bool:
    """Whether this inventory was measured on the host rather than typed into a file."""
    source = inventory.get("source")
    if declared.accelerator_kind == "cpu":
        return source != "file"
    return source in PROBED_SOURCES


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def name_matches(reported: str, known_names: Iterable[str]) -> bool:
    """True when the reported name contains every word of one of the known names (in any case)."""
    reported_words = set(_words(reported))
    return any(set(_words(name)) <= reported_words for name in known_names if _words(name))


def inventory_differences(declared: Declaration, inventory: dict) -> list[dict]:
    """Each way the inventory contradicts the declaration: [{field, declared, reported}]."""
    differences: list[dict] = []

    def differ(field: str, declared_value: object, reported_value: object) -> None:
        differences.append({"field": field, "declared": declared_value, "reported": reported_value})

    if declared.accelerator_kind != "cpu":
        accelerators = inventory.get("accelerators") or []
        if len(accelerators) != declared.accelerator_count:
            differ("accelerator_count", declared.accelerator_count, len(accelerators))
        names = sorted({a.get("name", "") for a in accelerators})
        if accelerators and not all(name_matches(n, declared.accelerator_names) for n in names):
            differ("accelerator_model", " / ".join(declared.accelerator_names), ", ".join(names))
        small = [
            a
            for a in accelerators
            if a.get("memory_mib") is not None
            and a["memory_mib"] / 1024 < declared.accelerator_memory_gb * GPU_MEMORY_TOLERANCE
        ]
        if small:
            differ("accelerator_memory_gb", declared.accelerator_memory_gb, round(small[0]["memory_mib"] / 1024))
    else:
        cpu_model = inventory.get("cpu_model") or ""
        if cpu_model and not name_matches(cpu_model, declared.accelerator_names):
            differ("accelerator_model", " / ".join(declared.accelerator_names), cpu_model)
    vcpus = inventory.get("vcpus")
    if vcpus is not None and vcpus < declared.vcpus:
        differ("vcpus", declared.vcpus, vcpus)
    ram = inventory.get("ram_gb")
    if ram is not None and ram < declared.ram_gb * RAM_TOLERANCE:
        differ("ram_gb", declared.ram_gb, ram)
    disk = inventory.get("disk_gb")
    if disk is not None and disk < declared.disk_gb * DISK_TOLERANCE:
        differ("disk_gb", declared.disk_gb, disk)
    return differences
