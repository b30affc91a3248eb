import pytest
from django.utils import timezone

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
