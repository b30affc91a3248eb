"""Benchmark: concurrent orders through the REST API of the production profile, against raw SQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python bench/concurrent_orders.py [--hosts 500] [--clients 16,32] [--seconds 20]

DATABASE_URL names a PostgreSQL server: the script creates a throwaway database on it
(`bench_orders_<random>`), migrates it, loads the catalog, generates a market of `--hosts` approved
hosts (as bench/market.py does) plus one big "hot" CPU host, and one buyer with ample credit and an
API key per client. It then starts the production profile on that database (`scripts/production.sh`:
two gunicorn processes and the Celery workers, in their own process group) and measures:

1. Concurrent orders: for each client count N in --clients, N threads, each a buyer of its own
   ordering 1 instance of its own instance type (client i takes the i-th of the types with the most
   listed capacity, round-robin) with `POST /api/v1/orders/` for --seconds, alternating the two web
   processes. Against it, the raw baseline: N psycopg threads running the minimal transaction that
   does the same locking and writes (bench/raw_orders.py). Prints orders/s, median and p95 of each, and
   the ratios API/raw throughput (target >= 30%) and API/raw p95 (target <= 3x).
2. A hot host: --hot-clients (32) clients all ordering the same pinned offer (`"offer": id`) of one
   host, against as many threads of `SELECT ... FROM suppliers_host WHERE id = %s FOR UPDATE` plus the
   same minimal write. Prints the throughput ratio (target >= 50%). The hot host is an EPYC host of
   4,096 vCPUs sold as cpu.2x, 2,048 instances, so that a phase does not sell it out.
3. No oversell: after all phases (the raw rows removed), the active allocations of every host fit its
   capacity (`marketplace.capacity`, as tests/test_invariants.py checks it). Exits 1 otherwise.

Latencies are of successful orders (201, or a committed raw transaction). A phase whose orders ran
out of capacity says so: use more --hosts or fewer --seconds. The database is dropped and the
profile stopped at the end, also on failure or Ctrl-C. Logs of the profile are in var/log/.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import math
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from order_market import build_market, capacity_check, describe_market  # noqa: E402
from profile_process import (  # noqa: E402
    WORKER_QUEUES,
    free_port_pair,
    profile_environment,
    profile_start,
    profile_stop,
    profile_wait,
)
from raw_orders import Market, raw_hot_order, raw_order, raw_reset  # noqa: E402

ORDERS_PATH = "/api/v1/orders/"
IMAGE = "bench:1"
STOP = threading.Event()  # Ctrl-C: every client thread ends its loop


# --- Phases: N client threads for a fixed time ----------------------------------------------------


@dataclass(frozen=True)
class Sample:
    ms: float
    status: int  # HTTP status; 201 for a committed raw transaction, 0 when no response came
    code: str = ""  # the error's code, or what went wrong


@dataclass
class Phase:
    """One measured phase: its clients start together and run until `deadline`."""

    clients: int
    deadline: float = 0.0
    elapsed: float = 0.0
    samples: list[list[Sample]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.samples = [[] for _ in range(self.clients)]
        self.ready = threading.Barrier(self.clients + 1)
        self.go = threading.Event()

    def start(self) -> None:
        """Called by each client once connected: returns when all are, and the clock runs."""
        self.ready.wait(timeout=120)
        self.go.wait()

    def running(self) -> bool:
        return not STOP.is_set() and time.monotonic() < self.deadline

    @property
    def all(self) -> list[Sample]:
        return [s for per_client in self.samples for s in per_client]

    @property
    def ok(self) -> list[float]:
        return sorted(s.ms for s in self.all if s.status == 201)

    @property
    def rate(self) -> float:
        return len(self.ok) / self.elapsed if self.elapsed else 0.0

    @property
    def median(self) -> float:
        ok = self.ok
        return statistics.median(ok) if ok else math.nan

    @property
    def p95(self) -> float:
        ok = self.ok
        return ok[math.ceil(len(ok) * 0.95) - 1] if ok else math.nan


# A client: connects, calls phase.start(), then orders while phase.running(), appending to its samples.
Client = Callable[[Phase, list[Sample]], None]


def run_phase(seconds: float, clients: list[Client]) -> Phase:
    phase = Phase(len(clients))

    def run(i: int) -> None:
        try:
            clients[i](phase, phase.samples[i])
        except threading.BrokenBarrierError:
            pass
        except Exception as exc:
            phase.failures.append(f"client {i}: {exc!r}")
            phase.ready.abort()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    try:
        phase.ready.wait(timeout=120)
    except threading.BrokenBarrierError:
        raise RuntimeError(f"clients failed to start: {phase.failures[:3]}") from None
    started = time.monotonic()
    phase.deadline = started + seconds
    phase.go.set()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)
    phase.elapsed = time.monotonic() - started
    if phase.failures:
        raise RuntimeError(f"clients failed: {phase.failures[:3]}")
    return phase


def post_order(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """POST one order; a keep-alive connection the server closed is reopened once (the same
    Idempotency-Key makes the retry safe). Returns (status, error code or text)."""
    for attempt in range(2):
        try:
            conn.request("POST", ORDERS_PATH, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (http.client.HTTPException, OSError) as exc:
            conn.close()
            if attempt:
                return 0, repr(exc)
            continue
        if response.status == 201:
            return 201, ""
        try:
            return response.status, str(json.loads(data).get("code", ""))
        except (ValueError, AttributeError):
            return response.status, data[:200].decode(errors="replace")
    raise AssertionError("unreachable")


def api_client(ports: list[int], key: str, order: dict[str, Any], first: int) -> Client:
    """A buyer ordering `order` over and over, alternating the web processes (from ports[first])."""
    body = json.dumps({**order, "count": 1, "image": IMAGE}).encode()

    def client(phase: Phase, samples: list[Sample]) -> None:
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for port in ports]
        try:
            phase.start()
            n = first
            while phase.running():
                headers = {
                    "Authorization": f"Bearer {key}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": f"bench-{uuid.uuid4().hex}",
                }
                started = time.perf_counter()
                status, code = post_order(connections[n % len(connections)], body, headers)
                samples.append(Sample((time.perf_counter() - started) * 1000, status, code))
                n += 1
        finally:
            for conn in connections:
                conn.close()

    return client


def raw_client(dsn: str, order: Callable[[psycopg.Connection], None]) -> Client:
    """A thread with its own connection running `order` over and over."""

    def client(phase: Phase, samples: list[Sample]) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            phase.start()
            while phase.running():
                started = time.perf_counter()
                order(conn)
                samples.append(Sample((time.perf_counter() - started) * 1000, 201))

    return client


def report(label: str, phase: Phase) -> None:
    samples = phase.all
    outcomes = Counter(
        "ok" if s.status == 201 else "out of capacity" if s.code == "insufficient_capacity" else str(s.status)
        for s in samples
    )
    other = ", ".join(f"{n} x {outcome}" for outcome, n in sorted(outcomes.items()) if outcome != "ok")
    print(
        f"  {label:<36} {phase.rate:8.1f} orders/s   median {phase.median:8.1f} ms   p95 {phase.p95:8.1f} ms"
        f"   ({outcomes['ok']} ok{', ' + other if other else ''})"
    )
    if outcomes["out of capacity"]:
        print("    note: capacity ran out during this phase (use more --hosts or fewer --seconds)")
    errors = Counter(f"{s.status} {s.code}" for s in samples if s.status not in (201, 409))
    conflicts = Counter(s.code for s in samples if s.status == 409 and s.code != "insufficient_capacity")
    for text, n in [*errors.most_common(5), *conflicts.most_common(5)]:
        print(f"    {n} x {text}")


def compare(api: Phase, raw: Phase, *, throughput_target: float, p95_target: float | None) -> None:
    throughput = api.rate / raw.rate if raw.rate else math.nan
    line = f"  API / raw throughput {throughput:7.1%} (target >= {throughput_target:.0%})"
    if p95_target is not None:
        line += f"   API p95 / raw p95 {api.p95 / raw.p95:6.1f}x (target <= {p95_target:g}x)"
    print(line)


# --- The database, the market, the production profile --------------------------------------------


def database_url(server_url: str, name: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def admin_execute(server_url: str, sql: str) -> None:
    with psycopg.connect(database_url(server_url, "postgres"), autocommit=True) as admin:
        admin.execute(sql)


def setup_django(db_url: str) -> Path:
    """Django in this process, on the bench database: to generate the market, reset after raw phases
    and check capacity (the test settings: fast password hashing). Returns its media folder."""
    os.environ["DATABASE_URL"] = db_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "marketplace.settings.test"
    import django
    from django.conf import settings

    django.setup()
    return Path(settings.MEDIA_ROOT)


def remove_test_media(path: Path) -> None:
    """The test settings make a media folder per process (tempfile.mkdtemp): remove this one's."""
    if path.parent == Path(tempfile.gettempdir()) and path.name.startswith("marketplace-test-media-"):
        shutil.rmtree(path, ignore_errors=True)


def measure(args: argparse.Namespace, market: Market, ports: list[int], dsn: str) -> None:
    buyers = market.buyers
    refilled: set[int] = set()
    for n in args.clients:
        types = [market.types[i % len(market.types)] for i in range(n)]
        print(f"\n{n} clients, {args.seconds:g} s, each its own buyer and instance type")
        api = run_phase(
            args.seconds, [api_client(ports, buyers[i].key, {"instance_type": types[i].name}, i) for i in range(n)]
        )
        report("API  POST /api/v1/orders/", api)
        raw = run_phase(
            args.seconds,
            [
                raw_client(dsn, functools.partial(raw_order, buyer_id=buyers[i].id, itype=types[i], refilled=refilled))
                for i in range(n)
            ],
        )
        report("raw  psycopg transaction", raw)
        raw_reset(refilled)
        compare(api, raw, throughput_target=0.30, p95_target=3)

    n = args.hot_clients
    print(f"\nhot host: {n} clients, {args.seconds:g} s, all ordering one host's {market.hot_type.name} offer")
    api = run_phase(
        args.seconds, [api_client(ports, buyers[i].key, {"offer": market.hot_offer_id}, i) for i in range(n)]
    )
    report("API  POST /api/v1/orders/ (offer)", api)
    raw = run_phase(
        args.seconds,
        [raw_client(dsn, functools.partial(raw_hot_order, buyer_id=buyers[i].id, market=market)) for i in range(n)],
    )
    report("raw  host FOR UPDATE + writes", raw)
    raw_reset(refilled)
    compare(api, raw, throughput_target=0.50, p95_target=None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--clients", type=lambda s: [int(n) for n in s.split(",")], default=[16, 32], help="e.g. 16,32")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--hot-clients", type=int, default=32)
    parser.add_argument("--port", type=int, default=18001, help="first of the web ports to try")
    args = parser.parse_args()

    server = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not server.startswith("postgres") or not redis_url.startswith("redis"):
        raise SystemExit(
            "set DATABASE_URL (a PostgreSQL server) and REDIS_URL (Redis): the production profile needs both"
        )
    name = f"bench_orders_{secrets.token_hex(4)}"
    db_url = database_url(server, name)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a TERM cleans up as Ctrl-C does
    profile: subprocess.Popen[bytes] | None = None
    media_root: Path | None = None
    try:
        admin_execute(server, f'CREATE DATABASE "{name}"')
        env = {**os.environ, "DATABASE_URL": db_url, "DJANGO_SETTINGS_MODULE": "marketplace.settings.local"}
        env["DEBUG"] = "false"
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        media_root = setup_django(db_url)
        started = time.perf_counter()
        market = build_market(args.hosts, max([*args.clients, args.hot_clients]))
        print(f"{describe_market(args.hosts)}; generated in {time.perf_counter() - started:.0f} s")
        print("instance types by listed capacity: " + ", ".join(f"{t.name} ({t.listed})" for t in market.types[:8]))

        port = free_port_pair(args.port)
        ports = [port, port + 1]
        log = ROOT / "var" / "log" / f"{name}-profile.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        profile = profile_start(profile_environment(db_url, redis_url, port), log)
        profile_wait(profile, ports, market, log)
        print(f"production profile: web :{ports[0]} :{ports[1]} (gunicorn), Celery workers {WORKER_QUEUES}")

        measure(args, market, ports, db_url)

        oversold, stale = capacity_check()
        print(f"\noversold hosts: {len(oversold)}")
        for line in oversold[:10]:
            print(f"  {line}")
        if stale:
            print(f"hosts whose offers differ from what they can carry: {len(stale)} ({', '.join(stale[:5])})")
        return 1 if oversold else 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        STOP.set()
        if profile is not None:
            profile_stop(profile)
        if media_root is not None:
            from django.db import connections

            connections.close_all()
            remove_test_media(media_root)
        admin_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
