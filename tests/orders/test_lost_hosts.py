"""A host that goes silent stops billing at its last heartbeat; one lost for HOST_LOST_AFTER_SECONDS
has its instances terminated, their capacity released and the outage's SLA credit granted, once."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.utils import timezone
from freezegun import freeze_time

from billing.models import LedgerTransaction, UsageRecord
from billing.selectors import wallet_balance
from marketplace.walks import Walk
from orders.agent import agent_heartbeat, hosts_mark_offline, hosts_release_lost, instance_agent_report
from orders.metering import meter_usage
from orders.models import Allocation, HostCommand, Instance, InstanceStatus
from suppliers.models import Host, HostOutage
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data
from tests.orders.conftest import order
from tests.suppliers.test_trust import host, register

__all__ = ["host"]  # the fixture

pytestmark = pytest.mark.django_db
BASE = timezone.now().replace(microsecond=0)


def at(seconds: int):
    return freeze_time(BASE + timedelta(seconds=seconds))


def beat(host, *running):
    return agent_heartbeat(host=host, instances=[{"id": i.pk, "status": "running"} for i in running])


def compute_seconds(instance) -> int:
    return sum(UsageRecord.objects.filter(instance=instance, kind="compute").values_list("seconds", flat=True))


def running_on(host, buyer, **fields):
    offer = host.offers.get(instance_type__name="l4-24g.1x").pk
    instance = order(buyer, offer=offer, instance_type=None, allow_unverified=True, **fields)
    return instance_agent_report(instance=instance.instances.get(), status="running")


def test_compute_stops_at_the_last_heartbeat_and_resumes_at_the_return(host, buyer):
    with at(0):
        register(host)
        instance = running_on(host, buyer)
    with at(30):
        beat(host, instance)  # the last heartbeat before the outage
    with at(60):
        meter_usage()
    with at(200):
        assert hosts_mark_offline() == Walk(done=1, next_after=None)
    with at(1800):
        meter_usage()
    assert compute_seconds(instance) == 30  # nothing after the last heartbeat
    with at(2400):
        beat(host, instance)  # back: accrues again from this heartbeat
    with at(3000):
        beat(host, instance)
        meter_usage()
    assert compute_seconds(instance) == 30 + 600


def test_reserved_terms_keep_accruing_through_an_outage(host, buyer):
    with at(0):
        register(host)
        reserved = running_on(host, buyer, pricing="reserved", term_hours=168)
        beat(host, reserved)
    with at(200):
        hosts_mark_offline()
    with at(1800):
        meter_usage()
    assert compute_seconds(reserved) == 1800  # prepaid: the SLA credit is the remedy, not a pause


def test_a_lost_host_terminates_its_instances_and_credits_the_outage_once(host, buyer, settings):
    settings.SLA_GRACE_SECONDS = 300
    settings.HOST_LOST_AFTER_SECONDS = 7200
    with at(0):
        register(host)
        on_demand = running_on(host, buyer)  # $0.40/h
        reserved = running_on(host, buyer, pricing="reserved", term_hours=168)
    with at(30):
        beat(host, on_demand, reserved)  # the last heartbeat
    with at(200):
        hosts_mark_offline()
    with at(3600):
        assert hosts_release_lost() == Walk(done=0, next_after=None)  # offline, not lost yet
    wallet_before = wallet_balance(buyer)
    with at(7300):
        meter_usage()
        assert hosts_release_lost() == Walk(done=1, next_after=None)
        assert hosts_release_lost() == Walk(done=0, next_after=None)  # nothing left to release
    outage = HostOutage.objects.get(host=host)
    for instance in (on_demand, reserved):
        instance.refresh_from_db()
        assert instance.status == InstanceStatus.TERMINATED and instance.metered_until is None
        assert instance.events.filter(to_status="terminated", reason__contains="lost").exists()
        assert LedgerTransaction.objects.filter(key=f"sla:{outage.pk}:{instance.pk}").exists()
    assert not Allocation.objects.active().filter(host=host).exists()
    assert buyer.notifications.filter(kind="instance_host_lost").count() == 2
    # SLA: (7270 s gap - 300 s grace) x 5 at each instance's price.
    sla = LedgerTransaction.objects.get(key=f"sla:{outage.pk}:{on_demand.pk}")
    assert sla.reference["gap_seconds"] == 7270
    # The reserved term after the loss comes back whole: no cancellation fee for the supplier's fault.
    refund = LedgerTransaction.objects.get(key=f"reserved-cancel:{reserved.pk}")
    unused = Decimal(168 * 3600 - 7300) / 3600 * reserved.price_per_hour
    assert abs(Decimal(refund.reference["unused"]) - unused) < Decimal("0.01")
    assert Decimal(refund.reference["fee"]) == 0
    credited = wallet_balance(buyer) - wallet_before
    expected_sla = Decimal(6970) / 3600 * (on_demand.price_per_hour + reserved.price_per_hour) * 5
    assert abs(credited - expected_sla - Decimal(refund.reference["unused"])) < Decimal("0.02")
    reserved_compute = compute_seconds(reserved)
    assert 7299 <= reserved_compute <= 7300  # recognized up to the loss, refunded after it
    assert compute_seconds(on_demand) == 30  # nothing accrued after the last heartbeat

    # The host comes back later: no second credit, and the agent is told to remove what it runs.
    with at(9000):
        beat(host, on_demand, reserved)
    with at(9030):
        beat(host, on_demand, reserved)
    assert wallet_balance(buyer) - wallet_before == credited
    assert LedgerTransaction.objects.filter(key__startswith="sla:").count() == 2
    for instance in (on_demand, reserved):
        pending = HostCommand.objects.filter(instance=instance, status="pending")
        assert list(pending.values_list("kind", flat=True)) == ["terminate"]
    assert not HostCommand.objects.filter(instance=on_demand, kind="start", status="pending").exists()


def test_a_host_back_before_it_is_lost_keeps_its_instances(host, buyer, settings):
    settings.HOST_LOST_AFTER_SECONDS = 7200
    with at(0):
        register(host)
        instance = running_on(host, buyer)
        beat(host, instance)
    with at(200):
        hosts_mark_offline()
    with at(7000):
        beat(host, instance)
    with at(7300):
        assert hosts_release_lost().done == 0
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.RUNNING


def test_lost_hosts_are_walked_in_keyset_batches(supplier_org, buyer, settings):
    settings.HOST_LOST_AFTER_SECONDS = 600
    hosts = []
    with at(0):
        for name in ("a", "b", "c"):
            lost = HostFactory(organization=supplier_org, name=name, **l4_host_data())
            register(lost)
            beat(lost)
            running_on(lost, buyer)
            hosts.append(lost)
    with at(200):
        assert hosts_mark_offline(batch_size=2) == Walk(done=2, next_after=hosts[1].pk)
        assert hosts_mark_offline(after=hosts[1].pk, batch_size=2) == Walk(done=1, next_after=None)
    with at(900):
        first = hosts_release_lost(batch_size=2)
        assert first == Walk(done=2, next_after=hosts[1].pk)
        assert hosts_release_lost(after=first.next_after, batch_size=2) == Walk(done=1, next_after=None)
    assert not Instance.objects.exclude(status="terminated").exists()
    assert set(Host.objects.values_list("agent_status", flat=True)) == {"offline"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("attempt", range(3))
def test_release_racing_the_hosts_return_credits_once_and_ends_consistent(catalog, settings, attempt):
    # given: a host silent for three hours, marked offline, with a running instance
    settings.SLA_GRACE_SECONDS = 300
    settings.HOST_LOST_AFTER_SECONDS = 7200
    lost = HostFactory(organization=OrganizationFactory(), name="lost", **l4_host_data())
    register(lost)
    buyer = UserFactory()
    instance = running_on(lost, buyer)
    Host.objects.filter(pk=lost.pk).update(agent_status="online", last_heartbeat_at=timezone.now() - timedelta(hours=3))
    Instance.objects.filter(pk=instance.pk).update(created_at=timezone.now() - timedelta(hours=4))
    assert hosts_mark_offline().done == 1
    start = threading.Barrier(3)

    def release():
        try:
            start.wait()
            return hosts_release_lost().done
        finally:
            connections.close_all()

    def come_back():
        try:
            start.wait()
            beat(Host.objects.get(pk=lost.pk), instance)
            return 0
        finally:
            connections.close_all()

    # when: two release workers and the host's return race
    with ThreadPoolExecutor(3) as pool:
        results = [f.result() for f in [pool.submit(release), pool.submit(release), pool.submit(come_back)]]

    # then: the outage is credited exactly once, and the instance is either released or kept whole
    outage = HostOutage.objects.get(host=lost)
    assert LedgerTransaction.objects.filter(key=f"sla:{outage.pk}:{instance.pk}").count() == 1
    assert buyer.notifications.filter(kind="sla_credit").count() == 1
    instance.refresh_from_db()
    if sum(results):
        assert sum(results) == 1
        assert instance.status == InstanceStatus.TERMINATED
        assert not Allocation.objects.active().filter(instance=instance).exists()
    else:
        assert instance.status == InstanceStatus.RUNNING and instance.metered_until is not None
        assert Allocation.objects.active().filter(instance=instance).exists()
