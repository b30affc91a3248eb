"""Settlement in batches: one ledger transaction per payer and batch, the same money as settling
each record alone, stored balances that stay the sum of their postings, a fixed number of queries
per batch, and no waiting on (or deadlock over) accounts another transaction holds."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.ledger import (
    Kind,
    balance_mismatches,
    buyer_wallet,
    credit_grant,
    lock_wallet,
    platform_account,
    post_transaction,
    supplier_payable,
)
from billing.models import LedgerTransaction, UsageRecord
from billing.rating import charge_for, split
from billing.selectors import account_balance, wallet_balance
from billing.settlement import settle_usage, settle_usage_batch
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data
from tests.orders.conftest import order

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are PostgreSQL's")
START = timezone.now() - timedelta(days=3)


def records_for(instance, *, buyer=None, count: int, first_minute: int = 0, seconds: int = 60, kind="compute"):
    """`count` one-minute usage records of `instance` (billed to `buyer`, by default its own)."""
    return UsageRecord.objects.bulk_create(
        UsageRecord(
            instance=instance,
            buyer=buyer or instance.buyer,
            organization_id=instance.host.organization_id,
            kind=kind,
            window_start=START + timedelta(minutes=first_minute + i),
            window_end=START + timedelta(minutes=first_minute + i, seconds=seconds),
            seconds=seconds,
            rate_per_hour=instance.price_per_hour,
        )
        for i in range(count)
    )


@pytest.fixture
def market(db):
    """Two suppliers with an L4 host each; buyer A rents on both, B and C on one."""
    orgs = [OrganizationFactory(name=f"Batch Supplier {n}") for n in range(2)]
    hosts = [HostFactory(organization=org, name=f"l4-batch-{n}", **l4_host_data()) for n, org in enumerate(orgs)]
    buyers = [UserFactory(email=f"batch-{name}@example.com") for name in "abc"]

    def rent(buyer, host):
        offer = host.offers.get(instance_type__name="l4-24g.1x").pk
        return order(buyer, offer=offer, instance_type=None).instances.get()

    a, b, c = buyers
    instances = [rent(a, hosts[0]), rent(a, hosts[1]), rent(b, hosts[0]), rent(c, hosts[1])]
    return orgs, buyers, instances


@pytest.mark.django_db
def test_one_transaction_per_payer_with_the_money_of_each_record(market):
    orgs, buyers, instances = market
    for n, instance in enumerate(instances):
        records_for(instance, count=7 + n, seconds=37 + n)  # odd seconds: per-record rounding matters
    before = {buyer.pk: wallet_balance(buyer) for buyer in buyers}
    take = Decimal(settings.PLATFORM_TAKE_RATE)

    assert settle_usage() == UsageRecord.objects.count()

    usage = LedgerTransaction.objects.filter(kind="usage")
    assert usage.count() == len(buyers)  # not one per record, not one per instance
    for buyer in buyers:
        records = list(UsageRecord.objects.filter(buyer=buyer).order_by("pk"))
        (settled_by,) = {r.settled_by_id for r in records}
        charge = sum((charge_for(r.seconds, r.rate_per_hour) for r in records), Decimal(0))
        wallet_posting = LedgerTransaction.objects.get(pk=settled_by).postings.get(account=buyer_wallet(buyer))
        assert wallet_posting.amount == -charge  # each record rounded as if settled alone, then summed
        assert wallet_balance(buyer) == before[buyer.pk] - charge
        assert LedgerTransaction.objects.get(pk=settled_by).key == f"usage:{records[0].pk}"
    for org in orgs:
        shares = sum(
            (
                split(charge_for(r.seconds, r.rate_per_hour), take).supplier_share
                for r in UsageRecord.objects.filter(organization=org)
            ),
            Decimal(0),
        )
        assert account_balance(supplier_payable(org)) == shares
    fees = sum((split(charge_for(r.seconds, r.rate_per_hour), take).fee for r in UsageRecord.objects.all()), Decimal(0))
    assert account_balance(platform_account(Kind.PLATFORM_REVENUE)) == fees
    assert balance_mismatches() == []
    assert settle_usage() == 0 and usage.count() == len(buyers)  # exactly once


@pytest.mark.django_db
def test_a_batch_takes_a_fixed_number_of_queries(market):
    orgs, _, instances = market
    records_for(instances[0], count=4)
    settle_usage_batch()  # the platform accounts exist from here on
    for org in orgs:  # and the payables (a first earning creates its payable: two more queries, once)
        supplier_payable(org)
    records_for(instances[0], count=6, first_minute=100)
    with CaptureQueriesContext(connection) as few:
        assert settle_usage_batch().done == 6
    many_buyers = [UserFactory(email=f"many-{n}@example.com") for n in range(12)]
    for n, buyer in enumerate(many_buyers):  # twelve more payers, on every instance, 240 records
        for m, instance in enumerate(instances):
            records_for(instance, buyer=buyer, count=5, first_minute=1000 + 100 * n + 10 * m)
    with CaptureQueriesContext(connection) as lots:
        assert settle_usage_batch().done == 240
    assert len(lots.captured_queries) == len(few.captured_queries)
    assert LedgerTransaction.objects.filter(kind="usage").count() == 2 + len(many_buyers)
    assert balance_mismatches() == []


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_payer_whose_wallet_is_held_is_left_for_the_next_pass_not_waited_for(catalog, market):
    _, (a, _, _), instances = market
    for instance in instances:
        records_for(instance, count=3)
    held, release = threading.Event(), threading.Event()

    def hold_wallet():
        try:
            with transaction.atomic():
                lock_wallet(a)  # an order or a dispute of buyer A, in flight
                held.set()
                release.wait(30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_wallet)
    holder.start()
    try:
        assert held.wait(10)
        settled = settle_usage()  # returns at once: A's records skipped, not waited for
        assert settled == 6
        assert UsageRecord.objects.filter(settled_by__isnull=True, buyer=a).count() == 6
        assert not UsageRecord.objects.filter(settled_by__isnull=True).exclude(buyer=a).exists()
    finally:
        release.set()
        holder.join()
    assert settle_usage() == 6
    assert not UsageRecord.objects.filter(settled_by__isnull=True).exists()
    assert balance_mismatches() == []


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_settlement_beside_credits_and_wallet_first_postings_keeps_balances_exact(catalog, market):
    orgs, buyers, instances = market
    for n, instance in enumerate(instances):
        records_for(instance, count=60, first_minute=0, seconds=41 + n)
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def settle(_):
        start.wait()
        return settle_usage(batch_size=7)

    def credits(n):
        start.wait()
        for i in range(15):
            buyer = buyers[(n + i) % len(buyers)]
            credit_grant(user=buyer, amount=Decimal("0.05"), reason="goodwill", key=f"batch-credit:{n}:{i}")

    def wallet_then_payable(n):
        # The order disputes take: the buyer's wallet first, then a posting that also moves a payable.
        start.wait()
        for i in range(15):
            buyer, org = buyers[i % len(buyers)], orgs[(n + i) % len(orgs)]
            with transaction.atomic():
                wallet = lock_wallet(buyer)
                post_transaction(
                    kind="credit",
                    key=f"batch-dispute:{n}:{i}",
                    description="dispute credit",
                    postings=[(supplier_payable(org), Decimal("-0.01")), (wallet, Decimal("0.01"))],
                )

    def run(job):
        function, n = job
        try:
            return function(n)
        except BaseException as error:  # collected and asserted below
            errors.append(error)
        finally:
            connections.close_all()

    jobs = [(settle, 0), (settle, 1), (settle, 2), (credits, 0), (wallet_then_payable, 0), (wallet_then_payable, 1)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        list(pool.map(run, jobs))
    assert errors == []  # no deadlock, no lock timeout
    settle_usage()  # whatever a held wallet left over
    assert not UsageRecord.objects.filter(settled_by__isnull=True).exists()
    assert balance_mismatches() == []
    for buyer in buyers:
        charges = sum(
            (charge_for(r.seconds, r.rate_per_hour) for r in UsageRecord.objects.filter(buyer=buyer)), Decimal(0)
        )
        on_wallet = LedgerTransaction.objects.filter(postings__account=buyer_wallet(buyer))
        grants = on_wallet.filter(key__startswith="batch-credit:").count()
        disputes = on_wallet.filter(key__startswith="batch-dispute:").count()
        assert grants and disputes
        assert wallet_balance(buyer) == Decimal(1000) - charges + Decimal("0.05") * grants + Decimal("0.01") * disputes


@pytest.mark.django_db
def test_reserved_terms_of_several_buyers_settle_from_the_prepayments_in_one_transaction(market):
    _, (a, b, _), instances = market
    host = instances[0].host
    offer = host.offers.get(instance_type__name="l4-24g.1x").pk
    reserved_a = order(a, offer=offer, instance_type=None, pricing="reserved", term_hours=168).instances.get()
    reserved_b = order(b, offer=offer, instance_type=None, pricing="reserved", term_hours=168).instances.get()
    later = records_for(reserved_a, count=3, first_minute=50)  # buyer A's records get the higher ids
    earlier = records_for(reserved_b, count=3)
    wallets = {buyer.pk: wallet_balance(buyer) for buyer in (a, b)}
    prepayments = platform_account(Kind.RESERVED_PREPAYMENTS)
    prepaid = account_balance(prepayments)

    assert settle_usage() == 6

    (settled_by,) = {r.settled_by_id for r in UsageRecord.objects.filter(pk__in=[r.pk for r in later + earlier])}
    lowest = min(r.pk for r in earlier + later)
    assert LedgerTransaction.objects.get(pk=settled_by).key == f"usage:{lowest}"  # its lowest record, across buyers
    charges = sum((charge_for(r.seconds, r.rate_per_hour) for r in later + earlier), Decimal(0))
    assert account_balance(prepayments) == prepaid - charges
    assert {buyer.pk: wallet_balance(buyer) for buyer in (a, b)} == wallets  # the terms were paid up front
