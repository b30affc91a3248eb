"""Every buyer is checked on every tick whatever their number (keyset walks re-enqueued until done),
and what a buyer can owe is bounded: at zero balance a kept disk is released after the grace."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time

from accounts.models import Notification
from billing.ledger import Kind, buyer_wallet, platform_account, post_transaction
from billing.models import UsageRecord
from billing.selectors import wallet_balance
from billing.settlement import settle_usage
from billing.tasks import low_balance_check_task
from marketplace.models import InstanceType
from marketplace.tasks import walk_step
from marketplace.walks import Walk, walk_to_end
from orders.agent import agent_heartbeat, instance_agent_report
from orders.enforcement import low_balance_check
from orders.lifecycle import instance_stop
from orders.metering import disk_grace_cost, meter_usage
from orders.models import Allocation, Instance
from orders.reliability import hosts_reliability_refresh
from suppliers.agent_services import agent_register, host_registration_token_issue
from tests.conftest import bearer_client
from tests.factories import HostFactory, UserFactory
from tests.orders.conftest import order
from tests.orders.test_pages import RENT
from tests.support.celery_worker import celery_worker, wait_until

pytestmark = pytest.mark.django_db


def drain(buyer) -> None:
    """Spend the buyer's whole balance (as usage would)."""
    balance = wallet_balance(buyer)
    post_transaction(
        kind="usage",
        key=f"drain:{buyer.pk}:{timezone.now().timestamp()}",
        description="spent",
        postings=[(buyer_wallet(buyer), -balance), (platform_account(Kind.PLATFORM_REVENUE), balance)],
    )


def running_instance(buyer) -> Instance:
    return instance_agent_report(instance=order(buyer).instances.get(), status="running")


# --- Every buyer is checked ----------------------------------------------------------------------


def test_buyers_past_the_first_batch_are_stopped_too(l4_host):
    buyers = [UserFactory(email=f"b{i}@example.com", credit=Decimal("5.00")) for i in range(4)]
    instances = [running_instance(b) for b in buyers]
    for buyer in buyers:
        drain(buyer)
    first = low_balance_check(batch_size=3)
    assert first.done == 3 and first.next_after == buyers[2].pk
    assert walk_to_end(low_balance_check, batch_size=3) == 1  # the first three are stopped already
    assert {Instance.objects.get(pk=i.pk).status for i in instances} == {"stopping"}


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_walks_every_buyer_one_batch_per_task(catalog, l4_host):
    cache.delete("walk:billing.tasks.low_balance_check_task")
    buyers = [UserFactory(email=f"w{i}@example.com", credit=Decimal("5.00")) for i in range(3)]
    instances = [running_instance(b) for b in buyers]
    for buyer in buyers:
        drain(buyer)
    with celery_worker() as queue:
        low_balance_check_task.apply_async(kwargs={"batch_size": 1}, queue=queue)
        stopped = wait_until(
            lambda: Instance.objects.filter(pk__in=[i.pk for i in instances], status="stopping").count() == 3
        )
    assert stopped, "the walk did not reach every buyer"


class FakeTask:
    name = "tests.fake_walk"

    def __init__(self, task_id="beat-1"):
        self.request = type("Request", (), {"delivery_info": {"routing_key": "q1"}, "id": task_id})()
        self.enqueued: list[dict] = []

    def apply_async(self, *, kwargs, queue):
        self.enqueued.append({"kwargs": kwargs, "queue": queue})


def test_a_walk_goes_on_on_its_queue_and_a_second_start_adds_no_walk():
    cache.delete("walk:tests.fake_walk")
    task, calls = FakeTask(), []

    def service(*, after, batch_size):
        calls.append(after)
        return Walk(done=batch_size, next_after=after + batch_size) if after < 4 else Walk(done=1, next_after=None)

    assert walk_step(task, service, after=0, batch_size=2) == 2
    assert task.enqueued == [{"kwargs": {"after": 2, "batch_size": 2}, "queue": "q1"}]
    assert walk_step(FakeTask("beat-2"), service, after=0, batch_size=2) == 0  # a second beat while it runs
    assert calls == [0]
    walk_step(task, service, after=2, batch_size=2)
    walk_step(task, service, after=4, batch_size=2)
    assert calls == [0, 2, 4] and len(task.enqueued) == 2
    assert walk_step(task, service, after=0, batch_size=2) == 2  # finished: the next tick starts again


def test_a_first_batch_delivered_again_after_its_worker_died_carries_the_walk_on():
    """acks late: a worker killed after the first batch committed but before it enqueued the next
    gets the same message (same task id) again; its own guard must not stop the walk."""
    cache.delete("walk:tests.fake_walk")
    calls = []

    def service(*, after, batch_size):
        calls.append(after)
        return Walk(done=batch_size, next_after=after + batch_size)

    killed, again = FakeTask("first"), FakeTask("first")
    walk_step(killed, service, after=0, batch_size=2)
    killed.enqueued.clear()  # the worker died before the next batch went out
    assert walk_step(again, service, after=0, batch_size=2) == 2
    assert again.enqueued == [{"kwargs": {"after": 2, "batch_size": 2}, "queue": "q1"}]
    assert walk_step(FakeTask("another-beat"), service, after=0, batch_size=2) == 0


def test_reliability_reaches_hosts_past_the_first_batch(supplier_org):
    hosts = [HostFactory(organization=supplier_org, name=f"r{i}") for i in range(3)]
    for host in hosts:
        agent_register(token=host_registration_token_issue(host=host, user=None))
    assert walk_to_end(hosts_reliability_refresh, batch_size=2) == 3
    assert all(h.reliability is not None for h in type(hosts[0]).objects.filter(pk__in=[h.pk for h in hosts]))


def test_records_too_short_to_charge_do_not_hold_settlement_up(buyer, l4_host):
    instance = running_instance(buyer)
    start = timezone.now() - timedelta(hours=1)
    tiny = [
        UsageRecord(
            instance=instance,
            buyer=buyer,
            organization_id=l4_host.organization_id,
            kind="storage",
            window_start=start + timedelta(seconds=i),
            window_end=start + timedelta(seconds=i + 1),
            seconds=1,
            rate_per_hour=Decimal("0.000001"),
        )
        for i in range(4)
    ]
    UsageRecord.objects.bulk_create(tiny)
    UsageRecord.objects.create(
        instance=instance,
        buyer=buyer,
        organization_id=l4_host.organization_id,
        kind="compute",
        window_start=start + timedelta(seconds=10),
        window_end=start + timedelta(seconds=3610),
        seconds=3600,
        rate_per_hour=Decimal("0.40"),
    )
    assert settle_usage(batch_size=2) == 1  # before: the first batch of tiny records, again and again
    assert UsageRecord.objects.filter(kind="compute", settled_by__isnull=False).count() == 1


# --- Arrears are bounded -------------------------------------------------------------------------


def stopped_at_zero(buyer) -> Instance:
    instance = running_instance(buyer)
    instance_stop(instance=instance)
    instance = instance_agent_report(instance=instance, status="stopped")
    drain(buyer)
    return instance


def test_at_zero_a_kept_disk_is_released_after_the_grace_and_the_debt_is_bounded(
    l4_host, settings, django_capture_on_commit_callbacks
):
    buyer = UserFactory(email="arrears@example.com", credit=Decimal("5.00"))
    instance = stopped_at_zero(buyer)
    assert Allocation.objects.active().filter(instance=instance).exists()  # the kept disk holds its space
    start = timezone.now()
    grace = timedelta(days=settings.STOPPED_DISK_GRACE_DAYS)

    with django_capture_on_commit_callbacks(execute=True):
        low_balance_check()
    instance.refresh_from_db()
    assert instance.status == "stopped" and start + grace <= instance.disk_release_at <= timezone.now() + grace
    told = Notification.objects.get(user=buyer, kind="balance_exhausted")
    assert f"{instance.disk_release_at:%Y-%m-%d %H:%M}" in told.body
    low_balance_check()
    assert Notification.objects.filter(user=buyer, kind="balance_exhausted").count() == 1  # once, not every tick

    with freeze_time(instance.disk_release_at - timedelta(hours=23)):
        meter_usage()
        settle_usage()
        low_balance_check()
        assert Notification.objects.filter(user=buyer, kind="disk_release_soon").count() == 1
        low_balance_check()
        assert Notification.objects.filter(user=buyer, kind="disk_release_soon").count() == 1
        assert Instance.objects.get(pk=instance.pk).status == "stopped"

    with freeze_time(instance.disk_release_at + timedelta(seconds=1)):
        meter_usage()
        settle_usage()
        low_balance_check()
        released = Instance.objects.get(pk=instance.pk)
        assert released.status == "terminating" and released.metered_until is None
        assert released.events.last().actor == "platform"
        assert Notification.objects.filter(user=buyer, kind="disk_released").exists()
        assert not Allocation.objects.active().filter(instance=instance).exists()  # the supplier's space is free
        owed = -wallet_balance(buyer)
    limit = disk_grace_cost(
        disk_gb=instance.instance_type.disk_gb, storage_price_per_gb_month=instance.storage_price_per_gb_month
    )
    assert Decimal(0) < owed <= limit + Decimal("0.01")

    with freeze_time(instance.disk_release_at + timedelta(days=180)):
        meter_usage()
        settle_usage()
        assert -wallet_balance(buyer) == owed  # nothing more, ever


def test_a_top_up_during_the_grace_keeps_the_disk(l4_host, buyer):
    instance = stopped_at_zero(buyer)
    low_balance_check()
    release_at = Instance.objects.get(pk=instance.pk).disk_release_at
    assert release_at is not None
    post_transaction(
        kind="credit",
        key="top-up-during-grace",
        description="top-up",
        postings=[(platform_account(Kind.CREDITS_EXPENSE), Decimal("-50")), (buyer_wallet(buyer), Decimal("50"))],
    )
    low_balance_check()
    assert Instance.objects.get(pk=instance.pk).disk_release_at is None
    with freeze_time(release_at + timedelta(minutes=1)):
        low_balance_check()
        assert Instance.objects.get(pk=instance.pk).status == "stopped"


def test_the_quote_shows_what_a_stopped_disk_costs_and_the_grace(buyer, l4_host, client):
    body = bearer_client(buyer).post("/api/v1/quotes/", {"instance_type": "l4-24g.1x", "count": 2}, format="json")
    quote = body.json()
    assert body.status_code == 200, quote
    disk_gb = InstanceType.objects.get(name="l4-24g.1x").disk_gb
    one = disk_grace_cost(disk_gb=disk_gb, storage_price_per_gb_month=l4_host.storage_price_per_gb_month)
    assert quote["stopped_disk_grace_days"] == 7
    assert Decimal(quote["stopped_disk_grace_cost"]) == 2 * one > 0
    assert Decimal(quote["stopped_disk_per_hour"]) > 0
    client.force_login(buyer)
    offer = l4_host.offers.get(instance_type__name="l4-24g.1x")
    page = client.post(reverse("orders:offer_quote", args=[offer.pk]), RENT)
    assert "Stopped disks" in page.content.decode() and "kept 7 days" in page.content.decode()


def test_the_instance_says_when_its_disk_is_released(buyer, l4_host, client):
    instance = stopped_at_zero(buyer)
    low_balance_check()
    released_at = Instance.objects.get(pk=instance.pk).disk_release_at
    body = bearer_client(buyer).get(f"/api/v1/instances/{instance.pk}/").json()
    assert body["disk_release_at"].startswith(f"{released_at:%Y-%m-%dT%H:%M}")
    client.force_login(buyer)
    page = client.get(reverse("orders:instance_detail", args=[instance.pk])).content.decode()
    assert "top up to keep this disk" in page


# --- No second lost -------------------------------------------------------------------------------


def test_fractions_of_a_second_carry_to_the_next_tick(buyer, l4_host):
    """Ticks 1.5 s apart bill 1 s, then 2 s (the carried half): three ticks, 4 whole seconds of 4.5,
    where dropping each fraction billed 3."""
    instance = running_instance(buyer)
    start = Instance.objects.get(pk=instance.pk).metered_until
    for tick in (1.5, 3.0, 4.5):
        with freeze_time(start + timedelta(seconds=tick)):
            agent_heartbeat(host=l4_host, instances=[{"id": instance.pk, "status": "running", "usage": {}}])
            meter_usage()
    records = UsageRecord.objects.filter(instance=instance, kind="compute").order_by("window_start")
    assert [r.seconds for r in records] == [1, 2, 1]
    assert records.first().window_start == start
    assert Instance.objects.get(pk=instance.pk).metered_until == start + timedelta(seconds=4)
