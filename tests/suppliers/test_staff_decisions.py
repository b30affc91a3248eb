"""A staff decision about a party sticks: only staff undo it, and the party sees why and how to appeal."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.services import notify
from marketplace.models import Offer
from marketplace.moderation import buyer_reinstate, buyer_suspend, host_delist, host_reinstate
from orders.agent import instance_agent_report
from orders.lifecycle import instance_stop
from orders.supply import organization_suspend
from suppliers.hosts import host_reject, host_set_listed
from suppliers.locks import host_lock_if_present
from suppliers.models import Host
from tests.conftest import bearer_client
from tests.factories import HostFactory, UserFactory, l4_host_data
from tests.orders.conftest import order

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return UserFactory(email="moderator@example.com", is_staff=True, credit=0)


@pytest.fixture
def host(supplier_org):
    return HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())


def test_a_staff_delisting_cannot_be_undone_by_the_supplier_over_the_api(host, staff, supplier_client, settings):
    host_delist(host=host, reason="Buyers report the GPUs throttle", staff=staff)
    response = supplier_client.post(f"/api/v1/hosts/{host.pk}/relist/")
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "staff_decision"
    assert "Buyers report the GPUs throttle" in body["detail"] and settings.APPEALS_EMAIL in body["detail"]
    host.refresh_from_db()
    assert host.status == Host.Status.DELISTED and not Offer.objects.listed().filter(host=host).exists()
    shown = supplier_client.get(f"/api/v1/hosts/{host.pk}/").json()
    assert shown["status_decided_by"] == "staff" and shown["status_reason"] == "Buyers report the GPUs throttle"


def test_a_staff_delisting_cannot_be_undone_from_the_host_page(client, supplier, host, staff, settings):
    host_delist(host=host, reason="Fraud review", staff=staff)
    client.force_login(supplier)
    page = client.get(reverse("suppliers:host_detail", args=[host.pk])).content.decode()
    assert "Fraud review" in page and settings.APPEALS_EMAIL in page and "List again" not in page
    response = client.post(reverse("suppliers:host_listing", args=[host.pk]), {"listed": "1"}, follow=True)
    assert "Only staff can list it again" in response.content.decode()
    host.refresh_from_db()
    assert host.status == Host.Status.DELISTED


def test_staff_reinstate_and_the_supplier_may_pause_and_resume_again(host, staff, supplier_org):
    host_delist(host=host, reason="Fraud review", staff=staff)
    host_reinstate(host=host, reason="Cleared", staff=staff)
    host.refresh_from_db()
    assert host.status == Host.Status.APPROVED and Offer.objects.filter(host=host).exists()
    # The supplier's own pause is the supplier's to undo.
    host_set_listed(host=host, listed=False)
    host_set_listed(host=host, listed=True)
    assert Offer.objects.filter(host=host).exists()


def test_a_rejected_host_cannot_be_listed_by_its_supplier(host, staff, supplier_client):
    host_reject(host=host, reason="Not the declared GPUs", actor=staff)
    assert supplier_client.post(f"/api/v1/hosts/{host.pk}/relist/").status_code == 409
    host.refresh_from_db()
    assert host.status == Host.Status.REJECTED


def test_a_suspended_suppliers_hosts_stay_off_the_market(host, staff, supplier_client, supplier_org):
    organization_suspend(organization=supplier_org, reason="Chargebacks", actor=staff)
    supplier_client.post(f"/api/v1/hosts/{host.pk}/delist/")
    supplier_client.post(f"/api/v1/hosts/{host.pk}/relist/")
    assert not Offer.objects.listed().filter(host=host).exists()
    page = supplier_client.get("/api/v1/organization/").json()
    assert page["status"] == "suspended"


def test_a_suspended_supplier_sees_why_and_how_to_appeal(client, supplier, supplier_org, staff, settings):
    organization_suspend(organization=supplier_org, reason="Chargebacks", actor=staff)
    client.force_login(supplier)
    page = client.get(reverse("suppliers:dashboard")).content.decode()
    assert "Chargebacks" in page and settings.APPEALS_EMAIL in page


def test_a_suspended_buyer_cannot_start_what_staff_stopped(buyer, host, staff):
    instance = instance_agent_report(instance=order(buyer).instances.get(), status="running")
    instance_agent_report(instance=instance_stop(instance=instance), status="stopped")
    buyer_suspend(buyer=buyer, reason="Card fraud", staff=staff)
    api = bearer_client(buyer)
    response = api.post(f"/api/v1/instances/{instance.pk}/start/")
    assert response.status_code == 403 and response.json()["code"] == "account_suspended"
    assert api.post("/api/v1/orders/", {"instance_type": "l4-24g.1x", "image": "x"}, format="json").status_code == 403
    buyer_reinstate(buyer=buyer, reason="Cleared", staff=staff)
    assert api.post(f"/api/v1/instances/{instance.pk}/start/").status_code == 200


def test_only_staff_moderate(buyer, host):
    outsider = UserFactory(email="outsider@example.com", credit=0)
    notify(user=outsider, kind="x", title="x")
    with pytest.raises(Exception) as error:
        host_delist(host=host, reason="x", staff=outsider)
    assert getattr(error.value, "code", None) == "permission_denied"
    with pytest.raises(Exception) as error:
        host_reinstate(host=host, reason="x", staff=outsider)
    assert getattr(error.value, "code", None) == "permission_denied"


def test_batch_loops_skip_a_host_removed_meanwhile(host):
    host_id = host.pk
    host.offers.all().delete()
    host.delete()
    assert host_lock_if_present(host_id=host_id) is None


def test_staff_list_a_host_again_from_the_moderation_page(client, host, staff):
    host_delist(host=host, reason="Fraud review", staff=staff)
    client.force_login(staff)
    response = client.post(reverse("moderation"), {"action": "reinstate_host", "target": host.pk, "reason": "Cleared"})
    assert response.status_code == 302
    host.refresh_from_db()
    assert host.status == Host.Status.APPROVED and Offer.objects.filter(host=host).exists()
