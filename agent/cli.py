"""python -m agent {register,run,selftest,inventory,fleet}"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from . import inventory
from .daemon import Agent, register, selftest

DEFAULT_STATE_DIR = Path.home() / ".marketplace-agent"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent", description="Compute marketplace host agent")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="credential and local state")
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)

    reg = commands.add_parser("register", help="exchange a registration token for a host credential")
    reg.add_argument("--platform", required=True, help="e.g. https://market.example.com")
    reg.add_argument("--token", required=True)

    run = commands.add_parser("run", help="report inventory, heartbeat, run instances")
    run.add_argument("--runtime", choices=["process", "docker"], default="process")
    run.add_argument("--interval", type=float, default=10.0, help="seconds between heartbeats")
    run.add_argument("--inventory-file", help="declared inventory (JSON) instead of probing")
    run.add_argument("--once", action="store_true", help="one inventory report and one heartbeat, then exit")
    run.add_argument(
        "--log-interval", type=float, default=5.0, help="seconds between shipments of an instance's output"
    )
    run.add_argument(
        "--no-disk-quota",
        action="store_true",
        help="docker: do not cap each container's disk (for engines without storage quotas)",
    )

    test = commands.add_parser("selftest", help="check driver, accelerators, disk and platform")
    test.add_argument("--inventory-file")
    test.add_argument("--no-report", action="store_true")

    inv = commands.add_parser("inventory", help="print what this server has")
    inv.add_argument("--inventory-file")

    fleet = commands.add_parser("fleet", help="run several agents (simulated hosts) in one process")
    fleet.add_argument(
        "--config", type=Path, required=True, help="JSON: [{state_dir, platform, token, inventory_file}]"
    )
    fleet.add_argument("--interval", type=float, default=5.0)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )

    if args.command == "register":
        print(json.dumps(register(platform=args.platform, token=args.token, state_dir=args.state_dir)))
    elif args.command == "inventory":
        print(json.dumps(inventory.collect(inventory_file=args.inventory_file, data_dir=str(args.state_dir)), indent=2))
    elif args.command == "selftest":
        result = selftest(state_dir=args.state_dir, inventory_file=args.inventory_file, report=not args.no_report)
        print(json.dumps(result, indent=2))
        return 0 if result["passed"] else 1
    elif args.command == "run":
        agent = Agent(
            state_dir=args.state_dir,
            runtime_name=args.runtime,
            inventory_file=args.inventory_file,
            interval=args.interval,
            disk_quota=not args.no_disk_quota,
            log_interval=args.log_interval,
        )
        _stop_on_signals([agent])
        if args.once:
            agent.report_inventory()
            agent.run_once()
        else:
            agent.run()
    elif args.command == "fleet":
        return run_fleet(args.config, args.interval)
    return 0


def _stop_on_signals(agents: list[Agent]) -> None:
    def stop(signum, frame):
        for agent in agents:
            agent.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def run_fleet(config_path: Path, interval: float) -> int:
    """The demo: one agent per simulated host, each registered with its own token and state."""
    agents = []
    for entry in json.loads(config_path.read_text()):
        state_dir = Path(entry["state_dir"])
        if not (state_dir / "state.json").exists():
            register(platform=entry["platform"], token=entry["token"], state_dir=state_dir)
            selftest(state_dir=state_dir, inventory_file=entry.get("inventory_file"))
        agents.append(Agent(state_dir=state_dir, inventory_file=entry.get("inventory_file"), interval=interval))
    _stop_on_signals(agents)
    threads = [threading.Thread(target=agent.run, daemon=True, name=f"agent-{i}") for i, agent in enumerate(agents)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
