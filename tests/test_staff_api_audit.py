"""Staff actions over the API are audited exactly like those in the pages, and staff change
hosts only through moderation (where each decision is audited)."""

from __future__ import annotations

import pytest

from marketplace.models import AuditEntry
from orders.agent import instance_agent_report
from orders.models import InstanceEvent
from tests.conftest import bearer_client
from tests.factories import HostFactory, UserFactory, l4_host_data
from tests.orders.conftest import order

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return UserFactory(email="ops@example.com", is_staff=True, credit=0)


@pytest.fixture
def running(buyer, supplier_org):
    HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())
    return instance_agent_report(instance=order(buyer).instances.get(), status="running")


@pytest.mark.parametrize("way_in", ["api", "page"])
def test_staff_stopping_a_buyers_instance_is_a_staff_action_on_record(running, staff, client, way_in):
    if way_in == "api":
        response = bearer_client(staff).post(f"/api/v1/instances/{running.pk}/stop/")
        assert response.status_code == 200
    else:
        client.force_login(staff)
        client.post(f"/instances/{running.pk}/stop/")
    event = InstanceEvent.objects.filter(instance=running, to_status="stopping").get()
    assert event.actor == InstanceEvent.Actor.STAFF and event.actor_user == staff
    entry = AuditEntry.objects.get(action="instance.stop", object_id=str(running.pk))
    assert entry.actor == staff


def test_a_buyers_own_stop_is_not_a_staff_action(running, buyer):
    assert bearer_client(buyer).post(f"/api/v1/instances/{running.pk}/stop/").status_code == 200
    assert InstanceEvent.objects.get(instance=running, to_status="stopping").actor == InstanceEvent.Actor.BUYER
    assert not AuditEntry.objects.filter(action="instance.stop").exists()


def test_staff_change_hosts_through_moderation_not_the_supplier_api(staff, supplier_org):
    host = HostFactory(organization=supplier_org, name="l4-b", **l4_host_data())
    api = bearer_client(staff)
    assert api.get(f"/api/v1/hosts/{host.pk}/").status_code == 200  # staff see every host
    assert api.patch(f"/api/v1/hosts/{host.pk}/", {"price_per_unit_hour": "0.01"}, format="json").status_code == 403
    assert api.post(f"/api/v1/hosts/{host.pk}/delist/").status_code == 403
    assert api.delete(f"/api/v1/hosts/{host.pk}/").status_code == 403
    host.refresh_from_db()
    assert host.status == "approved" and str(host.price_per_unit_hour) != "0.010000"
