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
   does the same locking and writes (see RAW_* below). Prints orders/s, median and p95 of each, and
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
import contextlib
import functools
import http.client
import json
import math
import os
import secrets
import shutil
import signal
import socket
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
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ORDERS_PATH = "/api/v1/orders/"
READY_PATH = "/api/v1/offers/?page_size=1"
IMAGE = "bench:1"
RAW_IMAGE = "bench-raw:1"  # marks the raw baseline's rows, deleted after each raw phase
WORKER_QUEUES = "billing;agents,notifications,external,celery"
HOT_TYPE = "cpu.2x"
STOP = threading.Event()  # Ctrl-C: every client thread ends its loop


# --- The raw baseline ----------------------------------------------------------------------------
# One order, as placement does its locking and writing, with nothing else: lock the buyer row, pick
# the cheapest listed offer of the type whose host row is not locked (FOR UPDATE OF the host, SKIP
# LOCKED), decrement that offer's available_count, and insert a minimal valid order, instance and
# allocation (the instance type's claim) into the real orders tables; commit. What placement does
# besides (capacity maths under the lock, spend and funds guards, events, the agent's command, the
# rewrite of all of the host's offers, the idempotency record, serialization) is what the ratio
# measures. When every offer of the type is sold, they are refilled to their counts at generation,
# so the baseline never runs out; after each raw phase its rows are deleted and the offers of the
# hosts it touched are derived again from their allocations, so the API phases and the final check
# see only what the API did.

RAW_LOCK_BUYER = "SELECT id FROM accounts_user WHERE id = %s FOR UPDATE"
RAW_PICK_OFFER = """
    SELECT o.id, o.host_id FROM marketplace_offer o JOIN suppliers_host h ON h.id = o.host_id
    WHERE o.instance_type_id = %s AND o.available_count > 0 AND o.verified
      AND (o.listed_until IS NULL OR o.listed_until > now())
    ORDER BY o.price_per_hour, o.energy_kwh_per_hour, o.host_id
    LIMIT 1 FOR UPDATE OF h SKIP LOCKED"""
RAW_ANY_LISTED = "SELECT 1 FROM marketplace_offer WHERE instance_type_id = %s AND available_count > 0 LIMIT 1"
RAW_REFILL = """
    UPDATE marketplace_offer o SET available_count = l.available_count, updated_at = now()
    FROM bench_listed l WHERE l.offer_id = o.id AND o.instance_type_id = %s"""
RAW_LOCK_HOST = "SELECT id FROM suppliers_host WHERE id = %s FOR UPDATE"
RAW_TAKE = """
    UPDATE marketplace_offer o
    SET available_count = CASE WHEN o.available_count > 0 THEN o.available_count ELSE l.available_count END - 1,
        updated_at = now()
    FROM bench_listed l, suppliers_host h
    WHERE o.id = %s AND l.offer_id = o.id AND h.id = o.host_id
    RETURNING o.price_per_hour, h.storage_price_per_gb_month"""
RAW_INSERT_ORDER = """
    INSERT INTO orders_order (buyer_id, instance_type_id, count, pricing, same_host, image, command, ports,
                              environment, total_price_per_hour, created_at)
    VALUES (%s, %s, 1, 'on_demand', false, %s, '', '[]', '[]', %s, now()) RETURNING id"""
RAW_INSERT_INSTANCE = """
    INSERT INTO orders_instance (order_id, buyer_id, host_id, instance_type_id, pricing, price_per_hour, status,
                                 image, command, authorized_keys, disk_gb, without_accelerators,
                                 storage_price_per_gb_month, created_at, updated_at)
    VALUES (%s, %s, %s, %s, 'on_demand', %s, 'provisioning', %s, '', '', %s, false, %s, now(), now())
    RETURNING id"""
RAW_INSERT_ALLOCATION = """
    INSERT INTO orders_allocation (host_id, instance_id, instance_type_id, kind, accelerators, vcpus, ram_gb,
                                   disk_gb, created_at)
    VALUES (%s, %s, %s, 'running', %s, %s, %s, %s, now())"""


@dataclass(frozen=True)
class InstanceTypeInfo:
    id: int
    name: str
    accelerators: int
    vcpus: int
    ram_gb: int
    disk_gb: int
    listed: int  # instances of it on sale when the market was generated


@dataclass(frozen=True)
class Buyer:
    id: int
    key: str


@dataclass(frozen=True)
class Market:
    buyers: list[Buyer]
    types: list[InstanceTypeInfo]  # most listed capacity first (the hot host left out)
    hot_host_id: int
    hot_offer_id: int
    hot_type: InstanceTypeInfo


def raw_write(conn: psycopg.Connection, buyer_id: int, itype: InstanceTypeInfo, offer_id: int, host_id: int) -> None:
    """Under the host lock: take one of the offer (refilled when sold out), insert order, instance, allocation."""
    price, storage_price = conn.execute(RAW_TAKE, (offer_id,)).fetchone()  # type: ignore[misc]
    (order_id,) = conn.execute(RAW_INSERT_ORDER, (buyer_id, itype.id, RAW_IMAGE, price)).fetchone()  # type: ignore[misc]
    (instance_id,) = conn.execute(  # type: ignore[misc]
        RAW_INSERT_INSTANCE,
        (order_id, buyer_id, host_id, itype.id, price, RAW_IMAGE, itype.disk_gb, storage_price),
    ).fetchone()
    conn.execute(
        RAW_INSERT_ALLOCATION,
        (host_id, instance_id, itype.id, itype.accelerators, itype.vcpus, itype.ram_gb, itype.disk_gb),
    )


def raw_order(conn: psycopg.Connection, buyer_id: int, itype: InstanceTypeInfo, refilled: set[int]) -> None:
    """One raw order of `itype` on the cheapest unlocked host that lists it."""
    while True:
        with conn.transaction():
            conn.execute(RAW_LOCK_BUYER, (buyer_id,))
            row = conn.execute(RAW_PICK_OFFER, (itype.id,)).fetchone()
            if row is not None:
                raw_write(conn, buyer_id, itype, offer_id=row[0], host_id=row[1])
                return
        # Nothing written: every listing host is locked by another thread (retry), or none is left (refill).
        if conn.execute(RAW_ANY_LISTED, (itype.id,)).fetchone() is None:
            conn.execute(RAW_REFILL, (itype.id,))
            refilled.add(itype.id)


def raw_hot_order(conn: psycopg.Connection, buyer_id: int, market: Market) -> None:
    """One raw order of the hot host's pinned offer."""
    with conn.transaction():
        conn.execute(RAW_LOCK_BUYER, (buyer_id,))
        conn.execute(RAW_LOCK_HOST, (market.hot_host_id,))
        raw_write(conn, buyer_id, market.hot_type, offer_id=market.hot_offer_id, host_id=market.hot_host_id)


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


def describe_market(hosts: int) -> str:
    from django.db import connection

    from marketplace.models import Offer

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (version,) = cursor.fetchone()
    offers = Offer.objects.count()
    listed = Offer.objects.filter(available_count__gt=0).count()
    return (
        f"PostgreSQL {version}, {os.cpu_count()} CPUs: {hosts} hosts (+1 hot host), {offers} offers ({listed} listed)"
    )


def build_market(hosts: int, buyers: int) -> Market:
    from django.db import connection
    from django.db.models import Sum

    from accounts.models import User
    from accounts.services import api_key_issue
    from bench.market import generate
    from marketplace.models import AcceleratorModel, InstanceType, Offer
    from marketplace.services import catalog_sync
    from tests.factories import HostFactory, OrganizationFactory, UserFactory

    catalog_sync()
    generate(hosts)
    hot = HostFactory(
        organization=OrganizationFactory(name="Bench Hot Host Compute"),
        name="bench-hot",
        accelerator_model=AcceleratorModel.objects.get(slug="epyc-9654"),
        accelerator_count=22,  # sockets: 22 x 192 threads >= 4,096 vCPUs
        vcpus=4096,
        ram_gb=4096 * 4,
        disk_gb=4096 * 20,
        price_per_unit_hour=Decimal("0.01"),
    )
    people = [UserFactory(email=f"bench-orders-{i}@example.com", credit=10**9) for i in range(buyers)]
    User.objects.filter(pk__in=[p.pk for p in people]).update(spend_limit_per_hour=Decimal("999999999"))
    keys = [Buyer(p.pk, api_key_issue(user=p, name="bench").key) for p in people]
    with connection.cursor() as cursor:  # the counts the raw baseline refills sold-out offers to
        cursor.execute("CREATE TABLE bench_listed AS SELECT id AS offer_id, available_count FROM marketplace_offer")
        cursor.execute("ALTER TABLE bench_listed ADD PRIMARY KEY (offer_id)")
        cursor.execute("ANALYZE")  # planner statistics: autovacuum may be off or behind

    def info(instance_type: InstanceType, listed: int) -> InstanceTypeInfo:
        return InstanceTypeInfo(
            instance_type.pk,
            instance_type.name,
            instance_type.accelerator_count,
            instance_type.vcpus,
            instance_type.ram_gb,
            instance_type.disk_gb,
            listed,
        )

    listed = (
        Offer.objects.filter(available_count__gt=0, verified=True)
        .exclude(host=hot)
        .values("instance_type")
        .annotate(left=Sum("available_count"))
        .order_by("-left", "instance_type__name")
    )
    types = {t.pk: t for t in InstanceType.objects.all()}
    hot_offer = Offer.objects.get(host=hot, instance_type__name=HOT_TYPE)
    return Market(
        buyers=keys,
        types=[info(types[row["instance_type"]], row["left"]) for row in listed],
        hot_host_id=hot.pk,
        hot_offer_id=hot_offer.pk,
        hot_type=info(hot_offer.instance_type, hot_offer.available_count),
    )


def raw_reset(refilled: set[int]) -> None:
    """Delete the raw phase's rows, then derive again the offers of the hosts it touched."""
    from django.db import connection, transaction

    from suppliers.locks import host_lock
    from suppliers.offers import offers_refresh_for_host

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT host_id FROM orders_instance WHERE image = %s"
            " UNION SELECT host_id FROM marketplace_offer WHERE instance_type_id = ANY(%s)",
            [RAW_IMAGE, sorted(refilled)],
        )
        host_ids = sorted(row[0] for row in cursor.fetchall())
        cursor.execute(
            "DELETE FROM orders_allocation WHERE instance_id IN (SELECT id FROM orders_instance WHERE image = %s)",
            [RAW_IMAGE],
        )
        cursor.execute("DELETE FROM orders_instance WHERE image = %s", [RAW_IMAGE])
        cursor.execute("DELETE FROM orders_order WHERE image = %s", [RAW_IMAGE])
    for host_id in host_ids:
        with transaction.atomic():
            offers_refresh_for_host(host=host_lock(host_id=host_id))
    refilled.clear()
    with connection.cursor() as cursor:  # the next phase should not wade through the deleted rows
        cursor.execute("VACUUM ANALYZE orders_order, orders_instance, orders_allocation, marketplace_offer")


def capacity_check() -> tuple[list[str], list[str]]:
    """(oversold hosts, hosts whose offers differ from what they can carry), as tests/test_invariants.py
    checks them: active allocations fit the host's effective capacity on every dimension."""
    from marketplace import capacity
    from marketplace.models import Offer
    from suppliers.models import Host
    from suppliers.offers import host_allocated_claims, host_capacity_spec, host_carriable_types, host_is_sellable

    oversold: list[str] = []
    stale: list[str] = []
    for host in Host.objects.select_related("accelerator_model", "organization", "region", "zone"):
        allocated = capacity.total(host_allocated_claims(host))
        limit = capacity.effective_capacity(host_capacity_spec(host))
        over = [f"{dim} {used} > {limit[dim]}" for dim, used in allocated.amounts.items() if used > limit[dim]]
        if over:
            oversold.append(f"{host.name}: {', '.join(over)}")
        offers = {o.instance_type_id: o.available_count for o in Offer.objects.filter(host=host)}
        if host_is_sellable(host):
            wrong = any(offers.get(t.pk, count) != count for t, count in host_carriable_types(host).items())
        else:
            wrong = any(offers.values())
        if wrong:
            stale.append(host.name)
    return oversold, stale


def free_port_pair(start: int) -> int:
    """The first port from `start` such that it and the next are free on 127.0.0.1."""
    for port in range(start, start + 2000, 2):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no two free ports from {start}")


def profile_environment(db_url: str, redis_url: str, port: int) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {**os.environ}
    for name in ("DATABASE_REPLICA_URL", "DATABASE_OWNER_URL", "DEBUG"):
        env.pop(name, None)  # this run's database only
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        DJANGO_SETTINGS_MODULE="marketplace.settings.production",
        ROLES="web workers",
        WEB_PROCESSES="2",
        WEB_PORT=str(port),
        WORKER_QUEUES=WORKER_QUEUES,
        # Secrets generated for this run; values of the shape the production checks accept.
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        STRIPE_SECRET_KEY=f"sk_live_bench{secrets.token_hex(16)}",
        STRIPE_WEBHOOK_SECRET=f"whsec_bench{secrets.token_hex(16)}",
        ENVIRONMENT_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        SECURE_SSL_REDIRECT="false",  # plain HTTP on 127.0.0.1, no TLS proxy in front
    )
    return env


def profile_start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            ["bash", "scripts/production.sh"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole at the end
        )


def request(port: int, method: str, path: str, key: str, body: dict[str, Any] | None = None) -> int:
    """One request with a fresh connection; returns the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def profile_wait(profile: subprocess.Popen[bytes], ports: list[int], market: Market, log: Path) -> None:
    """Until every web process answers an authenticated offer search with 200; then a few quotes on
    each, so that the first measured orders do not pay for loading the code they run."""
    deadline = time.monotonic() + 180
    key = market.buyers[0].key
    for port in ports:
        while True:
            if profile.poll() is not None:
                raise RuntimeError(f"the production profile stopped; see {log} and var/log/web-{port}.err")
            if time.monotonic() > deadline:
                raise RuntimeError(f"web :{port} did not answer in time; see var/log/web-{port}.err")
            try:
                status = request(port, "GET", READY_PATH, key)
            except OSError:
                time.sleep(0.5)
                continue
            if status != 200:
                raise RuntimeError(f"web :{port} answers {status}; see var/log/web-{port}.err")
            break
        for itype in market.types[:4]:
            request(port, "POST", "/api/v1/quotes/", key, {"instance_type": itype.name})


def profile_stop(profile: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the profile's process group, then wait for all of it (SIGKILL after 60 s)."""
    pgid = profile.pid  # start_new_session: the group this script started, led by the shell
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        profile.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        profile.wait(timeout=10)


# --- The run --------------------------------------------------------------------------------------


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
