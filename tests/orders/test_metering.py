"""Per-second metering: windows from transitions and beat ticks, set-based, re-runs add nothing."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from freezegun import freeze_time

from billing.models import UsageRecord
from orders.agent import instance_agent_report
from orders.lifecycle import instance_start, instance_stop
from orders.metering import meter_usage
from orders.models import Instance
from tests.factories import HostFactory, l4_host_data
from tests.orders.conftest import order

from .conftest import at

pytestmark = pytest.mark.django_db


def test_running_instance_accrues_compute_per_second(running):
    started = running.metered_until  # from the metering start, not the wall clock (a slow start would shift it)
    with freeze_time(started + timedelta(seconds=61)):
        assert meter_usage() == 1
        assert meter_usage() == 0  # a re-run at the same time adds nothing
    with freeze_time(started + timedelta(seconds=90.5)):
        instance_stop(instance=running)  # closes the compute window at the stop
    records = list(UsageRecord.objects.filter(instance=running).order_by("window_start"))
    assert [(r.kind, r.seconds) for r in records] == [("compute", 61), ("compute", 29)]
    assert all(r.rate_per_hour == Decimal("0.400000") for r in records)


def test_stopped_instance_accrues_storage_for_its_kept_disk(running):
    with freeze_time(at(10)):
        instance_stop(instance=running)
    with freeze_time(at(3610)):
        meter_usage()
    storage = UsageRecord.objects.get(instance=running, kind="storage")
    assert storage.seconds == 3600
    assert storage.rate_per_hour == Decimal("0.068493")  # 500 GB x $0.10 / 730 h
    with freeze_time(at(3620)):
        instance_agent_report(instance=Instance.objects.get(pk=running.pk), status="stopped")
        instance_start(instance=Instance.objects.get(pk=running.pk))
    assert Instance.objects.get(pk=running.pk).metered_until is None  # starting: nothing accrues


def test_nothing_accrues_before_running(buyer, l4_host):
    instance = order(buyer).instances.get()
    with freeze_time(at(600)):
        assert meter_usage() == 0
    assert instance.metered_until is None


def test_reserved_terms_accrue_for_the_whole_term_even_when_stopped(buyer, l4_host):
    reserved = order(buyer, pricing="reserved", term_hours=168).instances.get()
    with freeze_time(at(30)):
        instance_stop(instance=reserved)
    with freeze_time(at(7200)):
        meter_usage()
    compute = sum(UsageRecord.objects.filter(instance=reserved, kind="compute").values_list("seconds", flat=True))
    assert compute == 7200
    with freeze_time(at(169 * 3600)):
        meter_usage()
    compute = sum(UsageRecord.objects.filter(instance=reserved, kind="compute").values_list("seconds", flat=True))
    assert 168 * 3600 - 1 <= compute <= 168 * 3600  # the term, never beyond it (whole seconds)


def test_metering_is_set_based(buyer, supplier_org):

    def run(n):
        for _ in range(n):
            host = HostFactory(organization=supplier_org, **l4_host_data())
            instance = order(buyer, offer=host.offers.get(instance_type__name="l4-24g.1x").pk, instance_type=None)
            instance_agent_report(instance=instance.instances.get(), status="running")
        with freeze_time(at(120)), CaptureQueriesContext(connection) as queries:
            meter_usage()
        return len(queries)

    few = run(2)
    UsageRecord.objects.all().delete()
    many = run(8)
    assert few == many
