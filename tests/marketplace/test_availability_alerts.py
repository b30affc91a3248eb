"""Availability alerts: the API and page that make them, and the beat check that fires them once per
supply episode (edge-triggered), in a fixed number of queries per batch."""

from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import Notification
from marketplace.alerts import (
    MAX_ACTIVE_ALERTS_PER_USER,
    NOTIFICATION_KIND,
    availability_alert_create,
    availability_alerts_check,
)
from marketplace.models import AvailabilityAlert, InstanceType, Offer, Region, Zone
from marketplace.tasks import availability_alerts_check_task
from marketplace.walks import walk_to_end
from tests.conftest import bearer_client
from tests.factories import HostFactory, UserFactory

pytestmark = pytest.mark.django_db

H100 = "h100-80g.1x"
URL = "/api/v1/availability-alerts/"


def alert_for(user, name: str = H100, **fields) -> AvailabilityAlert:
    return availability_alert_create(user=user, instance_type=InstanceType.objects.get(name=name), **fields)


def check() -> int:
    """One full pass of the beat walk; how many alerts fired."""
    return walk_to_end(availability_alerts_check, batch_size=500)


def told(user) -> list[Notification]:
    return list(Notification.objects.filter(user=user, kind=NOTIFICATION_KIND).order_by("id"))


def h100_offers(host) -> Offer:
    return Offer.objects.get(host=host, instance_type__name=H100)


def sell_out(host) -> None:
    Offer.objects.filter(host=host).update(available_count=0)


def restock(host, count: int = 8) -> None:
    Offer.objects.filter(host=host).update(available_count=count)


@pytest.fixture
def other_buyer(db):
    return UserFactory(email="other@example.com", credit=0)


@pytest.fixture
def eu_region():
    return Region.objects.get(code="eu-central")


def eu_host(organization, **fields):
    return HostFactory(
        organization=organization,
        region=Region.objects.get(code="eu-central"),
        zone=Zone.objects.get(code="eu-central-a"),
        **fields,
    )


# --- API ---------------------------------------------------------------------------------------------


def test_create_list_retrieve_and_delete_through_the_api(buyer):
    client = bearer_client(buyer)
    body = {"instance_type": H100, "region": "us-east", "max_price_per_hour": "3.50", "standing": True}

    created = client.post(URL, body, format="json")

    assert created.status_code == 201, created.content
    alert = created.json()
    assert alert["instance_type"] == H100 and alert["region"] == "us-east"
    assert Decimal(alert["max_price_per_hour"]) == Decimal("3.50")
    assert alert["standing"] is True and alert["active"] is True and alert["matched"] is False
    assert [a["id"] for a in client.get(URL).json()["results"]] == [alert["id"]]
    assert client.get(f"{URL}{alert['id']}/").json()["instance_type"] == H100
    assert client.delete(f"{URL}{alert['id']}/").status_code == 204
    assert not AvailabilityAlert.objects.exists()


def test_region_and_price_are_optional(buyer):
    response = bearer_client(buyer).post(URL, {"instance_type": H100}, format="json")

    assert response.status_code == 201, response.content
    assert response.json()["region"] is None and response.json()["max_price_per_hour"] is None
    assert response.json()["standing"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"instance_type": "no-such-type.1x"}, "instance_type"),
        ({"instance_type": H100, "region": "atlantis"}, "region"),
        ({"instance_type": H100, "max_price_per_hour": "0"}, "max_price_per_hour"),
        ({"instance_type": H100, "max_price_per_hour": "-1"}, "max_price_per_hour"),
        ({"instance_type": H100, "max_price_per_hour": "1E+2"}, "max_price_per_hour"),
        ({"instance_type": H100, "max_price_per_hour": 2.5}, "max_price_per_hour"),
        ({}, "instance_type"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(buyer, body, field):
    response = bearer_client(buyer).post(URL, body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert field in response.json()["fields"]
    assert not AvailabilityAlert.objects.exists()


def test_an_inactive_instance_type_is_refused(buyer):
    InstanceType.objects.filter(name=H100).update(is_active=False)

    response = bearer_client(buyer).post(URL, {"instance_type": H100}, format="json")

    assert response.status_code == 400
    assert "instance_type" in response.json()["fields"]


def test_another_users_alert_does_not_exist_for_them(buyer, other_buyer):
    alert = alert_for(buyer)
    client = bearer_client(other_buyer)

    assert client.get(f"{URL}{alert.pk}/").status_code == 404
    assert client.delete(f"{URL}{alert.pk}/").status_code == 404
    assert client.get(URL).json()["results"] == []
    assert AvailabilityAlert.objects.filter(pk=alert.pk).exists()


def test_staff_see_everyones_alerts(buyer):
    alert = alert_for(buyer)
    staff = bearer_client(UserFactory(email="staff@example.com", is_staff=True, credit=0))

    assert staff.get(f"{URL}{alert.pk}/").status_code == 200
    assert [a["id"] for a in staff.get(URL).json()["results"]] == [alert.pk]


def test_active_alerts_per_account_are_bounded(buyer):
    for cents in range(MAX_ACTIVE_ALERTS_PER_USER):
        alert_for(buyer, max_price_per_hour=Decimal(100 + cents) / 100)

    response = bearer_client(buyer).post(URL, {"instance_type": H100}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "alert_limit"
    assert AvailabilityAlert.objects.filter(user=buyer).count() == MAX_ACTIVE_ALERTS_PER_USER


def test_the_same_alert_twice_is_a_conflict(buyer):
    client = bearer_client(buyer)
    assert client.post(URL, {"instance_type": H100, "region": "us-east"}, format="json").status_code == 201

    again = client.post(URL, {"instance_type": H100, "region": "us-east"}, format="json")

    assert again.status_code == 409
    assert again.json()["code"] == "alert_exists"


# --- the check ---------------------------------------------------------------------------------------


def test_fires_once_when_supply_appears_and_not_again_while_it_stays(buyer, supplier_org):
    alert = alert_for(buyer, standing=True)
    assert check() == 0  # nothing listed yet

    host = HostFactory(organization=supplier_org)
    assert check() == 1
    assert check() == 0  # supply stays: no second notice
    assert check() == 0

    (notice,) = told(buyer)
    offer = h100_offers(host)
    assert H100 in notice.title
    assert offer.price_per_hour == Decimal("2.50")
    assert "from $2.50/h" in notice.body
    assert "us-east" in notice.body
    assert reverse("offer_detail", args=[offer.pk]) in notice.body
    alert.refresh_from_db()
    assert alert.matched and alert.active and alert.last_notified_at is not None


def test_supply_already_listed_is_told_at_the_first_check(buyer, supplier_org):
    HostFactory(organization=supplier_org)
    alert_for(buyer)

    assert check() == 1
    assert len(told(buyer)) == 1


def test_one_shot_alert_turns_off_after_firing(buyer, supplier_org):
    alert = alert_for(buyer)
    host = HostFactory(organization=supplier_org)
    assert check() == 1

    sell_out(host)
    check()
    restock(host)
    assert check() == 0

    alert.refresh_from_db()
    assert not alert.active
    assert len(told(buyer)) == 1


def test_standing_alert_fires_again_after_supply_vanishes_and_returns(buyer, supplier_org):
    alert = alert_for(buyer, standing=True)
    host = HostFactory(organization=supplier_org)
    assert check() == 1

    sell_out(host)
    assert check() == 0
    alert.refresh_from_db()
    assert not alert.matched and alert.active

    restock(host)
    assert check() == 1
    assert check() == 0
    assert len(told(buyer)) == 2


def test_the_cheapest_matching_offer_is_named(buyer, supplier_org, other_supplier_org):
    HostFactory(organization=supplier_org, price_per_unit_hour=Decimal("2.50"))
    cheap = HostFactory(organization=other_supplier_org, price_per_unit_hour=Decimal("1.75"))
    alert_for(buyer)

    check()

    (notice,) = told(buyer)
    assert reverse("offer_detail", args=[h100_offers(cheap).pk]) in notice.body


def test_max_price_is_respected(buyer, supplier_org, other_supplier_org):
    expensive = HostFactory(organization=supplier_org, price_per_unit_hour=Decimal("2.50"))
    ceiling = h100_offers(expensive).price_per_hour - Decimal("0.01")
    alert_for(buyer, max_price_per_hour=ceiling)
    assert check() == 0

    cheap = HostFactory(organization=other_supplier_org, price_per_unit_hour=Decimal("1.50"))
    assert h100_offers(cheap).price_per_hour <= ceiling
    assert check() == 1
    assert reverse("offer_detail", args=[h100_offers(cheap).pk]) in told(buyer)[0].body


def test_region_is_respected(buyer, supplier_org, other_supplier_org, eu_region):
    alert_for(buyer, region=eu_region)
    HostFactory(organization=supplier_org)  # us-east
    assert check() == 0

    host = eu_host(other_supplier_org)
    assert check() == 1
    (notice,) = told(buyer)
    assert "eu-central" in notice.title and "eu-central" in notice.body
    assert reverse("offer_detail", args=[h100_offers(host).pk]) in notice.body


def test_other_instance_types_and_unverified_hosts_do_not_match(buyer, supplier_org):
    alert_for(buyer, name="l4-24g.1x")
    HostFactory(organization=supplier_org, name="h100-box")  # no L4 offers
    assert check() == 0

    alert_for(buyer)
    HostFactory(organization=supplier_org, name="unverified", verified=False)
    Offer.objects.filter(host__verified=True).delete()
    assert check() == 0  # an order takes verified hosts unless told otherwise


def test_a_batch_run_twice_tells_nobody_twice(buyer, supplier_org):
    alert = alert_for(buyer)
    HostFactory(organization=supplier_org)
    assert check() == 1

    # As if the flags had not been written (a worker killed after the notice): the same episode.
    AvailabilityAlert.objects.filter(pk=alert.pk).update(active=True, matched=False, last_notified_at=None)
    check()

    assert len(told(buyer)) == 1


def test_the_walk_covers_every_alert_in_batches(buyer, other_buyer, supplier_org):
    alerts = [alert_for(buyer, max_price_per_hour=Decimal(10 + n)) for n in range(3)]
    alerts.append(alert_for(other_buyer))
    HostFactory(organization=supplier_org)

    first = availability_alerts_check(after=0, batch_size=2)
    assert first.done == 2 and first.next_after == sorted(a.pk for a in alerts)[1]
    second = availability_alerts_check(after=first.next_after, batch_size=2)
    assert second.done == 2
    assert availability_alerts_check(after=second.next_after, batch_size=2).next_after is None
    assert not AvailabilityAlert.objects.active().exists()


def test_beat_task_runs_the_check(buyer, supplier_org):
    alert_for(buyer)
    HostFactory(organization=supplier_org)

    assert availability_alerts_check_task.apply().get() == 1
    assert len(told(buyer)) == 1


def test_the_check_is_a_fixed_number_of_queries_per_batch(supplier_org, django_assert_max_num_queries):
    """Matching is one query per batch however many alerts and offers; what grows is one
    notification per alert that fires, never a query per alert per offer."""
    users = [UserFactory(email=f"watcher{n}@example.com", credit=0) for n in range(12)]
    types = ["h100-80g.1x", "h100-80g.2x", "h100-80g.4x", "l4-24g.1x"]
    for n, user in enumerate(users):
        for name in types:
            alert_for(user, name=name, standing=n % 2 == 0)
    host = HostFactory(organization=supplier_org)
    HostFactory(organization=supplier_org, price_per_unit_hour=Decimal("1.90"))
    firing = AvailabilityAlert.objects.filter(instance_type__name__startswith="h100").count()
    assert firing == 36

    # savepoint, alerts with their matches, those that fire, their offers, 2 updates, release;
    # then 4 per notification (savepoint, insert, release, and the user's webhook endpoints)
    with django_assert_max_num_queries(7 + 4 * firing):
        assert availability_alerts_check(batch_size=500).done == firing
    with django_assert_max_num_queries(3):  # supply stays: one read, nothing written
        assert availability_alerts_check(batch_size=500).done == 0
    sell_out(host)
    with django_assert_max_num_queries(3):  # the other host still sells
        availability_alerts_check(batch_size=500)
    Offer.objects.update(available_count=0)
    with django_assert_max_num_queries(4):  # gone for the standing ones: one update
        assert availability_alerts_check(batch_size=500).done == 0
    assert AvailabilityAlert.objects.filter(matched=True, active=True).count() == 0


# --- the page ----------------------------------------------------------------------------------------


def test_page_lists_the_users_alerts_only(client, buyer, other_buyer):
    alert_for(buyer, standing=True)
    alert_for(other_buyer, name="l4-24g.1x")
    client.force_login(buyer)

    response = client.get(reverse("availability_alerts"))

    assert response.status_code == 200
    page = response.content.decode()
    assert f"{H100}</a>" in page and "<td>standing</td>" in page
    assert "l4-24g.1x</a>" not in page
    assert f'href="{reverse("availability_alerts")}"' in page  # linked from the account menu


def test_page_form_creates_an_alert(client, buyer):
    client.force_login(buyer)

    response = client.post(
        reverse("availability_alerts"),
        {"instance_type": H100, "region": "eu-central", "max_price_per_hour": "2.25", "standing": "on"},
    )

    assert response.status_code == 302
    alert = AvailabilityAlert.objects.get(user=buyer)
    assert alert.region.code == "eu-central" and alert.max_price_per_hour == Decimal("2.25") and alert.standing
    assert "Alert added" in client.get(reverse("availability_alerts")).content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"instance_type": "nope.1x"}, "Select a valid choice"),
        ({"instance_type": H100, "max_price_per_hour": "1e3"}, "A price above 0"),
        ({"instance_type": H100, "max_price_per_hour": "-2"}, "A price above 0"),
    ],
)
def test_page_form_shows_what_is_wrong(client, buyer, data, message):
    client.force_login(buyer)

    response = client.post(reverse("availability_alerts"), data)

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not AvailabilityAlert.objects.exists()


def test_page_shows_a_service_refusal_on_the_form(client, buyer):
    alert_for(buyer)
    client.force_login(buyer)

    response = client.post(reverse("availability_alerts"), {"instance_type": H100})

    assert response.status_code == 200
    assert "Already subscribed." in response.content.decode()


def test_page_delete_is_owner_only(client, buyer, other_buyer):
    alert = alert_for(buyer)
    client.force_login(other_buyer)
    assert client.post(reverse("availability_alert_delete", args=[alert.pk])).status_code == 404

    client.force_login(buyer)
    assert client.post(reverse("availability_alert_delete", args=[alert.pk])).status_code == 302
    assert not AvailabilityAlert.objects.exists()


def test_page_needs_a_login(client):
    response = client.get(reverse("availability_alerts"))

    assert response.status_code == 302
    assert reverse("accounts:login") in response["Location"]


def test_an_empty_region_is_refused_not_read_as_any_region(buyer):

    response = bearer_client(buyer).post(
        "/api/v1/availability-alerts/", {"instance_type": "h100-80g.1x", "region": ""}, format="json"
    )
    assert response.status_code == 400 and "region" in response.json()["fields"]
    assert not AvailabilityAlert.objects.exists()
