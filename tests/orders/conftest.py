import datetime as dt

import pytest
from django.utils import timezone

from billing.models import UsageRecord
from billing.settlement import settle_usage
from orders.agent import instance_agent_report
from orders.placement import order_place
from orders.requests import OrderRequest
from tests.factories import HostFactory, UserFactory, l4_host_data


@pytest.fixture
def l4_host(supplier_org):
    """4 x L4, fine slicing, us-east: four l4-24g.1x slots."""
    return HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())


@pytest.fixture
def running(buyer, l4_host):
    """A running on-demand l4-24g.1x at $0.40/h, metered from now."""
    instance = order(buyer).instances.get()
    return instance_agent_report(instance=instance, status="running")


@pytest.fixture
def poor_buyer(db):
    return UserFactory(email="poor@example.com", credit=0)


def order(buyer, **fields):
    fields.setdefault("instance_type", "l4-24g.1x")
    fields.setdefault("image", "pytorch/pytorch:2.5.1")
    return order_place(buyer=buyer, request=OrderRequest(**fields))


def at(seconds: float):
    return timezone.now() + timezone.timedelta(seconds=seconds)


def usage_paid(instance, seconds: int) -> UsageRecord:
    """One settled usage record of `seconds` for the instance, paid from the buyer's wallet."""
    start = timezone.now() - dt.timedelta(seconds=seconds + 60)
    record = UsageRecord.objects.create(
        instance=instance,
        buyer=instance.buyer,
        organization=instance.host.organization,
        kind=UsageRecord.Kind.COMPUTE,
        window_start=start,
        window_end=start + dt.timedelta(seconds=seconds),
        seconds=seconds,
        rate_per_hour=instance.price_per_hour,
    )
    settle_usage()
    record.refresh_from_db()
    assert record.settled_by_id is not None
    return record
