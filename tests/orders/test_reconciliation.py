"""The heartbeat's instance reports are reconciled with the platform's state, on the agent's own host
only, set-based; the agent's usage counters are kept as evidence and disagreements flagged."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from freezegun import freeze_time

from billing.models import UsageRecord
from orders.agent import agent_heartbeat, instance_agent_report
from orders.lifecycle import instance_stop, instance_terminate
from orders.metering import meter_usage
from orders.models import (
    AgentUsageDisagreement,
    AgentUsageReport,
    Allocation,
    HostCommand,
    Instance,
    InstanceEvent,
    InstanceStatus,
)
from tests.factories import HostFactory, l4_host_data
from tests.orders.conftest import order
from tests.suppliers.test_agent_api import agent_client
from tests.suppliers.test_trust import register

pytestmark = pytest.mark.django_db
BASE = timezone.now().replace(microsecond=0)


def at(seconds: int):
    return freeze_time(BASE + timedelta(seconds=seconds))


@pytest.fixture
def host_a(supplier_org):
    host = HostFactory(organization=supplier_org, name="a", **l4_host_data())
    register(host)
    return host


@pytest.fixture
def host_b(supplier_org):
    host = HostFactory(organization=supplier_org, name="b", **l4_host_data())
    register(host)
    return host


def running_on(host, buyer):
    placed = order(buyer, offer=host.offers.get(instance_type__name="l4-24g.1x").pk, instance_type=None)
    return instance_agent_report(instance=placed.instances.get(), status="running")


def report(instance, status="running", **usage):
    return {"id": instance.pk, "status": status, "usage": usage}


def test_a_running_instance_the_agent_stops_reporting_fails_after_the_grace(host_a, buyer, settings):
    settings.AGENT_RECONCILE_GRACE_SECONDS = 120
    with at(0):
        instance = running_on(host_a, buyer)
        agent_heartbeat(host=host_a, instances=[report(instance)])
    with at(30):
        agent_heartbeat(host=host_a, instances=[report(instance)])  # last seen running
    with at(60):
        agent_heartbeat(host=host_a, instances=[])
    with at(120):
        agent_heartbeat(host=host_a, instances=[report(instance, status="stopped")])
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.RUNNING  # within the grace: a missed report is no failure
    with at(180):
        agent_heartbeat(host=host_a, instances=[])
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.FAILED and instance.metered_until is None
    event = instance.events.get(to_status="failed")
    assert "agent does not report" in event.reason and event.actor == InstanceEvent.Actor.PLATFORM
    assert Allocation.objects.active().get(instance=instance).kind == "disk_only"
    # Billed up to the last report that vouched for it, nothing after.
    assert sum(UsageRecord.objects.filter(instance=instance).values_list("seconds", flat=True)) == 30
    with at(600):
        meter_usage()
    assert sum(UsageRecord.objects.filter(instance=instance).values_list("seconds", flat=True)) == 30


def test_an_instance_never_reported_fails_once_it_has_run_past_the_grace(host_a, buyer, settings):
    settings.AGENT_RECONCILE_GRACE_SECONDS = 120
    with at(0):
        instance = running_on(host_a, buyer)
    with at(100):
        agent_heartbeat(host=host_a, instances=[])
    assert Instance.objects.get(pk=instance.pk).status == "running"
    with at(130):
        agent_heartbeat(host=host_a, instances=[])
    assert Instance.objects.get(pk=instance.pk).status == "failed"


def test_what_the_platform_ended_but_the_agent_runs_gets_one_command(host_a, buyer):
    with at(0):
        stopped = running_on(host_a, buyer)
        ended = running_on(host_a, buyer)
        instance_stop(instance=stopped)
        instance_agent_report(instance=Instance.objects.get(pk=stopped.pk), status="stopped")
        instance_terminate(instance=ended)
        instance_agent_report(instance=Instance.objects.get(pk=ended.pk), status="terminated")
        HostCommand.objects.update(status="acknowledged")
    with at(300):
        commands = agent_heartbeat(host=host_a, instances=[report(stopped), report(ended)])
    assert sorted((c.instance_id, c.kind) for c in commands) == sorted([(stopped.pk, "stop"), (ended.pk, "terminate")])
    with at(330):
        agent_heartbeat(host=host_a, instances=[report(stopped), report(ended)])
    assert HostCommand.objects.filter(status="pending").count() == 2  # no duplicate while one is pending


def test_an_agent_reporting_another_hosts_instance_changes_nothing_of_it(host_a, host_b, buyer, settings):
    settings.AGENT_RECONCILE_GRACE_SECONDS = 120
    with at(0):
        theirs = running_on(host_b, buyer)
        gone = running_on(host_b, buyer)
        instance_terminate(instance=gone)
        agent_heartbeat(host=host_b, instances=[report(theirs, uptime_seconds=5)])
    before = Instance.objects.get(pk=theirs.pk)
    events_before = list(InstanceEvent.objects.filter(instance__host=host_b).values_list("pk", flat=True))
    commands_before = list(HostCommand.objects.filter(host=host_b).values_list("pk", "status"))
    report_before = AgentUsageReport.objects.get(instance=theirs)
    with at(30):
        # Host A claims host B's instances: stopped, running with huge counters, and ended.
        agent_heartbeat(
            host=host_a,
            instances=[report(theirs, status="stopped", uptime_seconds=1e9), report(gone, uptime_seconds=1e9)],
        )
    with at(60):
        agent_heartbeat(host=host_a, instances=[report(theirs, uptime_seconds=1e9)])
    after = Instance.objects.get(pk=theirs.pk)
    assert (after.status, after.metered_until, after.updated_at) == (
        before.status,
        before.metered_until,
        before.updated_at,
    )
    assert Instance.objects.get(pk=gone.pk).status == "terminating"
    assert list(InstanceEvent.objects.filter(instance__host=host_b).values_list("pk", flat=True)) == events_before
    assert list(HostCommand.objects.filter(host=host_b).values_list("pk", "status")) == commands_before
    report_after = AgentUsageReport.objects.get(instance=theirs)
    assert (report_after.counters, report_after.reported_at, report_after.host_id) == (
        report_before.counters,
        report_before.reported_at,
        host_b.pk,
    )
    assert not AgentUsageReport.objects.filter(host=host_a).exists()
    assert not AgentUsageDisagreement.objects.exists()
    # Host A is only told to remove what it should not run (on host A, once).
    assert set(HostCommand.objects.filter(host=host_a).values_list("instance_id", "kind", "status")) == {
        (theirs.pk, "terminate", "pending"),
        (gone.pk, "terminate", "pending"),
    }


def test_an_agent_cannot_fail_another_hosts_instance_by_leaving_it_out(host_a, host_b, buyer, settings):
    settings.AGENT_RECONCILE_GRACE_SECONDS = 120
    with at(0):
        theirs = running_on(host_b, buyer)
    with at(600):
        agent_heartbeat(host=host_a, instances=[])
    assert Instance.objects.get(pk=theirs.pk).status == "running"


def test_usage_counters_keep_the_latest_per_instance_and_flag_disagreements(host_a, buyer, settings):
    settings.AGENT_USAGE_WINDOW_SECONDS = 600
    settings.AGENT_USAGE_DISAGREEMENT_PERCENT = 10
    with at(0):
        honest = running_on(host_a, buyer)
        lying = running_on(host_a, buyer)
    for second in range(0, 1230, 30):
        with at(second):
            agent_heartbeat(
                host=host_a,
                instances=[report(honest, uptime_seconds=second), report(lying, uptime_seconds=second / 2)],
            )
            if second % 60 == 0:
                meter_usage()
    assert AgentUsageReport.objects.count() == 2  # one row per instance, not per heartbeat
    latest = AgentUsageReport.objects.get(instance=honest)
    assert latest.counters == {"uptime_seconds": 1200.0} and latest.status == "running"
    flags = list(AgentUsageDisagreement.objects.all())
    assert [f.instance_id for f in flags] == [lying.pk, lying.pk]  # two windows of 600 s
    assert all(f.agent_seconds == 300 and f.platform_seconds == 600 for f in flags)


def test_oversized_usage_counters_are_refused(host_a, buyer):
    instance = running_on(host_a, buyer)
    usage = {f"counter_{i}": 1.0 for i in range(33)}
    response = agent_client(host_a).post(
        "/api/v1/agent/heartbeat/",
        {"instances": [{"id": instance.pk, "status": "running", "usage": usage}]},
        format="json",
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_the_heartbeat_is_set_based(supplier_org, buyer):
    def queries_for(n):
        host = HostFactory(organization=supplier_org, **l4_host_data())
        register(host)
        instances = [running_on(host, buyer) for _ in range(n)]
        with at(0):
            agent_heartbeat(host=host, instances=[report(i, uptime_seconds=1) for i in instances])
        with at(30), CaptureQueriesContext(connection) as queries:
            agent_heartbeat(host=host, instances=[report(i, uptime_seconds=31) for i in instances])
        return len(queries)

    assert queries_for(1) == queries_for(4)
