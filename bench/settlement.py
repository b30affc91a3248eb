"""Benchmark: one metering tick and its settlement for a market of running instances.

    .venv/bin/python bench/settlement.py [--instances 100000] [--buyers 5000] [--suppliers 500]

PostgreSQL (DATABASE_URL) in a throwaway test database. The market is generated in SQL (rows cloned
from one instance placed by the real services), every instance running and metered up to a minute
ago. Then, on the same state:

1. baseline: set-based SQL does the same tick (a usage row per instance, one ledger transaction per
   buyer with per-account sums, each record linked) inside a transaction that is rolled back;
2. the product: `meter_usage` then `settle_usage`, as beat runs them.

Prints each phase's seconds beside the baseline, the rows and bytes the tick added, and checks that
the ledger totals per account are identical to the baseline's, that every stored balance equals its
postings, and that a second settlement finds nothing to do (exactly once).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from decimal import Decimal

from throwaway import copy_columns, throwaway_database  # also puts the project on the path and picks the test settings

TABLES = ("billing_usagerecord", "billing_ledgertransaction", "billing_ledgerposting", "billing_ledgeraccount")


def clone(cursor, model, template_pk: int, count: int, overrides: dict[str, str]) -> None:
    """Insert `count` copies of one row of `model`, with `overrides` (column -> SQL over g, 1..count)."""
    table = model._meta.db_table
    names, select = copy_columns(model, overrides, source=f'"{table}"')
    cursor.execute(
        f'INSERT INTO "{table}" ({names}) SELECT {select} FROM "{table}", generate_series(1, %s) AS g '
        f'WHERE "{table}".id = %s',
        [count, template_pk],
    )


def ids(cursor, table: str, where: str) -> list[int]:
    cursor.execute(f'SELECT id FROM "{table}" WHERE {where} ORDER BY id')
    return [row[0] for row in cursor.fetchall()]


def generate(args) -> None:
    from django.db import connection
    from django.utils import timezone

    from accounts.models import User
    from orders.models import Instance
    from orders.placement import order_place
    from orders.requests import OrderRequest
    from suppliers.models import Host, Organization
    from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data

    organization = OrganizationFactory(name="bench-supplier")
    host = HostFactory(organization=organization, name="bench-host", **l4_host_data())
    buyer = UserFactory(email="bench-buyer@example.com", credit=0)
    offer = host.offers.get(instance_type__name="l4-24g.1x").pk
    from billing.ledger import credit_grant

    credit_grant(user=buyer, amount=Decimal(1000), reason="bench", key="bench-credit")
    template = order_place(buyer=buyer, request=OrderRequest(offer=offer, image="bench:1")).instances.get()
    now = timezone.now()
    with connection.cursor() as cursor:
        clone(cursor, User, buyer.pk, args.buyers - 1, {"email": "'bench-' || g || '@example.com'"})
        clone(cursor, Organization, organization.pk, args.suppliers - 1, {"name": "'bench-supplier-' || g"})
        organizations = ids(cursor, "suppliers_organization", "name LIKE 'bench-supplier%'")
        cursor.execute(
            'UPDATE "suppliers_host" SET last_heartbeat_at = %s, status = %s WHERE id = %s',
            [now, host.status, host.pk],
        )
        hosts_per_org = max(1, args.instances // (8 * len(organizations)))
        clone(
            cursor,
            Host,
            host.pk,
            len(organizations) * hosts_per_org - 1,
            {
                "organization_id": f"(ARRAY{organizations})[1 + mod(g, {len(organizations)})]",
                "name": "'bench-host-' || g",
            },
        )
        buyers = ids(cursor, "accounts_user", "email LIKE 'bench-%'")
        hosts = ids(cursor, "suppliers_host", "name LIKE 'bench-host%'")
        cursor.execute(
            'UPDATE "orders_instance" SET status = %s, metered_until = %s WHERE id = %s',
            ["running", now - timedelta(seconds=60), template.pk],
        )
        clone(
            cursor,
            Instance,
            template.pk,
            args.instances - 1,
            {
                "buyer_id": f"(ARRAY{buyers})[1 + mod(g, {len(buyers)})]",
                "host_id": f"(ARRAY{hosts})[1 + mod(g, {len(hosts)})]",
            },
        )
        cursor.execute("ANALYZE")


BASELINE = """
SET CONSTRAINTS ALL IMMEDIATE;  -- its foreign key and balance checks run, although it is rolled back
WITH windows AS (
    SELECT i.id, i.buyer_id, h.organization_id, i.price_per_hour, i.metered_until AS start,
           floor(extract(epoch FROM LEAST(%(now)s, COALESCE(h.last_heartbeat_at, %(now)s)) - i.metered_until))::int
               AS seconds
    FROM orders_instance i JOIN suppliers_host h ON h.id = i.host_id
    WHERE i.status = 'running' AND i.metered_until IS NOT NULL AND i.metered_until < %(now)s
), metered AS (
    UPDATE orders_instance AS i SET metered_until = w.start + make_interval(secs => w.seconds)
    FROM windows w WHERE i.id = w.id AND w.seconds > 0
)
INSERT INTO billing_usagerecord (instance_id, buyer_id, organization_id, kind, window_start, window_end, seconds,
                                 rate_per_hour, created_at)
SELECT id, buyer_id, organization_id, 'compute', start, start + make_interval(secs => seconds), seconds,
       price_per_hour, %(now)s
FROM windows WHERE seconds > 0;

CREATE TEMP TABLE charged ON COMMIT DROP AS
SELECT u.id, u.buyer_id, u.organization_id, c.charge, ROUND(c.charge * %(take)s, 6) AS fee
FROM billing_usagerecord u, LATERAL (SELECT ROUND(u.seconds * u.rate_per_hour / 3600, 6) AS charge) c
WHERE u.settled_by_id IS NULL AND c.charge > 0;

INSERT INTO billing_ledgeraccount (kind, user_id, currency, key, balance, created_at)
SELECT DISTINCT 'buyer_wallet', buyer_id, 'USD', 'buyer_wallet:user:' || buyer_id || ':USD', 0, %(now)s FROM charged
ON CONFLICT (key) DO NOTHING;
INSERT INTO billing_ledgeraccount (kind, organization_id, currency, key, balance, created_at)
SELECT DISTINCT 'supplier_payable', organization_id, 'USD', 'supplier_payable:org:' || organization_id || ':USD', 0,
       %(now)s FROM charged
ON CONFLICT (key) DO NOTHING;

CREATE TEMP TABLE batches (id bigint, buyer_id bigint) ON COMMIT DROP;
WITH inserted AS (
    INSERT INTO billing_ledgertransaction (kind, key, description, reference, created_at)
    SELECT 'usage', 'baseline:' || buyer_id, 'usage', '{}'::jsonb, %(now)s FROM charged GROUP BY buyer_id
    RETURNING id, key
)
INSERT INTO batches SELECT id, substr(key, 10)::bigint FROM inserted;

INSERT INTO billing_ledgerposting (transaction_id, account_id, amount, currency)
SELECT b.id, a.id, -SUM(c.charge), 'USD'
FROM charged c JOIN batches b USING (buyer_id)
JOIN billing_ledgeraccount a ON a.key = 'buyer_wallet:user:' || c.buyer_id || ':USD'
GROUP BY b.id, a.id
UNION ALL
SELECT b.id, a.id, SUM(c.charge - c.fee), 'USD'
FROM charged c JOIN batches b USING (buyer_id)
JOIN billing_ledgeraccount a ON a.key = 'supplier_payable:org:' || c.organization_id || ':USD'
GROUP BY b.id, a.id HAVING SUM(c.charge - c.fee) <> 0
UNION ALL
SELECT b.id, %(revenue)s, SUM(c.fee), 'USD' FROM charged c JOIN batches b USING (buyer_id)
GROUP BY b.id HAVING SUM(c.fee) <> 0;

UPDATE billing_usagerecord u SET settled_by_id = b.id FROM charged c JOIN batches b USING (buyer_id) WHERE u.id = c.id;
"""

TOTALS = """
SELECT a.key, SUM(p.amount) FROM billing_ledgerposting p
JOIN billing_ledgertransaction t ON t.id = p.transaction_id JOIN billing_ledgeraccount a ON a.id = p.account_id
WHERE t.kind = 'usage' AND t.key <> 'bench-credit' GROUP BY a.key
"""


def sizes(cursor) -> dict[str, int]:
    cursor.execute("SELECT relname, pg_total_relation_size(oid) FROM pg_class WHERE relname = ANY(%s)", [list(TABLES)])
    return dict(cursor.fetchall())


def counts(cursor) -> dict[str, int]:
    found = {}
    for table in TABLES:
        cursor.execute(f'SELECT count(*) FROM "{table}"')
        found[table] = cursor.fetchone()[0]
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--buyers", type=int, default=5_000)
    parser.add_argument("--suppliers", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--no-analyze", dest="analyze", action="store_false", help="settle on an unanalyzed table")
    args = parser.parse_args()

    with throwaway_database() as connection:
        if connection.vendor != "postgresql":
            sys.exit("bench/settlement.py measures PostgreSQL: set DATABASE_URL")
        from django.conf import settings
        from django.db import transaction
        from django.utils import timezone

        from billing.ledger import Kind, balance_mismatches, platform_account
        from billing.models import LedgerTransaction, UsageRecord
        from billing.settlement import settle_usage
        from orders.metering import meter_usage

        started = time.perf_counter()
        generate(args)
        print(
            f"postgresql: {args.instances:,} running instances, {args.buyers:,} buyers, {args.suppliers:,} suppliers "
            f"(generated in {time.perf_counter() - started:.1f} s)"
        )
        revenue = platform_account(Kind.PLATFORM_REVENUE).pk
        platform_account(Kind.RESERVED_PREPAYMENTS)
        now = timezone.now()
        with connection.cursor() as cursor:
            before = sizes(cursor)
            rows_before = counts(cursor)
            with transaction.atomic():
                started = time.perf_counter()
                cursor.execute(BASELINE, {"now": now, "take": Decimal(settings.PLATFORM_TAKE_RATE), "revenue": revenue})
                baseline_seconds = time.perf_counter() - started
                cursor.execute(TOTALS)
                baseline = dict(cursor.fetchall())
                transaction.set_rollback(True)

            started = time.perf_counter()
            created = meter_usage(now=now, batch_size=args.batch_size)
            metering = time.perf_counter() - started
            if args.analyze:
                cursor.execute("ANALYZE billing_usagerecord")  # a live table has statistics from earlier ticks
            started = time.perf_counter()
            settled = settle_usage(batch_size=args.batch_size)
            settlement = time.perf_counter() - started
            cursor.execute(TOTALS)
            product = dict(cursor.fetchall())
            after = sizes(cursor)
            rows_after = counts(cursor)

        total = metering + settlement
        print(f"{'baseline: set-based SQL, metering + settlement':<52} {baseline_seconds:8.2f} s")
        print(f"{'meter_usage (usage records)':<52} {metering:8.2f} s   {created:,} records")
        print(f"{'settle_usage (ledger transactions)':<52} {settlement:8.2f} s   {settled:,} records")
        print(f"{'tick total':<52} {total:8.2f} s   ratio to baseline {total / baseline_seconds:5.1f} x")
        usage = LedgerTransaction.objects.filter(kind="usage").count()
        postings = rows_after["billing_ledgerposting"] - rows_before["billing_ledgerposting"]
        print(f"ledger growth: {usage:,} transactions, {postings:,} postings for {settled:,} records")
        for table in TABLES:
            grown = (after[table] - before[table]) / 1e6
            print(f"  {table:<28} +{rows_after[table] - rows_before[table]:>9,} rows  +{grown:7.1f} MB")
        identical = product == baseline
        print(f"ledger totals per account identical to the baseline: {identical} ({len(product):,} accounts)")
        mismatches = balance_mismatches()
        print(f"stored balances equal to their postings: {not mismatches}")
        again = settle_usage(batch_size=args.batch_size)
        unsettled = UsageRecord.objects.filter(settled_by__isnull=True).count()
        print(f"second settlement: {again} records; unsettled left: {unsettled}")
        if not identical or mismatches or again or unsettled:
            sys.exit(1)


if __name__ == "__main__":
    main()
