"""Work survives killed workers: a real prefork Celery worker is SIGKILLed again and again while it
settles usage and sends payouts (acks late, a short visibility timeout, tasks rejected when their
process dies). Every usage record ends settled exactly once, every payout is sent once, and the
ledger still sums to zero. Two beat schedulers firing the same walk at once add no duplicate walk.
A PostgreSQL connection killed in the middle of a transaction leaves no half-written change."""

from __future__ import annotations

import random
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import OperationalError, connection, connections, transaction
from django.db.models import Count, Min, Sum
from django.utils import timezone

from billing.ledger import Kind, balance_mismatches, buyer_wallet, platform_account, post_transaction, supplier_payable
from billing.models import LedgerPosting, LedgerTransaction, Payout, UsageRecord
from billing.rating import charge_for
from billing.tasks import payouts_create_task, settle_usage_task
from marketplace.tasks import walk_step
from marketplace.walks import Walk
from orders.agent import instance_agent_report
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data
from tests.orders.conftest import order
from tests.support.celery_worker import killable_workers, wait_until
from tests.support.fake_stripe import FakeStripe

# Redelivery of a killed worker's unacknowledged task is the Redis transport's (visibility timeout);
# CI runs on Redis (REQUIRE_SERVICES=1 makes it so). The zero-setup filesystem broker has no such thing.
needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="redelivery after a kill needs the Redis broker")
KILLS = 4
RECORDS = 400
WORKER_ENV = {"CELERY_VISIBILITY_TIMEOUT_SECONDS": "3"}


def ledger_sums_to_zero() -> bool:
    return (LedgerPosting.objects.aggregate(total=Sum("amount"))["total"] or 0) == 0


def kill_repeatedly(kill_and_restart, *, until, kills: int = KILLS) -> int:
    """SIGKILL the worker at random moments until `until()` holds or `kills` are done."""
    done = 0
    rng = random.Random(7)
    while done < kills and not until():
        time.sleep(rng.uniform(0.4, 1.2))
        kill_and_restart()
        done += 1
    return done


def settle_with_beat_ticks(queue: str, *, until, timeout: float, tick: float = 10.0) -> bool:
    """Wait for `until`, firing the settlement walk every `tick` seconds as beat does in production. A
    batch that finds a payer's accounts still locked by a killed worker's dying transaction leaves its
    records for the next pass (it never waits), so the next tick settles them; the walk guard keeps a
    tick from starting a second walk while one is under way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if wait_until(until, timeout=min(tick, max(0.0, deadline - time.monotonic()))):
            return True
        settle_usage_task.apply_async(kwargs={"batch_size": 10}, queue=queue)
    return until()


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_usage_is_settled_exactly_once_through_killed_workers(catalog):
    cache.delete("walk:billing.tasks.settle_usage_task")
    supplier = OrganizationFactory(name="Killed Worker Compute")
    host = HostFactory(organization=supplier, name="l4-k", **l4_host_data())
    buyer = UserFactory(email="killed@example.com", credit=Decimal("1000"))
    instance = instance_agent_report(instance=order(buyer).instances.get(), status="running")
    start = timezone.now() - timedelta(days=2)
    UsageRecord.objects.bulk_create(
        UsageRecord(
            instance=instance,
            buyer=buyer,
            organization=host.organization,
            kind="compute",
            window_start=start + timedelta(minutes=i),
            window_end=start + timedelta(minutes=i + 1),
            seconds=60,
            rate_per_hour=Decimal("0.40"),
        )
        for i in range(RECORDS)
    )
    records = UsageRecord.objects.filter(instance=instance)

    def all_settled() -> bool:
        return not records.filter(settled_by__isnull=True).exists()

    queue = f"killed-{random.randrange(10**6)}"
    with killable_workers(queue, extra_env=WORKER_ENV) as kill_and_restart:
        settle_usage_task.apply_async(kwargs={"batch_size": 10}, queue=queue)
        kills = kill_repeatedly(kill_and_restart, until=all_settled)
        settled = settle_with_beat_ticks(queue, until=all_settled, timeout=120)

    assert kills >= 2, "the worker finished before it could be killed: make the work bigger"
    assert settled, f"{records.filter(settled_by__isnull=True).count()} records never settled"
    batches = records.values("settled_by_id", "settled_by__key").annotate(first=Min("pk"), count=Count("pk"))
    assert all(row["settled_by__key"] == f"usage:{row['first']}" for row in batches)  # one transaction per batch
    assert sum(row["count"] for row in batches) == RECORDS
    usage = LedgerTransaction.objects.filter(kind="usage")
    assert usage.count() == len(batches)  # no batch posted twice, none posted without its records
    paid = -LedgerPosting.objects.filter(transaction__in=usage, account=buyer_wallet(buyer)).aggregate(
        total=Sum("amount")
    )["total"]
    assert paid == RECORDS * charge_for(60, Decimal("0.40"))  # every record charged exactly once
    assert ledger_sums_to_zero()
    assert balance_mismatches() == []


@needs_redis
@pytest.mark.django_db(transaction=True)
def test_payouts_are_sent_once_through_killed_workers(catalog):
    organizations = []
    for i in range(8):
        organization = OrganizationFactory(name=f"Payee {i}", stripe_account_id=f"acct_test_{i:04d}")
        post_transaction(
            kind="usage",
            key=f"earned:{i}",
            description="earned",
            postings=[
                (platform_account(Kind.PLATFORM_REVENUE), -Decimal("125.00")),
                (supplier_payable(organization), Decimal("125.00")),
            ],
        )
        organizations.append(organization)

    def all_paid() -> bool:
        return Payout.objects.filter(status="paid").count() == len(organizations)

    with FakeStripe() as stripe:
        env = {**WORKER_ENV, "STRIPE_API_BASE": stripe.url, "STRIPE_SECRET_KEY": "sk_test_fake"}
        queue = f"payouts-{random.randrange(10**6)}"
        with killable_workers(queue, extra_env=env) as kill_and_restart:
            for _ in range(3):  # beat firing again while earlier runs are being killed
                payouts_create_task.apply_async(queue=queue)
            kill_repeatedly(kill_and_restart, until=all_paid, kills=4)
            payouts_create_task.apply_async(queue=queue)  # the next beat sends whatever a kill left unsent
            paid = wait_until(all_paid, timeout=120)
        transfers = stripe.calls("/v1/transfers")

    assert paid, list(Payout.objects.values_list("organization__name", "status", "attempts"))
    assert Payout.objects.count() == len(organizations)  # one payout each, never a second
    keys = {call["idempotency_key"] for call in transfers}
    assert keys == {f"payout:{p.pk}" for p in Payout.objects.all()}  # retries reuse the key: one transfer each
    for organization in organizations:
        assert Payout.objects.get(organization=organization).amount == Decimal("125.00")
    assert ledger_sums_to_zero()


@pytest.mark.django_db(transaction=True)
def test_two_beat_schedulers_start_one_walk():
    """Two schedulers firing the same beat entry at once: the walk's guard lets one through."""
    cache.delete("walk:tests.two_beats")
    started = []
    barrier = threading.Barrier(2)

    class Task:
        name = "tests.two_beats"
        request = type("Request", (), {"delivery_info": {}})()

        def apply_async(self, **kwargs):
            pass

    def service(*, after, batch_size):
        started.append(after)
        return Walk(done=1, next_after=after + 1)

    def beat():
        barrier.wait()
        walk_step(Task(), service, after=0, batch_size=1)

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert started == [0]
    cache.delete("walk:tests.two_beats")


@pytest.mark.django_db(transaction=True)
def test_a_connection_killed_mid_transaction_leaves_nothing_half_written(catalog):
    """The transaction's backend is terminated (`pg_terminate_backend`) between its two postings'
    statements: nothing of it remains, and the ledger still sums to zero."""
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    organization = OrganizationFactory(name="Half Written")
    victim_pid: list[int] = []
    ready, resume = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def write_then_die():
        try:
            with transaction.atomic():
                with connections["default"].cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    victim_pid.append(cursor.fetchone()[0])
                account = supplier_payable(organization)
                LedgerTransaction.objects.create(kind="usage", key="half-written", description="never complete")
                ready.set()
                resume.wait(10)
                LedgerPosting.objects.create(
                    transaction=LedgerTransaction.objects.get(key="half-written"), account=account, amount=Decimal("5")
                )
        except OperationalError as error:  # the server closed the connection
            failures.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=write_then_die)
    thread.start()
    assert ready.wait(10)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [victim_pid[0]])
    resume.set()
    thread.join(20)
    assert failures, "the killed connection should have failed the transaction"
    assert not LedgerTransaction.objects.filter(key="half-written").exists()
    assert ledger_sums_to_zero()
