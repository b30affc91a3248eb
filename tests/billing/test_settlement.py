"""Settlement: exactly once, re-runs and concurrent runs give the identical ledger."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connections
from django.db.models import Count, Min
from freezegun import freeze_time

from billing.errors import InsufficientFunds
from billing.ledger import balance_mismatches, buyer_wallet, credit_grant, platform_account, supplier_payable
from billing.models import LedgerAccount, LedgerPosting, LedgerTransaction, UsageRecord
from billing.rating import charge_for
from billing.selectors import account_balance, ledger_total, wallet_balance
from billing.settlement import settle_usage
from orders.agent import instance_agent_report
from orders.lifecycle import instance_stop, instance_terminate
from orders.metering import meter_usage
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data
from tests.orders.conftest import order

from .conftest import at


def ledger_snapshot():
    return sorted(LedgerPosting.objects.values_list("transaction__key", "account__key", "amount"))


@pytest.mark.django_db
def test_usage_moves_money_from_wallet_to_supplier_and_platform(running, buyer, supplier_org):
    before = wallet_balance(buyer)
    with freeze_time(at(3600)):
        meter_usage()
    assert settle_usage() == 1
    assert wallet_balance(buyer) == before - Decimal("0.400000")
    assert account_balance(supplier_payable(supplier_org)) == Decimal("0.340000")
    assert account_balance(platform_account(LedgerAccount.Kind.PLATFORM_REVENUE)) == Decimal("0.060000")
    snapshot = ledger_snapshot()
    assert settle_usage() == 0
    assert ledger_snapshot() == snapshot
    assert not UsageRecord.objects.filter(settled_by__isnull=True).exists()


@pytest.mark.django_db
def test_reserved_usage_is_recognized_from_the_prepayment(buyer, l4_host, supplier_org):
    before = wallet_balance(buyer)
    reserved = order(buyer, pricing="reserved", term_hours=168).instances.get()
    prepaid = Decimal("0.360000") * 168  # a week: 10% off $0.40
    assert wallet_balance(buyer) == before - prepaid
    prepayments = platform_account(LedgerAccount.Kind.RESERVED_PREPAYMENTS)
    assert account_balance(prepayments) == prepaid
    with freeze_time(at(3600)):
        meter_usage()
    settle_usage()
    assert account_balance(prepayments) == prepaid - Decimal("0.360000")
    assert wallet_balance(buyer) == before - prepaid  # the term was paid up front
    assert reserved.usage_records.get().settled_by is not None


@pytest.mark.django_db
def test_orders_need_funds(poor_buyer, l4_host):

    with pytest.raises(InsufficientFunds) as error:
        order(poor_buyer)
    assert error.value.status_code == 402 and error.value.extra["needed"] == "0.400000"
    credit_grant(user=poor_buyer, amount=Decimal("0.40"), reason="test", key="c1")
    order(poor_buyer)  # exactly one hour covered
    with pytest.raises(InsufficientFunds):
        order(poor_buyer, pricing="reserved", term_hours=168)


@pytest.mark.django_db(transaction=True)
def test_concurrent_settlement_gives_the_same_ledger_as_one_run(catalog):
    host = HostFactory(organization=OrganizationFactory(), name="l4", **l4_host_data())
    buyers = [UserFactory() for _ in range(4)]
    for buyer in buyers:
        for instance in order(
            buyer, count=1, offer=host.offers.get(instance_type__name="l4-24g.1x").pk, instance_type=None
        ).instances.all():
            instance_agent_report(instance=instance, status="running")
    for tick in (600, 1200, 1800):
        with freeze_time(at(tick)):
            meter_usage()
    records = UsageRecord.objects.count()
    assert records == 12
    start = threading.Barrier(4)

    def settle(_):
        try:
            start.wait()
            return settle_usage(batch_size=3)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(4) as pool:
        settled = sum(pool.map(settle, range(4)))

    # A payer or payable another settler holds is skipped, not waited for: a later pass takes it.
    assert settled + settle_usage() == records
    usage = LedgerTransaction.objects.filter(kind="usage")
    # One transaction per payer and batch, keyed by its first record; no record settled twice.
    firsts = UsageRecord.objects.values("settled_by__key").annotate(first=Min("pk"), n=Count("pk"))
    assert sorted(row["settled_by__key"] for row in firsts) == sorted(f"usage:{row['first']}" for row in firsts)
    assert usage.count() == len(firsts) and sum(row["n"] for row in firsts) == records
    for buyer in buyers:
        charges = sum(charge_for(r.seconds, r.rate_per_hour) for r in UsageRecord.objects.filter(buyer=buyer))
        assert wallet_balance(buyer) == Decimal(1000) - charges
    assert ledger_total() == 0
    assert balance_mismatches() == []
    snapshot = ledger_snapshot()
    assert settle_usage() == 0
    assert ledger_snapshot() == snapshot


@pytest.mark.django_db
def test_cancelling_a_reserved_term_refunds_unused_time_less_the_fee(buyer, l4_host):

    before = wallet_balance(buyer)
    reserved = order(buyer, pricing="reserved", term_hours=168).instances.get()
    prepaid = Decimal("0.360000") * 168
    with freeze_time(at(24 * 3600)):
        instance_terminate(instance=reserved)
    settle_usage()
    used = sum(UsageRecord.objects.filter(instance=reserved).values_list("seconds", flat=True))
    assert 24 * 3600 - 1 <= used <= 24 * 3600
    unused = Decimal("0.360000") * 144
    refunded = wallet_balance(buyer) - (before - prepaid)
    assert abs(refunded - unused * Decimal("0.9")) < Decimal("0.001")  # 10% cancellation fee
    prepayments = platform_account(LedgerAccount.Kind.RESERVED_PREPAYMENTS)
    assert abs(account_balance(prepayments)) < Decimal("0.001")  # nothing left owed


@pytest.mark.django_db
def test_spot_backfill_on_idle_reserved_capacity_pays_the_reserving_buyer(buyer, l4_host, other_supplier, supplier_org):

    reserved = order(buyer, count=4, pricing="reserved", term_hours=168).instances.first()
    instance_stop(instance=reserved)
    spot = order(other_supplier, pricing="spot", max_price_per_hour=Decimal("0.30")).instances.get()
    assert spot.backfills_id == reserved.pk
    instance_agent_report(instance=spot, status="running")
    reserving_before = wallet_balance(buyer)
    payable_before = account_balance(supplier_payable(supplier_org))
    with freeze_time(at(3600)):
        meter_usage()
    settle_usage()
    # $0.30 spot hour: $0.255 to the reserving buyer, $0.045 commission; the supplier was paid by the term.
    spot_record = UsageRecord.objects.get(instance=spot)
    posted = {p.account.key: p.amount for p in spot_record.settled_by.postings.select_related("account")}
    assert posted[buyer_wallet(buyer).key] == Decimal("0.255000")
    assert wallet_balance(buyer) == reserving_before + Decimal("0.255000")
    supplier_gain = account_balance(supplier_payable(supplier_org)) - payable_before
    assert supplier_gain == Decimal("0.36") * 4 * Decimal("0.85")  # four reserved hours recognized, no spot money
