"""Reliability from heartbeat gaps, automatic (de)verification, automatic SLA credits."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from freezegun import freeze_time

from billing.ledger import supplier_payable
from billing.models import LedgerTransaction
from billing.selectors import account_balance, wallet_balance
from marketplace.models import AuditEntry
from orders.agent import agent_heartbeat, hosts_mark_offline
from orders.reliability import host_reliability_refresh
from suppliers.agent_services import (
    agent_register,
    agent_report_inventory,
    agent_report_selftest,
    host_registration_token_issue,
)
from suppliers.models import HostOutage
from suppliers.reliability import uptime
from tests.factories import HostFactory, l4_host_data
from tests.orders.conftest import order

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
    "source": "file",
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


@pytest.mark.django_db
def test_outages_lower_reliability_and_deverify(host, buyer):
    with freeze_time(NOW - timedelta(days=10)):
        register(host)
    agent_report_inventory(host=host, inventory=L4_INVENTORY)
    agent_report_selftest(host=host, result={"checks": [{"name": "disk", "ok": True}]})
    HostOutage.objects.create(host=host, started_at=NOW - timedelta(days=3), ended_at=NOW - timedelta(days=1, hours=12))
    host_reliability_refresh(host=host)
    host.refresh_from_db()
    assert host.reliability == Decimal("0.8500")
    assert not host.verified
    assert host.offers.exists() and host.offers.first().reliability == Decimal("0.8500")


@pytest.mark.django_db
def test_lost_host_earns_the_buyer_an_automatic_sla_credit(host, buyer, supplier_org, settings):
    settings.SLA_GRACE_SECONDS = 300
    register(host)
    instance = order(buyer).instances.get()  # $0.40/h
    agent_heartbeat(host=host, instances=[])
    wallet_before = wallet_balance(buyer)
    payable_before = account_balance(supplier_payable(supplier_org))
    with freeze_time(timezone.now() + timedelta(minutes=65)):
        assert hosts_mark_offline() == [host.pk]
        agent_heartbeat(host=host, instances=[])  # back after ~65 minutes
    outage = HostOutage.objects.get(host=host)
    assert outage.ended_at is not None
    # 65 min gap - 5 min grace = 60 min lost; 5 x $0.40 = $2.00.
    credit = wallet_balance(buyer) - wallet_before
    assert Decimal("1.99") <= credit <= Decimal("2.01")
    assert account_balance(supplier_payable(supplier_org)) == payable_before - credit
    transaction = LedgerTransaction.objects.get(key=f"sla:{outage.pk}:{instance.pk}")
    assert transaction.reference["gap_seconds"] >= 3900 and transaction.reference["multiple"] == "5"
    assert buyer.notifications.filter(kind="sla_credit").exists()


@pytest.mark.django_db
def test_short_gaps_within_grace_earn_nothing(host, buyer):
    register(host)
    order(buyer)
    agent_heartbeat(host=host, instances=[])
    before = wallet_balance(buyer)
    with freeze_time(timezone.now() + timedelta(minutes=3)):
        hosts_mark_offline()
        agent_heartbeat(host=host, instances=[])
    assert wallet_balance(buyer) == before
