"""Expiry and spot resume walk every row in keyset batches (see `marketplace.walks`)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from freezegun import freeze_time

from marketplace.models import Offer
from marketplace.walks import Walk
from orders.lifecycle import instances_expire
from orders.models import Allocation, Instance, InstanceStatus
from orders.spot import spot_resume
from orders.tasks import instances_expire_task, spot_resume_task
from tests.factories import HostFactory, UserFactory, l4_host_data
from tests.orders.conftest import order

pytestmark = pytest.mark.django_db


def test_expiry_walks_every_due_instance_in_batches(buyer, l4_host):
    instances = sorted(order(buyer, count=3, terminate_after_hours=1).instances.all(), key=lambda i: i.pk)
    with freeze_time(timezone.now() + timedelta(hours=2)):
        first = instances_expire(batch_size=2)
        assert first == Walk(done=2, next_after=instances[1].pk)
        assert instances_expire(after=first.next_after, batch_size=2) == Walk(done=1, next_after=None)
        assert instances_expire(batch_size=2) == Walk(done=0, next_after=None)
    assert {i.status for i in Instance.objects.filter(pk__in=[i.pk for i in instances])} == {InstanceStatus.TERMINATING}


def test_the_expiry_task_still_reports_what_it_did(buyer, l4_host):
    order(buyer, terminate_after_hours=1)
    with freeze_time(timezone.now() + timedelta(hours=2)):
        assert instances_expire_task(batch_size=10) == 1


@pytest.fixture
def three_hosts_with_preempted_spot(supplier_org, buyer):
    """Three full L4 hosts, each with one preempted spot instance whose capacity is now free (its
    on-demand taker released it without the resume step)."""
    hosts = [HostFactory(organization=supplier_org, name=f"l4-{i}", **l4_host_data()) for i in range(3)]
    spot_buyer = UserFactory(email="spot@example.com")
    order(spot_buyer, count=12, pricing="spot", max_price_per_hour=Decimal("0.20"))
    for host in hosts:
        offer = Offer.objects.get(host=host, instance_type__name="l4-24g.1x")
        taker = order(buyer, instance_type=None, offer=offer.pk).instances.get()
        Allocation.objects.filter(instance=taker).update(released_at=timezone.now())
    assert Instance.objects.filter(buyer=spot_buyer, status=InstanceStatus.PREEMPTED).count() == 3
    return sorted(hosts, key=lambda h: h.pk)


def test_spot_resume_walks_every_host_in_batches(three_hosts_with_preempted_spot):
    hosts = three_hosts_with_preempted_spot
    first = spot_resume(batch_size=2)
    assert first == Walk(done=2, next_after=hosts[1].pk)
    assert spot_resume(after=first.next_after, batch_size=2) == Walk(done=1, next_after=None)
    assert not Instance.objects.filter(status=InstanceStatus.PREEMPTED).exists()


def test_the_resume_task_still_reports_what_it_did(three_hosts_with_preempted_spot):
    assert spot_resume_task(batch_size=10) == 3
