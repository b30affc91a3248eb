"""Hosts that go silent: reliability refresh (and deverification), automatic SLA credits."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from freezegun import freeze_time

from billing.ledger import supplier_payable
from billing.models import LedgerTransaction
from billing.selectors import account_balance, wallet_balance
from orders.agent import agent_heartbeat, hosts_mark_offline
from orders.reliability import host_reliability_refresh
from suppliers.agent_services import agent_report_inventory, agent_report_selftest
from suppliers.models import HostOutage
from tests.orders.conftest import order
from tests.suppliers.test_trust import L4_INVENTORY, NOW, host, register

__all__ = ["host"]  # the fixture


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
    instance = order(buyer, allow_unverified=True).instances.get()  # $0.40/h, on a host not verified yet
    agent_heartbeat(host=host, instances=[])
    wallet_before = wallet_balance(buyer)
    payable_before = account_balance(supplier_payable(supplier_org))
    with freeze_time(timezone.now() + timedelta(minutes=65)):
        assert hosts_mark_offline().done == 1
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
    order(buyer, allow_unverified=True)
    agent_heartbeat(host=host, instances=[])
    before = wallet_balance(buyer)
    with freeze_time(timezone.now() + timedelta(minutes=3)):
        hosts_mark_offline()
        agent_heartbeat(host=host, instances=[])
    assert wallet_balance(buyer) == before
