"""Prepare simulated host agents for the demo hosts: a registration token and a declared
inventory file per approved host, and the config `python -m agent fleet` runs from.

Idempotent: a host whose agent state still holds a valid credential keeps it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from suppliers.agent_services import hash_secret, host_registration_token_issue
from suppliers.models import Host, HostCredential


def declared_inventory(host: Host) -> dict:
    """What a healthy server matching the declaration reports."""
    model = host.accelerator_model
    name = (model.inventory_names or [model.name])[0]
    if model.kind == "cpu":
        accelerators, cpu_model = [], name
    else:
        accelerators = [
            {"index": i, "name": name, "uuid": f"SIM-{host.pk}-{i}", "memory_mib": model.memory_gb * 1024}
            for i in range(host.accelerator_count)
        ]
        cpu_model = "Simulated host CPU"
    return {
        "accelerators": accelerators,
        "cpu_model": cpu_model,
        "vcpus": host.vcpus,
        "ram_gb": host.ram_gb,
        "disk_gb": host.disk_gb,
        "driver_version": "simulated",
    }


class Command(BaseCommand):
    help = "Write var/agents/fleet.json for simulated agents on the approved demo hosts."

    def add_arguments(self, parser):
        parser.add_argument("--platform", default="http://127.0.0.1:8000")
        parser.add_argument("--out", default=str(Path(settings.BASE_DIR) / "var" / "agents"))

    def handle(self, *args, platform: str, out: str, **options):
        root = Path(out)
        root.mkdir(parents=True, exist_ok=True)
        fleet = []
        for host in Host.objects.filter(status=Host.Status.APPROVED).select_related("accelerator_model"):
            state_dir = root / f"host-{host.pk}"
            state_file = state_dir / "state.json"
            token = None
            if state_file.exists():
                credential = json.loads(state_file.read_text()).get("credential", "")
                valid = HostCredential.objects.active().filter(host=host, secret_hash=hash_secret(credential)).exists()
                if not valid:  # the database was reset: register again
                    shutil.rmtree(state_dir)
            if not state_file.exists():
                token = host_registration_token_issue(host=host, user=None)
            inventory_file = root / f"host-{host.pk}-inventory.json"
            inventory_file.write_text(json.dumps(declared_inventory(host), indent=1))
            fleet.append(
                {
                    "state_dir": str(state_dir),
                    "platform": platform,
                    "token": token,
                    "inventory_file": str(inventory_file),
                }
            )
        (root / "fleet.json").write_text(json.dumps(fleet, indent=1))
        self.stdout.write(f"{len(fleet)} simulated agents prepared in {root}")
