"""Oversell trials: buyers race over HTTP for the last K slots of a host, against gunicorn and
PostgreSQL. Every trial must give exactly K orders and refuse the rest with a 409, and leave the
host's capacity identities true (allocated <= capacity, allocated + free = total, nothing listed).

    .venv/bin/python bench/oversell.py [--trials 20] [--buyers 50] [--slots 3] [--workers 4]
    .venv/bin/python bench/oversell.py --trials 10000          # the long form

Needs PostgreSQL: DATABASE_URL names the server (default postgres://postgres@127.0.0.1:5432/test);
the script creates its own database (`--database`, dropped at the end), migrates it, starts gunicorn
on it, and prints per-trial figures. Exits 1 on the first trial that is wrong.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SETTINGS = "marketplace.settings.local"


def database_url(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def recreate_database(server_url: str, name: str, *, drop_only: bool = False) -> None:
    with psycopg.connect(database_url(server_url, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            admin.execute(f'CREATE DATABASE "{name}"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict[str, str], port: int, workers: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "marketplace.wsgi", "-b", f"127.0.0.1:{port}"]
    command += ["-w", str(workers), "--threads", "4", "--log-level", "warning"]
    log = ROOT / "var" / "oversell-gunicorn.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/v1/instance-types/", timeout=10).status_code == 200:
                return process
        except requests.RequestException:
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"gunicorn did not come up; see {log}")


def race(url: str, keys: list[str], offer_id: int) -> list[tuple[int, str]]:
    """Every buyer orders the offer at the same moment; returns (status, code) per buyer."""
    barrier = threading.Barrier(len(keys))
    results: list[tuple[int, str]] = [(0, "")] * len(keys)

    def buyer(i: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {keys[i]}"
        barrier.wait()
        response = session.post(f"{url}/api/v1/orders/", json={"offer": offer_id, "image": "ubuntu:24.04"}, timeout=60)
        code = response.json().get("code", "") if response.status_code >= 400 else ""
        results[i] = (response.status_code, code)

    threads = [threading.Thread(target=buyer, args=(i,)) for i in range(len(keys))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def capacity_problems(host) -> list[str]:
    """What is wrong with the host's capacity after a trial (empty when the identities hold)."""
    # Project modules are imported once Django is set up on the trial database (see `main`).
    from marketplace import capacity
    from marketplace.models import Offer
    from suppliers.offers import host_allocated_claims, host_capacity_spec, host_carriable_types

    problems = []
    spec = host_capacity_spec(host)
    allocated = capacity.total(host_allocated_claims(host))
    limit = capacity.effective_capacity(spec)
    for dimension, used in allocated.amounts.items():
        if used > limit[dimension]:
            problems.append(f"{dimension}: {used} allocated of {limit[dimension]}")
    carriable = host_carriable_types(host)
    for offer in Offer.objects.filter(host=host).select_related("instance_type"):
        if offer.available_count != carriable.get(offer.instance_type, 0):
            problems.append(f"offer {offer.instance_type.name} lists {offer.available_count}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--buyers", type=int, default=50)
    parser.add_argument("--slots", type=int, default=3, help="K: the slots left on each trial's host")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--database", default="oversell_trials")
    args = parser.parse_args()

    server = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    if not server.startswith("postgres"):
        raise SystemExit("the trials need PostgreSQL: set DATABASE_URL to a PostgreSQL server")
    recreate_database(server, args.database)
    env = {**os.environ, "DATABASE_URL": database_url(server, args.database), "DJANGO_SETTINGS_MODULE": SETTINGS}
    env.pop("REDIS_URL", None)  # orders need no cache or broker; keep the trials to the database
    os.environ.update({k: v for k, v in env.items() if k in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")})
    os.environ.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)

    import django  # set up only now: DATABASE_URL names the database this script just created

    django.setup()
    from accounts.services import api_key_issue
    from marketplace.services import catalog_sync
    from orders.models import Instance
    from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data

    catalog_sync()
    organization = OrganizationFactory(name="Oversell Trials Compute")
    buyers = [UserFactory(email=f"racer{i}@example.com", credit=10**6) for i in range(args.buyers)]
    keys = [api_key_issue(user=b, name="oversell").key for b in buyers]
    port = free_port()
    gunicorn = start_gunicorn(env, port, args.workers)
    url = f"http://127.0.0.1:{port}"
    durations, failures = [], 0
    try:
        for trial in range(1, args.trials + 1):
            k = args.slots
            host = HostFactory(
                organization=organization,
                name=f"race-{trial}",
                **l4_host_data(accelerator_count=k, vcpus=8 * k, ram_gb=48 * k, price_per_unit_hour=Decimal("0.40")),
            )
            offer = host.offers.get(instance_type__name="l4-24g.1x")
            assert offer.available_count == k, f"the host offers {offer.available_count}, not {k}"
            started = time.perf_counter()
            results = race(url, keys, offer.pk)
            durations.append(time.perf_counter() - started)
            won = sum(status == 201 for status, _ in results)
            refused = {code for status, code in results if status != 201}
            wrong = [r for r in results if r[0] not in (201, 409)]
            problems = capacity_problems(host)
            placed = Instance.objects.filter(host=host).count()
            if won != k or placed != k or wrong or problems:
                failures += 1
                print(f"trial {trial}: {won} orders won, {placed} placed of {k}; other answers {wrong[:3]}; {problems}")
                return 1
            if trial % max(1, args.trials // 10) == 0 or trial == args.trials:
                print(f"trial {trial:>6}: {won}/{k} won, {len(results) - won} refused ({', '.join(sorted(refused))})")
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        recreate_database(server, args.database, drop_only=True)
    median = statistics.median(durations) * 1000
    p95 = sorted(durations)[max(0, int(len(durations) * 0.95) - 1)] * 1000
    print(
        f"{args.trials} trials x {args.buyers} buyers for {args.slots} slots: exactly {args.slots} won every trial; "
        f"race median {median:.0f} ms, p95 {p95:.0f} ms ({args.workers} gunicorn workers)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
