"""Maintenance windows: renters told in advance, overlapping orders go elsewhere, offers respect it."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time

from marketplace.models import Offer
from orders.errors import InsufficientCapacity
from suppliers.maintenance import maintenance_refresh
from tests.factories import HostFactory, l4_host_data
from tests.orders.conftest import order

pytestmark = pytest.mark.django_db


@pytest.fixture
def host(supplier_org):
    return HostFactory(organization=supplier_org, name="l4", **l4_host_data())


def schedule(client, host, start_in_hours=24, hours=2, reason="Firmware upgrade"):
    start = timezone.now() + timedelta(hours=start_in_hours)
    return client.post(
        f"/api/v1/hosts/{host.pk}/maintenance/",
        {"starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=hours)).isoformat(), "reason": reason},
        format="json",
    )


def test_scheduling_notifies_renters_and_bounds_offers(supplier_client, host, buyer):
    order(buyer)
    response = schedule(supplier_client, host)
    assert response.status_code == 201, response.content
    assert buyer.notifications.get(kind="maintenance").body.startswith("Firmware upgrade")
    offer = Offer.objects.get(host=host, instance_type__name="l4-24g.1x")
    # Orders are taken while the shortest rental (an hour) still ends before the window.
    assert abs((offer.listed_until - timezone.now()) - timedelta(hours=23)) < timedelta(minutes=1)


def test_overlapping_orders_are_refused_short_ones_fit(supplier_client, host, buyer):
    schedule(supplier_client, host, start_in_hours=24)
    with pytest.raises(InsufficientCapacity):
        order(buyer)  # open-ended: would run into the window
    with pytest.raises(InsufficientCapacity):
        order(buyer, pricing="reserved", term_hours=168)
    assert order(buyer, terminate_after_hours=12).instances.get().host == host


def test_host_is_not_offered_during_the_window(supplier_client, host):
    schedule(supplier_client, host, start_in_hours=1, hours=2)
    with freeze_time(timezone.now() + timedelta(hours=1, minutes=5)):
        maintenance_refresh()
        assert not Offer.objects.listed().filter(host=host).exists()
    with freeze_time(timezone.now() + timedelta(hours=3, minutes=5)):
        maintenance_refresh()
        assert Offer.objects.listed().filter(host=host).exists()


@pytest.mark.parametrize(
    ("start", "hours", "reason", "field"), [(-1, 2, "x", "starts_at"), (2, 200, "x", "ends_at"), (2, 2, "", "reason")]
)
def test_bad_windows(supplier_client, host, start, hours, reason, field):
    response = schedule(supplier_client, host, start_in_hours=start, hours=hours, reason=reason)
    assert response.status_code == 400 and field in response.json()["fields"]


def test_others_cannot_schedule_on_my_host(other_supplier_client, host):
    assert schedule(other_supplier_client, host).status_code == 404


def test_schedule_from_the_host_page(client, supplier, host):

    client.force_login(supplier)
    start = timezone.now() + timedelta(days=1)
    response = client.post(
        reverse("suppliers:host_maintenance", args=[host.pk]),
        {
            "starts_at": start.strftime("%Y-%m-%dT%H:%M"),
            "ends_at": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
            "reason": "Disks",
        },
    )
    assert response.status_code == 302 and host.maintenance_windows.get().reason == "Disks"
    bad = client.post(
        reverse("suppliers:host_maintenance", args=[host.pk]),
        {"starts_at": "", "ends_at": "", "reason": ""},
        follow=True,
    )
    assert "future" in bad.content.decode()


def test_a_window_without_an_end_is_a_field_error_not_a_server_error(client, supplier, host):
    client.force_login(supplier)
    start = timezone.now() + timedelta(days=1)
    response = client.post(
        reverse("suppliers:host_maintenance", args=[host.pk]),
        {"starts_at": start.strftime("%Y-%m-%dT%H:%M"), "ends_at": "", "reason": "Disks"},
        follow=True,
    )
    assert response.status_code == 200 and "Give the end of the window" in response.content.decode()
    assert not host.maintenance_windows.exists()
