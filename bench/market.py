"""Benchmark: offer search, quotes and order placement on a generated market.

    .venv/bin/python bench/market.py [--hosts 500] [--repeat 30]

Uses a throwaway test database (SQLite in memory by default; PostgreSQL with DATABASE_URL).
Prints median/p95 milliseconds, each beside its baseline: offer search against the same rows read
by plain SQL, quotes against the SQL that selects their candidate offers, an order against a raw
psycopg transaction doing its locking and writes (`raw_orders.py`, PostgreSQL only). On PostgreSQL
the market is generated in SQL from templates placed by the services (`sql_market.py`), so
5,000 and 20,000 hosts take seconds; on SQLite every host goes through the services.
"""

from __future__ import annotations

import argparse
import statistics
import time
from decimal import Decimal

from throwaway import throwaway_database  # also puts the project on the path and picks the test settings


def timed(fn, repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def sql_run(connection, sql: str, params: list | None = None):
    """A function that runs `sql` and reads every row: a baseline to time."""

    def run() -> None:
        with connection.cursor() as cursor:
            cursor.execute(sql, params or [])
            cursor.fetchall()

    return run


def report(name: str, samples: list[float]) -> float:
    samples = sorted(samples)
    median = statistics.median(samples)
    p95 = samples[max(0, int(len(samples) * 0.95) - 1)]
    print(f"{name:<48} median {median:8.2f} ms   p95 {p95:8.2f} ms")
    return median


def generate(hosts: int):
    import random

    from marketplace.models import AcceleratorModel, Region
    from suppliers.hosts import host_approve, host_create
    from tests.factories import OrganizationFactory, UserFactory, host_data

    random.seed(7)
    gpus = list(AcceleratorModel.objects.exclude(kind="cpu"))
    regions = list(Region.objects.all())
    organizations = [OrganizationFactory() for _ in range(max(1, hosts // 50))]

    for i in range(hosts):
        model = random.choice(gpus)
        count = random.choice([1, 2, 4, 8])
        organization = organizations[i % len(organizations)]
        owner = organization.memberships.get().user
        host = host_create(
            user=owner,
            **host_data(
                name=f"bench-{i}",
                accelerator_model=model,
                accelerator_count=count,
                vcpus=model.vcpus_per_unit * count * 2,
                ram_gb=model.ram_gb_per_unit * count * 2,
                disk_gb=model.disk_gb_per_unit * count * 2,
                region=random.choice(regions),
                zone=None,
                price_per_unit_hour=Decimal(random.randint(20, 400)) / 100,
            ),
        )
        host_approve(host=host)
    return UserFactory(email="bench-buyer@example.com", credit=10**9)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    with throwaway_database() as connection:
        from rest_framework.test import APIClient

        from marketplace.models import InstanceType, Offer
        from orders.placement import order_place
        from orders.quotes import quote_create
        from orders.requests import OrderRequest
        from suppliers.models import Host

        started = time.perf_counter()
        if connection.vendor == "postgresql":
            from sql_market import generate_sql_market

            from tests.factories import UserFactory

            generate_sql_market(args.hosts)
            buyer = UserFactory(email="bench-buyer@example.com", credit=10**9)
        else:
            buyer = generate(args.hosts)
        print(
            f"{connection.vendor}: {Host.objects.count()} hosts, {Offer.objects.count()} offers "
            f"(generated in {time.perf_counter() - started:.1f} s)"
        )
        client = APIClient()
        client.force_authenticate(buyer)
        url = "/api/v1/offers/?accelerator_kind=gpu&min_accelerators=2&ordering=price_per_tflop_hour&page_size=50"
        api = report(
            "GET /api/v1/offers/ (filters, ordering, 50 rows)", timed(lambda: client.get(url).json(), args.repeat)
        )
        sql = """SELECT o.id, o.price_per_hour, o.price_per_tflop_hour FROM marketplace_offer o
                 WHERE o.available_count > 0 AND o.verified AND o.accelerator_kind = 'gpu'
                   AND o.accelerator_count >= 2
                 ORDER BY o.price_per_tflop_hour, o.id LIMIT 50"""

        baseline = report(
            "raw SQL baseline (same rows, no serialization)", timed(sql_run(connection, sql), args.repeat)
        )
        print(f"{'ratio API / raw SQL':<48} {api / baseline:8.1f} x")
        from django.db.models import Sum

        # The single-accelerator type with the most capacity left, so every repetition can be placed.
        busiest = (
            Offer.objects.filter(instance_type__accelerator_count=1, instance_type__family="standard")
            .values("instance_type__name")
            .annotate(left=Sum("available_count"))
            .order_by("-left")
            .first()
        )
        name = busiest["instance_type__name"]
        quote = report(
            f"quote: 1 x {name}",
            timed(lambda: quote_create(request=OrderRequest(instance_type=name, count=1)), args.repeat),
        )
        type_id = InstanceType.objects.get(name=name).pk
        candidates_sql = """SELECT o.host_id FROM marketplace_offer o
                 WHERE o.instance_type_id = %s AND o.available_count > 0 AND o.verified
                   AND (o.listed_until IS NULL OR o.listed_until > CURRENT_TIMESTAMP)
                 ORDER BY o.price_per_hour, o.energy_kwh_per_hour, o.host_id LIMIT 6"""

        candidates = report(
            "raw SQL: the quote's candidate offers", timed(sql_run(connection, candidates_sql, [type_id]), args.repeat)
        )
        print(f"{'ratio quote / candidate SQL':<48} {quote / candidates:8.1f} x")
        capability = report(
            "quote: capability (>=64 GB, >=300 TFLOPS)",
            timed(
                lambda: quote_create(request=OrderRequest(requirements={"min_memory_gb": 64, "min_tflops": 300})),
                args.repeat,
            ),
        )
        capability_sql = """SELECT o.host_id, o.available_count FROM marketplace_offer o
                 WHERE o.available_count > 0 AND o.verified AND o.tflops >= 300 AND o.tflops > 0
                   AND o.accelerator_kind IN ('cpu', 'dsa', 'gpu')
                   AND CASE WHEN o.accelerator_kind = 'cpu' THEN o.ram_gb
                            ELSE o.accelerator_memory_gb * o.accelerator_count END >= 64
                   AND (o.listed_until IS NULL OR o.listed_until > CURRENT_TIMESTAMP)
                 ORDER BY o.price_per_tflop_hour, o.energy_kwh_per_hour, o.host_id LIMIT 24"""

        capability_base = report(
            "raw SQL: the capability quote's candidates", timed(sql_run(connection, capability_sql), args.repeat)
        )
        print(f"{'ratio capability quote / candidate SQL':<48} {capability / capability_base:8.1f} x")
        from django.test.utils import CaptureQueriesContext

        samples = []
        for _ in range(min(args.repeat, busiest["left"] // 2)):
            with CaptureQueriesContext(connection) as queries:
                start = time.perf_counter()
                order_place(buyer=buyer, request=OrderRequest(instance_type=name, image="bench:1"))
                samples.append((time.perf_counter() - start) * 1000)
        placed = report(f"order: 1 x {name} (locks, allocation, offers)", samples)
        print(f"{'queries per order':<48} {len(queries.captured_queries):8d}")
        if connection.vendor == "postgresql":
            raw = report("raw psycopg order transaction", raw_order_samples(connection, buyer.pk, name, args.repeat))
            print(f"{'ratio order / raw transaction':<48} {placed / raw:8.1f} x")


def raw_order_samples(connection, buyer_id: int, type_name: str, repeat: int) -> list[float]:
    """The raw baseline of an order (`raw_orders.raw_order`): its own psycopg connection."""
    import psycopg
    from raw_orders import InstanceTypeInfo, raw_order

    from marketplace.models import InstanceType, Offer

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_listed AS SELECT id AS offer_id, available_count FROM marketplace_offer")
        cursor.execute("ALTER TABLE bench_listed ADD PRIMARY KEY (offer_id)")
    t = InstanceType.objects.get(name=type_name)
    listed = sum(Offer.objects.filter(instance_type=t).values_list("available_count", flat=True))
    info = InstanceTypeInfo(t.pk, t.name, t.accelerator_count, t.vcpus, t.ram_gb, t.disk_gb, listed)
    refilled: set[int] = set()
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as conn:
        return timed(lambda: raw_order(conn, buyer_id, info, refilled), repeat)


if __name__ == "__main__":
    main()
