import pytest

from orders.placement import order_place
from orders.requests import OrderRequest
from tests.factories import HostFactory, l4_host_data


@pytest.fixture
def l4_host(supplier_org):
    """4 x L4, fine slicing, us-east: four l4-24g.1x slots."""
    return HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())


def order(buyer, **fields):
    fields.setdefault("instance_type", "l4-24g.1x")
    fields.setdefault("image", "pytorch/pytorch:2.5.1")
    return order_place(buyer=buyer, request=OrderRequest(**fields))
