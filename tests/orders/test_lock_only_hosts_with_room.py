"""Placement locks only hosts that have room: full hosts among the cheapest never crowd out a
listed offer that could take the order (the bug seen at 1,000 hosts: 409 with offers on sale)."""

from decimal import Decimal

import pytest

from marketplace.models import Offer
from orders import placement
from tests.factories import HostFactory, UserFactory, l4_host_data

from .conftest import order


@pytest.fixture
def market(supplier_org):
    """Two cheap L4 hosts and one dearer one."""
    cheap = [
        HostFactory(organization=supplier_org, name=f"cheap-{i}", **l4_host_data(price_per_unit_hour=Decimal("0.30")))
        for i in range(2)
    ]
    dear = HostFactory(organization=supplier_org, name="dear", **l4_host_data(price_per_unit_hour=Decimal("0.50")))
    return cheap, dear


def test_an_order_succeeds_while_a_listed_offer_can_take_it(buyer, market, monkeypatch):
    _, dear = market
    monkeypatch.setattr(placement, "MAX_LOCKED_CANDIDATE_HOSTS", 2)
    filler = UserFactory(email="filler@example.com")
    order(filler, count=8)  # both cheap hosts full
    assert Offer.objects.listed().filter(host=dear, instance_type__name="l4-24g.1x", available_count=4).exists()
    placed = order(buyer, count=3)
    assert {i.host_id for i in placed.instances.all()} == {dear.pk}


def test_only_hosts_with_room_are_locked_with_a_small_margin(buyer, market, monkeypatch):
    cheap, dear = market
    target_hosts = []
    real = placement.hosts_lock

    def recording(queryset):
        locked = real(queryset)
        target_hosts.append([host.pk for host in locked])
        return locked

    monkeypatch.setattr(placement, "hosts_lock", recording)
    order(UserFactory(email="filler@example.com"), count=4)  # cheap-0 full
    target_hosts.clear()
    order(buyer, count=1)
    assert cheap[0].pk not in target_hosts[0]
    assert set(target_hosts[0]) == {cheap[1].pk, dear.pk}
