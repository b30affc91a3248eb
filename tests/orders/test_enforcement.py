from decimal import Decimal

import pytest
from django.core import mail
from freezegun import freeze_time

from accounts.models import Notification
from billing.ledger import credit_grant
from billing.selectors import wallet_balance
from billing.settlement import settle_usage
from orders.agent import instance_agent_report
from orders.enforcement import low_balance_check
from orders.metering import meter_usage
from orders.models import Instance
from tests.orders.conftest import order

from .conftest import at

pytestmark = pytest.mark.django_db


def test_warns_under_an_hour_of_runway_then_stops_at_zero(poor_buyer, l4_host, django_capture_on_commit_callbacks):
    credit_grant(user=poor_buyer, amount=Decimal("0.60"), reason="test", key="c")
    instance = instance_agent_report(instance=order(poor_buyer).instances.get(), status="running")

    with freeze_time(at(1800)):  # $0.20 used, $0.40 left: exactly an hour: no warning yet
        meter_usage()
        settle_usage()
        assert low_balance_check() == (0, None)
    with freeze_time(at(2700)), django_capture_on_commit_callbacks(execute=True):
        meter_usage()
        settle_usage()
        assert low_balance_check() == (1, None)
        assert low_balance_check() == (0, None)  # once an hour, not every tick
    assert Notification.objects.get(user=poor_buyer, kind="balance_low")
    assert mail.outbox[-1].subject == "Low balance: under an hour left"

    with freeze_time(at(5400)), django_capture_on_commit_callbacks(execute=True):
        meter_usage()
        settle_usage()
        assert wallet_balance(poor_buyer) <= 0
        assert low_balance_check() == (1, None)
    instance.refresh_from_db()
    assert instance.status == "stopping"
    assert instance.events.last().actor == "platform"
    assert Notification.objects.filter(user=poor_buyer, kind="balance_exhausted").exists()
    assert Instance.objects.get(pk=instance.pk).metered_until is not None  # its disk still accrues
