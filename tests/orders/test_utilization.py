"""Accelerator readings from heartbeats: one kept a minute for the last hour in the instance's
report row, shown as a chart with uptime and cost so far, to the renter and staff only."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from freezegun import freeze_time

from orders.agent import agent_heartbeat
from orders.models import AgentUsageReport
from tests.conftest import bearer_client
from tests.factories import UserFactory

from .conftest import usage_paid


def beat(host, instance, utilization, memory):
    counters = {
        "uptime_seconds": 120.0,
        "accelerator_utilization_percent": utilization,
        "accelerator_memory_used_mib": memory,
    }
    agent_heartbeat(host=host, instances=[{"id": instance.pk, "status": "running", "usage": counters}])


def test_one_reading_a_minute_for_the_last_hour(running, l4_host):
    with freeze_time("2026-11-26 10:00:00") as clock:
        beat(l4_host, running, 50.0, 1000.0)
        clock.tick(10)
        beat(l4_host, running, 99.0, 2000.0)  # within the minute: not kept
        for _ in range(70):
            clock.tick(60)
            beat(l4_host, running, 75.0, 3000.0)
        beat(l4_host, running, 250.0, -1)  # out of range: dropped
    samples = AgentUsageReport.objects.get(instance=running).utilization
    assert len(samples) == 60 and samples[-1][1:] == [75.0, 3000.0]
    assert samples[-1][0] - samples[0][0] == 59 * 60


@pytest.mark.django_db
def test_the_api_and_page_show_the_chart_uptime_and_cost(client, buyer, running, l4_host):
    beat(l4_host, running, 42.0, 12345.0)
    usage_paid(running, 3600)  # one hour at $0.40
    api = bearer_client(buyer).get(f"/api/v1/instances/{running.pk}/utilization/").json()
    assert api["samples"][0]["utilization_percent"] == 42.0 and api["uptime_seconds"] == 120.0
    assert Decimal(api["cost_so_far"]) == Decimal("0.400000")
    assert (
        bearer_client(UserFactory(email="x@example.com"))
        .get(f"/api/v1/instances/{running.pk}/utilization/")
        .status_code
        == 404
    )

    client.force_login(buyer)
    page = client.get(reverse("orders:instance_utilization", args=[running.pk])).content.decode()
    assert "<svg" in page and "42.0% accelerator utilization" in page and "12345 MiB" in page
    assert "$0.40" in page and str(timedelta(seconds=120)) in page
    assert 'class="series-utilization"' in page and "60 min ago" in page
