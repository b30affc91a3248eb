import pytest
from django.utils import timezone

from orders.agent import instance_agent_report
from tests.factories import HostFactory, UserFactory, l4_host_data
from tests.orders.conftest import order


@pytest.fixture
def l4_host(supplier_org):
    return HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())


@pytest.fixture
def running(buyer, l4_host):
    """A running on-demand l4-24g.1x at $0.40/h, metered from now."""
    instance = order(buyer).instances.get()
    return instance_agent_report(instance=instance, status="running")


@pytest.fixture
def poor_buyer(db):
    return UserFactory(email="poor@example.com", credit=0)


def at(seconds: float):
    return timezone.now() + timezone.timedelta(seconds=seconds)
