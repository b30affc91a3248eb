"""Supplier pages: onboarding, host form with validation messages, scoping."""

import pytest
from django.urls import reverse

from marketplace.models import AcceleratorModel, InstanceType, Region
from orders.models import Allocation
from suppliers.agent_services import agent_register, agent_report_inventory
from suppliers.models import Host, HostRegistrationToken, Organization
from tests.factories import HostFactory, UserFactory

pytestmark = pytest.mark.django_db


def host_form_data(**overrides):
    data = {
        "name": "web-box",
        "region": Region.objects.get(code="us-east").pk,
        "zone": "",
        "pue": "1.3",
        "accelerator_model": AcceleratorModel.objects.get(slug="l4-24g").pk,
        "accelerator_count": 4,
        "vcpus": 64,
        "ram_gb": 384,
        "disk_gb": 4000,
        "network_up_mbps": 10000,
        "network_down_mbps": 10000,
        "power_per_accelerator_watts": "",
        "price_per_unit_hour": "0.42",
        "storage_price_per_gb_month": "0.05",
        "min_rental_hours": 0,
        "offer_ends_at": "",
        "slicing_policy": "fine",
        "equal_slices": 1,
        "oversubscription_ratio": "1.0",
    }
    data.update(overrides)
    return data


def test_onboarding_then_declare_a_host(client):
    user = UserFactory(role="supplier")
    client.force_login(user)
    assert client.get(reverse("suppliers:dashboard")).status_code == 302
    bad = client.post(reverse("suppliers:onboarding"), {"name": "Acme", "contact_email": "nope"})
    assert bad.status_code == 200 and "contact_email" in bad.context["form"].errors
    ok = client.post(
        reverse("suppliers:onboarding"),
        {
            "name": "Acme",
            "contact_name": "A",
            "contact_email": "a@acme.example.com",
            "country": "US",
            "payout_country": "US",
            "website": "acme.example.com",
        },
    )
    assert ok.status_code == 302
    organization = Organization.objects.get(name="Acme")
    assert organization.status == "pending"
    assert organization.website == "https://acme.example.com"

    created = client.post(reverse("suppliers:host_create"), host_form_data())
    host = Host.objects.get(name="web-box")
    assert created.status_code == 302 and created["Location"] == reverse("suppliers:host_detail", args=[host.pk])
    assert host.power_per_accelerator_watts == 72  # the L4's TDP
    page = client.get(reverse("suppliers:host_detail", args=[host.pk]))
    assert page.status_code == 200 and "l4-24g.1x" in page.content.decode()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"pue": "0.5"}, "pue", "greater than or equal to 1"),
        ({"accelerator_count": "abc"}, "accelerator_count", "whole number"),
        ({"slicing_policy": "equal", "equal_slices": 3}, "equal_slices", "do not divide"),
        ({"vcpus": 2, "ram_gb": 4}, "slicing_policy", "No standard instance type fits"),
        ({"oversubscription_ratio": "4"}, "oversubscription_ratio", "less than or equal to 2"),
    ],
)
def test_host_form_shows_validation_messages(client, supplier, overrides, field, message):
    client.force_login(supplier)
    response = client.post(reverse("suppliers:host_create"), host_form_data(**overrides))
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert message in response.content.decode()
    assert not Host.objects.exists()


def test_edit_host_through_the_form(client, supplier, approved_host):
    client.force_login(supplier)
    data = host_form_data(
        name=approved_host.name,
        accelerator_model=approved_host.accelerator_model_id,
        accelerator_count=8,
        vcpus=192,
        ram_gb=2048,
        disk_gb=16000,
        price_per_unit_hour="2.75",
    )
    response = client.post(reverse("suppliers:host_edit", args=[approved_host.pk]), data)
    assert response.status_code == 302
    assert approved_host.offers.get(instance_type__name="h100-80g.1x").price_per_hour == 2.75


def test_other_suppliers_hosts_are_404_on_every_page(client, supplier, other_supplier_org):
    theirs = HostFactory(organization=other_supplier_org)
    client.force_login(supplier)
    for name in ("host_detail", "host_edit"):
        assert client.get(reverse(f"suppliers:{name}", args=[theirs.pk])).status_code == 404
    for name in ("host_listing", "host_delete"):
        assert client.post(reverse(f"suppliers:{name}", args=[theirs.pk])).status_code == 404
    assert Host.objects.filter(pk=theirs.pk, status="approved").exists()


def test_dashboard_lists_own_hosts_only(client, supplier, approved_host, other_supplier_org):
    theirs = HostFactory(organization=other_supplier_org, name="their-box")
    client.force_login(supplier)
    body = client.get(reverse("suppliers:dashboard")).content.decode()
    assert approved_host.name in body
    assert theirs.name not in body


def test_pages_require_login(client):
    response = client.get(reverse("suppliers:dashboard"))
    assert response.status_code == 302 and reverse("accounts:login") in response["Location"]


def test_host_detail_charts_capacity_in_use(client, supplier, approved_host):

    t = InstanceType.objects.get(name="h100-80g.2x")
    Allocation.objects.create(host=approved_host, instance_type=t, accelerators=2, vcpus=48, ram_gb=512, disk_gb=4000)
    client.force_login(supplier)
    response = client.get(reverse("suppliers:host_detail", args=[approved_host.pk]))
    usage = {row["label"]: row for row in response.context["usage"]}
    assert usage["Accelerators"] == {"label": "Accelerators", "allocated": 2, "capacity": 8, "percent": 25}
    assert usage["vCPUs"]["percent"] == 25
    assert 'aria-label="25% used"' in response.content.decode()


def test_host_page_shows_agent_status_and_makes_a_registration_token(client, supplier, approved_host):

    client.force_login(supplier)
    page = client.get(reverse("suppliers:host_detail", args=[approved_host.pk])).content.decode()
    assert "No agent yet" in page and "not reported yet" in page
    response = client.post(reverse("suppliers:host_registration_token", args=[approved_host.pk]))
    token = response.context["token"]
    page = response.content.decode()
    assert token in page and f"/agent/install.sh | sudo sh -s -- --token {token}" in page
    assert HostRegistrationToken.objects.filter(host=approved_host).count() == 1
    host, _ = agent_register(token=token)
    agent_report_inventory(
        host=host, inventory={"source": "file", "accelerators": [], "vcpus": 8, "ram_gb": 64, "disk_gb": 100}
    )
    fragment = client.get(reverse("suppliers:host_agent_status", args=[approved_host.pk])).content.decode()
    assert "no: offers delisted" in fragment and "accelerator_count" in fragment
    assert "<html" not in fragment


def test_other_suppliers_cannot_make_tokens_or_see_agent_status(client, supplier, other_supplier_org):
    theirs = HostFactory(organization=other_supplier_org)
    client.force_login(supplier)
    assert client.post(reverse("suppliers:host_registration_token", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("suppliers:host_agent_status", args=[theirs.pk])).status_code == 404
