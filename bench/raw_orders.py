"""The raw baseline of bench/concurrent_orders.py: an order as plain psycopg, and the clean-up after it.

One order, as placement does its locking and writing, with nothing else: lock the buyer row, pick the
cheapest listed offer of the type whose host row is not locked (FOR UPDATE OF the host, SKIP LOCKED),
decrement that offer's available_count, and insert a minimal valid order, instance and allocation (the
instance type's claim) into the real orders tables; commit. What placement does besides (capacity maths
under the lock, spend and funds guards, events, the agent's command, the rewrite of all of the host's
offers, the idempotency record, serialization) is what the ratio measures. When every offer of the type
is sold, they are refilled to their counts at generation, so the baseline never runs out; after each raw
phase its rows are deleted and the offers of the hosts it touched are derived again from their
allocations, so the API phases and the final check see only what the API did.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

RAW_IMAGE = "bench-raw:1"  # marks the raw baseline's rows, deleted after each raw phase

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
