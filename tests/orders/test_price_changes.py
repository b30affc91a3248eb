"""A new price applies to new rentals; running ones keep theirs until the renter accepts."""

from decimal import Decimal

import pytest
from freezegun import freeze_time

from billing.models import UsageRecord
from orders.agent import instance_agent_report
from orders.metering import meter_usage
from orders.supply import host_update
from tests.billing.conftest import at
from tests.conftest import bearer_client

from .conftest import order

pytestmark = pytest.mark.django_db


def test_running_rentals_keep_their_price_until_accepted(buyer, l4_host):
    instance = instance_agent_report(instance=order(buyer).instances.get(), status="running")
    half_hour, hour = at(1800), at(3600)  # read together: the block between takes real time on a busy machine
    with freeze_time(half_hour):
        host_update(host=l4_host, price_per_unit_hour=Decimal("0.30"))
        instance.refresh_from_db()
        assert instance.price_per_hour == Decimal("0.400000")
        assert buyer.notifications.get(kind="price_change").title.endswith("$0.3000/h")
        assert order(buyer).instances.get().price_per_hour == Decimal("0.300000")  # new rentals: new price
        response = bearer_client(buyer).post(f"/api/v1/instances/{instance.pk}/accept-price/")
        assert response.status_code == 200 and response.json()["price_per_hour"] == "0.300000"
    with freeze_time(hour):
        meter_usage()
    rates = sorted(UsageRecord.objects.filter(instance=instance).values_list("seconds", "rate_per_hour"))
    assert rates == [(1800, Decimal("0.300000")), (1800, Decimal("0.400000"))]
    again = bearer_client(buyer).post(f"/api/v1/instances/{instance.pk}/accept-price/")
    assert again.status_code == 409 and again.json()["code"] == "price_unchanged"


def test_spot_and_reserved_prices_are_fixed(buyer, l4_host):
    spot = order(buyer, pricing="spot", max_price_per_hour=Decimal("0.30")).instances.get()
    host_update(host=l4_host, price_per_unit_hour=Decimal("0.50"))
    response = bearer_client(buyer).post(f"/api/v1/instances/{spot.pk}/accept-price/")
    assert response.status_code == 409 and response.json()["code"] == "price_fixed"
