"""Spot buyers are told: a preemption notice (in-app and by email) names the grace time, a resume
is announced too, and a repeated step sends nothing twice."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail

from accounts.models import Notification
from orders.lifecycle import instance_terminate
from orders.models import Instance, InstanceStatus
from orders.placement import preemption_notify
from orders.spot import spot_resume_notify
from tests.orders.conftest import order

pytestmark = pytest.mark.django_db


@pytest.fixture
def spot_buyer(other_supplier):
    return other_supplier


def fill_with_spot(spot_buyer) -> list[Instance]:
    return list(order(spot_buyer, count=4, pricing="spot", max_price_per_hour=Decimal("0.20")).instances.all())


def test_a_preempted_spot_buyer_is_told_the_grace_time_in_app_and_by_email(
    buyer, spot_buyer, l4_host, django_capture_on_commit_callbacks
):
    fill_with_spot(spot_buyer)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        order(buyer)
    victim = Instance.objects.get(buyer=spot_buyer, status=InstanceStatus.PREEMPTED)
    notice = Notification.objects.get(user=spot_buyer, kind="spot_preempted")
    deadline = f"{victim.preemption_deadline:%Y-%m-%d %H:%M:%S} UTC"
    assert deadline in notice.body and f"i-{victim.pk}" in notice.title
    emails = [m for m in mail.outbox if m.to == [spot_buyer.email]]
    assert len(emails) == 1 and deadline in emails[0].body


def test_a_resumed_spot_buyer_is_told_too(buyer, spot_buyer, l4_host, django_capture_on_commit_callbacks):
    fill_with_spot(spot_buyer)
    on_demand = order(buyer).instances.get()
    victim = Instance.objects.get(buyer=spot_buyer, status=InstanceStatus.PREEMPTED)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        instance_terminate(instance=on_demand, actor_user=buyer)
    notice = Notification.objects.get(user=spot_buyer, kind="spot_resumed")
    assert f"i-{victim.pk}" in notice.title
    assert [m.subject for m in mail.outbox if m.to == [spot_buyer.email]] == [notice.title]


def test_a_repeated_step_sends_nothing_twice(buyer, spot_buyer, l4_host, django_capture_on_commit_callbacks):
    fill_with_spot(spot_buyer)
    on_demand = order(buyer).instances.get()
    victim = Instance.objects.get(buyer=spot_buyer, status=InstanceStatus.PREEMPTED)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert preemption_notify(instance=victim) is None  # already told for this preemption
    assert Notification.objects.filter(user=spot_buyer, kind="spot_preempted").count() == 1
    instance_terminate(instance=on_demand, actor_user=buyer)
    victim.refresh_from_db()
    assert spot_resume_notify(instance=victim) is None
    assert Notification.objects.filter(user=spot_buyer, kind="spot_resumed").count() == 1
    assert not mail.outbox


def test_a_second_preemption_is_a_second_notice(buyer, spot_buyer, l4_host):
    fill_with_spot(spot_buyer)
    first = order(buyer).instances.get()
    instance_terminate(instance=first, actor_user=buyer)  # the victim resumes
    order(buyer)  # and is preempted again (the lowest bid, the newest on ties)
    assert Notification.objects.filter(user=spot_buyer, kind="spot_preempted").count() == 2
