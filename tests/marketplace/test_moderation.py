"""Staff moderation: reasons required, audited, people told; non-staff reach none of it."""

import pytest
from django.urls import reverse

from accounts.models import Notification
from accounts.services import notify
from marketplace.errors import ApplicationError, Forbidden, InvalidInput
from marketplace.models import AuditEntry, Offer
from marketplace.moderation import buyer_reinstate, buyer_suspend, host_delist
from orders.models import Instance
from suppliers.models import Organization
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data
from tests.orders.conftest import order

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db):
    return UserFactory(is_staff=True, credit=0)


@pytest.fixture
def l4_host(supplier_org):
    return HostFactory(organization=supplier_org, name="l4", **l4_host_data())


def test_suspended_buyer_is_stopped_and_cannot_order(staff, buyer, l4_host):
    instance = order(buyer).instances.get()
    with pytest.raises(InvalidInput):
        buyer_suspend(buyer=buyer, reason=" ", staff=staff)
    buyer_suspend(buyer=buyer, reason="Chargeback fraud", staff=staff)
    assert Instance.objects.get(pk=instance.pk).status == "stopping"
    with pytest.raises(Forbidden) as error:
        order(buyer)
    assert error.value.code == "account_suspended"
    assert Notification.objects.get(user=buyer, kind="moderation").body == "Chargeback fraud"
    assert AuditEntry.objects.filter(action="buyer.suspend", actor=staff).exists()
    buyer_reinstate(buyer=buyer, reason="Cleared", staff=staff)
    order(buyer)


def test_delisting_a_host_tells_supplier_and_renters(staff, buyer, supplier, l4_host):
    order(buyer)
    host_delist(host=l4_host, reason="Overheating reports", staff=staff)
    assert not Offer.objects.listed().filter(host=l4_host).exists()
    assert Notification.objects.filter(user=supplier, title__contains="delisted").exists()
    assert Notification.objects.filter(user=buyer, kind="moderation").exists()


def test_only_staff_moderate(buyer, l4_host):
    with pytest.raises(ApplicationError):
        host_delist(host=l4_host, reason="x", staff=buyer)


def test_dashboard_and_actions_are_staff_only(client, buyer, staff, l4_host):
    client.force_login(buyer)
    assert client.get(reverse("moderation")).status_code == 403
    post = client.post(reverse("moderation"), {"action": "delist_host", "target": l4_host.pk, "reason": "x"})
    assert post.status_code == 403
    assert Offer.objects.filter(host=l4_host).exists()
    client.force_login(staff)
    page = client.get(reverse("moderation"))
    assert page.status_code == 200 and "Suppliers pending review" in page.content.decode()
    client.post(reverse("moderation"), {"action": "delist_host", "target": l4_host.pk, "reason": "Abuse"})
    assert not Offer.objects.listed().filter(host=l4_host).exists()
    missing = client.post(
        reverse("moderation"), {"action": "suspend_buyer", "target": buyer.email, "reason": ""}, follow=True
    )
    assert "needs a reason" in missing.content.decode()


def test_notifications_page_marks_read(client, buyer):

    notify(user=buyer, kind="test", title="Hello there")
    client.force_login(buyer)
    assert client.get(reverse("offers")).context["unread_notifications"] == 1
    page = client.get(reverse("accounts:notifications"))
    assert "Hello there" in page.content.decode()
    assert client.get(reverse("offers")).context["unread_notifications"] == 0


def test_staff_verify_or_reject_suppliers_with_a_reason_they_see(client, staff):

    waiting = OrganizationFactory(status="pending")
    other = OrganizationFactory(status="pending")
    client.force_login(staff)
    assert waiting.name in client.get(reverse("moderation")).content.decode()
    client.post(reverse("moderation"), {"action": "approve_supplier", "target": waiting.pk, "reason": ""})
    refused = client.post(
        reverse("moderation"), {"action": "reject_supplier", "target": other.pk, "reason": ""}, follow=True
    )
    assert "needs a reason" in refused.content.decode()
    client.post(
        reverse("moderation"),
        {"action": "reject_supplier", "target": other.pk, "reason": "Registration document unreadable"},
    )
    assert Organization.objects.get(pk=waiting.pk).status == "approved"
    rejected = Organization.objects.get(pk=other.pk)
    assert (rejected.status, rejected.status_reason) == ("rejected", "Registration document unreadable")
