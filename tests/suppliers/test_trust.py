"""Reliability from heartbeat gaps (the pure score) and automatic (de)verification.

Reliability refresh and SLA credits for lost hosts are tested with their code in tests/orders/test_host_health.py.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from marketplace.models import AuditEntry
from suppliers.agent_services import (
    agent_register,
    agent_report_inventory,
    agent_report_selftest,
    host_registration_token_issue,
)
from suppliers.reliability import uptime
from tests.factories import HostFactory, l4_host_data

NOW = timezone.now()


def test_uptime_counts_gaps_in_the_last_30_days_and_failed_starts():
    day = timedelta(days=1)
    assert uptime(now=NOW, observed_since=NOW - 60 * day, outages=[], failed_starts=0) == 1
    # 3 days down out of 30 -> 0.9; an old outage outside the window does not count.
    outages = [(NOW - 10 * day, NOW - 7 * day), (NOW - 50 * day, NOW - 40 * day)]
    assert uptime(now=NOW, observed_since=NOW - 60 * day, outages=outages, failed_starts=0) == Decimal("0.9000")
    # Observed for 1 day only, 6 h down and two failed starts (30 min each): 1 - 7/24.
    partial = uptime(now=NOW, observed_since=NOW - day, outages=[(NOW - timedelta(hours=6), NOW)], failed_starts=2)
    assert partial == Decimal("0.7083")


L4_INVENTORY = {
    "source": "nvidia-smi",  # measured: a file typed by the supplier confirms nothing
    "accelerators": [{"index": i, "name": "NVIDIA L4", "memory_mib": 23034} for i in range(4)],
    "vcpus": 32,
    "ram_gb": 190,
    "disk_gb": 4000,
}


@pytest.fixture
def host(supplier_org):
    return HostFactory(organization=supplier_org, name="l4", verified=False, **l4_host_data())


def register(host):
    host_, _ = agent_register(token=host_registration_token_issue(host=host, user=None))
    return host_


@pytest.mark.django_db
def test_agent_confirmation_verifies_and_mismatch_deverifies(host):
    register(host)
    agent_report_inventory(host=host, inventory=L4_INVENTORY)
    host.refresh_from_db()
    assert not host.verified  # no selftest yet
    agent_report_selftest(host=host, result={"checks": [{"name": "disk", "ok": True}]})
    host.refresh_from_db()
    assert host.verified and host.offers.filter(verified=True).exists()
    agent_report_inventory(host=host, inventory={**L4_INVENTORY, "accelerators": []})
    host.refresh_from_db()
    assert not host.verified
    actions = list(AuditEntry.objects.filter(object_id=str(host.pk)).values_list("action", "reason"))
    assert ("host.deverified", "Inventory contradicts the declaration") in actions


@pytest.mark.django_db
def test_a_suppliers_first_host_needs_staff_approval_to_be_verified(supplier_org):
    first = HostFactory(organization=supplier_org, name="first", approved=False, **l4_host_data())
    register(first)
    agent_report_inventory(host=first, inventory=L4_INVENTORY)
    agent_report_selftest(host=first, result={"checks": [{"name": "disk", "ok": True}]})
    first.refresh_from_db()
    assert not first.verified
