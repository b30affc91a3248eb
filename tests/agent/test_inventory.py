"""Inventory parsing from captured nvidia-smi output, and matching it against declarations."""

import json
from pathlib import Path

import pytest

from agent.inventory import parse_nvidia_smi_csv, parse_nvidia_smi_list
from suppliers.inventory import Declaration, inventory_differences, name_matches

FIXTURES = Path(__file__).parent / "fixtures"


def read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_one_h100_captured_from_a_real_machine():
    accelerators, driver = parse_nvidia_smi_csv(read("h100x1.csv"))
    assert driver == "580.159.04"
    assert accelerators == [
        {
            "index": 0,
            "uuid": "GPU-a5b0c36a-b698-9685-7ed4-d1714d6e7141",
            "name": "NVIDIA H100 80GB HBM3",
            "memory_mib": 81559,
            "power_limit_w": 700.0,
            "mig_mode": "Disabled",
            "pci_bus_id": "00000000:00:06.0",
            "utilization_pct": 0.0,
            "memory_used_mib": 0.0,
        }
    ]
    listed = parse_nvidia_smi_list(read("h100x1-L.txt"))
    assert [(d["index"], d["name"], d["mig"]) for d in listed] == [(0, "NVIDIA H100 80GB HBM3", [])]


def test_eight_a100s():
    accelerators, driver = parse_nvidia_smi_csv(read("a100x8.csv"))
    assert [a["index"] for a in accelerators] == list(range(8))
    assert {a["name"] for a in accelerators} == {"NVIDIA A100-SXM4-80GB"}
    assert {a["memory_mib"] for a in accelerators} == {81920}
    assert driver == "535.161.08"


def test_mig_mode_and_mig_devices():
    accelerators, _ = parse_nvidia_smi_csv(read("h100x2-mig.csv"))
    assert [a["mig_mode"] for a in accelerators] == ["Enabled", "Disabled"]
    assert accelerators[0]["utilization_pct"] is None  # [N/A] under MIG
    listed = parse_nvidia_smi_list(read("h100x2-mig-L.txt"))
    assert [m["profile"] for m in listed[0]["mig"]] == ["3g.40gb", "3g.40gb"]
    assert listed[1]["mig"] == []


def test_no_devices():
    assert parse_nvidia_smi_csv(read("none.txt")) == ([], None)
    assert parse_nvidia_smi_csv("") == ([], None)


def test_not_supported_values_become_none():
    (l4,), _ = parse_nvidia_smi_csv(read("l4-not-supported.csv"))
    assert (l4["power_limit_w"], l4["mig_mode"], l4["utilization_pct"]) == (None, None, None)
    assert l4["memory_mib"] == 23034


H100_HOST = Declaration(
    accelerator_kind="gpu",
    accelerator_names=("H100 80GB HBM3", "H100 SXM"),
    accelerator_count=1,
    accelerator_memory_gb=80,
    vcpus=16,
    ram_gb=120,
    disk_gb=200,
)


@pytest.mark.parametrize("fixture", ["h100x1-inventory-nvml.json", "h100x1-inventory-nvidia-smi.json"])
def test_real_h100_inventory_matches_its_declaration(fixture):
    inventory = json.loads(read(fixture))
    assert inventory["source"] in ("nvml", "nvidia-smi")
    assert inventory_differences(H100_HOST, inventory) == []


def test_contradictions_are_listed_exactly():
    inventory = json.loads(read("h100x1-inventory-nvml.json"))
    declared = Declaration("gpu", ("H100 PCIe",), 8, 80, 64, 1024, 100)
    fields = {d["field"]: (d["declared"], d["reported"]) for d in inventory_differences(declared, inventory)}
    assert fields == {
        "accelerator_count": (8, 1),
        "accelerator_model": ("H100 PCIe", "NVIDIA H100 80GB HBM3"),
        "vcpus": (64, 16),
        "ram_gb": (1024, 125),
    }


def test_selftest_captured_on_a_real_h100_passed():
    result = json.loads(read("h100x1-selftest.json"))
    assert result["passed"] is True
    assert {c["name"] for c in result["checks"]} == {"driver", "accelerators", "disk"}


def test_name_matching_ignores_case_and_punctuation():
    assert name_matches("NVIDIA A100-SXM4-80GB", ["A100 SXM4 80GB"])
    assert not name_matches("NVIDIA A100-SXM4-40GB", ["A100 SXM4 80GB"])
    assert name_matches("AMD EPYC 9654 96-Core Processor", ["EPYC 9654"])
