"""Every model has a working admin changelist (with its filters and search) for staff only."""

import pytest
from django.contrib import admin
from django.urls import reverse

from suppliers.models import Host, Organization
from tests.factories import HostFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_every_changelist_renders_with_search(staff_client, supplier_org):
    HostFactory(organization=supplier_org)
    for model, model_admin in admin.site._registry.items():
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert staff_client.get(url).status_code == 200, url
        if model_admin.search_fields:
            assert staff_client.get(url, {"q": "x"}).status_code == 200, url


def test_non_staff_cannot_reach_the_admin(client, buyer):
    client.force_login(buyer)
    response = client.get(reverse("admin:suppliers_host_changelist"))
    assert response.status_code == 302 and "login" in response["Location"]


def test_approve_action_calls_the_service(staff_client):
    organization = OrganizationFactory(status="pending")
    host = HostFactory(organization=organization, approved=False)
    staff_client.post(
        reverse("admin:suppliers_organization_changelist"),
        {"action": "approve", "_selected_action": [organization.pk]},
    )
    staff_client.post(
        reverse("admin:suppliers_host_changelist"), {"action": "approve_verified", "_selected_action": [host.pk]}
    )
    host.refresh_from_db()
    assert Organization.objects.get(pk=organization.pk).status == "approved"
    assert host.status == Host.Status.APPROVED and host.verified
    assert host.offers.exists()
