"""Capacity changes race: offers must always match the host row that won."""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connections

from marketplace.models import Offer
from orders.supply import host_update
from suppliers.models import Host
from tests.factories import HostFactory, OrganizationFactory

THREADS = 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_updates_leave_offers_consistent_with_the_host(catalog):
    host = HostFactory(organization=OrganizationFactory())
    start = threading.Barrier(THREADS)

    def change_price(i: int) -> None:
        try:
            start.wait()
            price = Decimal("2.00") + Decimal(i) / 100
            host_update(host=Host.objects.get(pk=host.pk), price_per_unit_hour=price, min_rental_hours=i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(change_price, range(THREADS)))

    host.refresh_from_db()
    offers = list(Offer.objects.filter(host=host).select_related("instance_type"))
    assert offers
    for offer in offers:
        assert offer.price_per_hour == host.price_per_unit_hour * offer.instance_type.accelerator_count
    # The winning row is internally consistent: price and rental minimum came from the same writer.
    assert host.price_per_unit_hour == Decimal("2.00") + Decimal(host.min_rental_hours) / 100
