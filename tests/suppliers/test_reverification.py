"""Changed hardware is re-verified: a reviewed host that declares other hardware is unverified and
unoffered until its agent's measured inventory confirms it (and staff review a new model)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from marketplace.models import AcceleratorModel, Offer
from orders.supply import host_update
from suppliers.agent_services import (
    agent_register,
    agent_report_inventory,
    agent_report_selftest,
    host_registration_token_issue,
)
from suppliers.errors import SupplierErrorCode
from suppliers.hosts import host_approve
from suppliers.models import Host
from tests.factories import HostFactory, l4_host_data
from tests.suppliers.test_agent_api import agent_client

pytestmark = pytest.mark.django_db


def l4_inventory(count: int = 4, *, source: str = "nvidia-smi") -> dict:
    return {
        "source": source,
        "accelerators": [{"index": i, "name": "NVIDIA L4", "memory_mib": 23034} for i in range(count)],
        "vcpus": 32,
        "ram_gb": 190,
        "disk_gb": 4000,
    }


@pytest.fixture
def host(supplier_org):
    """An approved, verified 4 x L4 host whose agent reported a measured, matching inventory."""
    host = HostFactory(organization=supplier_org, name="l4-a", **l4_host_data())
    agent_register(token=host_registration_token_issue(host=host, user=None))
    agent_report_inventory(host=host, inventory=l4_inventory())
    agent_report_selftest(host=host, result={"checks": [{"name": "accelerators", "ok": True, "count": 4}]})
    host.refresh_from_db()
    assert host.verified and host.status == Host.Status.APPROVED
    return host


def test_redeclaring_as_cheap_8x_h100_takes_the_host_off_the_market(host, supplier_client):
    response = supplier_client.patch(
        f"/api/v1/hosts/{host.pk}/",
        {
            "accelerator_model": "h100-80g",
            "accelerator_count": 8,
            "vcpus": 128,
            "ram_gb": 1024,
            "disk_gb": 16000,
            "price_per_unit_hour": "0.10",
        },
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "pending" and body["verified"] is False and body["hardware_changed_at"]
    assert not Offer.objects.listed().filter(host=host).exists()
    assert not Offer.objects.listed().filter(instance_type__name="h100-80g.8x", price_per_hour__lt=1).exists()


def test_a_count_change_waits_for_a_measured_inventory(host):
    host_update(host=host, accelerator_count=2, vcpus=16, ram_gb=95, disk_gb=2000)
    host.refresh_from_db()
    assert not host.verified and host.hardware_changed_at and not Offer.objects.listed().filter(host=host).exists()
    # A file the supplier typed confirms nothing ...
    agent_report_inventory(host=host, inventory=l4_inventory(2, source="file"))
    host.refresh_from_db()
    assert host.hardware_changed_at and not Offer.objects.listed().filter(host=host).exists()
    # ... the agent's measurement does: offers come back, verified again.
    agent_report_inventory(host=host, inventory=l4_inventory(2))
    host.refresh_from_db()
    assert host.hardware_changed_at is None and host.verified
    assert Offer.objects.filter(host=host, verified=True).exists()


def test_a_price_change_keeps_the_verification(host):
    host_update(host=host, price_per_unit_hour=Decimal("0.55"))
    host.refresh_from_db()
    assert host.verified and host.hardware_changed_at is None and Offer.objects.filter(host=host).exists()


def test_a_file_inventory_does_not_earn_verification(supplier_org):
    host = HostFactory(organization=supplier_org, name="l4-b", verified=False, **l4_host_data())
    agent_register(token=host_registration_token_issue(host=host, user=None))
    agent_report_inventory(host=host, inventory=l4_inventory(source="file"))
    agent_report_selftest(host=host, result={"checks": [{"name": "accelerators", "ok": True, "count": 4}]})
    host.refresh_from_db()
    assert not host.verified


def test_a_selftest_that_finds_fewer_accelerators_fails(host):
    agent_report_selftest(host=host, result={"checks": [{"name": "accelerators", "ok": True, "count": 3}]})
    host.refresh_from_db()
    assert host.selftest_passed is False and not host.verified


def test_the_selftest_count_travels_over_the_agent_api(host):
    agent = agent_client(host)
    response = agent.post(
        "/api/v1/agent/selftest/", {"checks": [{"name": "accelerators", "ok": True, "count": 1}]}, format="json"
    )
    assert response.status_code == 200 and response.json()["passed"] is False


def test_staff_cannot_verify_a_host_its_inventory_contradicts(host):
    agent_report_inventory(host=host, inventory=l4_inventory(2))  # the agent finds 2 of the 4 declared
    with pytest.raises(Exception) as error:
        host_approve(host=host, verified=True)
    assert error.value.code == SupplierErrorCode.INVENTORY_CONTRADICTS_DECLARATION
    host.refresh_from_db()
    assert not host.verified


def test_staff_cannot_verify_unconfirmed_new_hardware(supplier_org):
    host = HostFactory(organization=supplier_org, name="l4-c", **l4_host_data())  # verified by staff, no agent
    host_update(host=host, accelerator_count=2, vcpus=16, ram_gb=95, disk_gb=2000)
    host.refresh_from_db()
    assert not host.verified and not Offer.objects.listed().filter(host=host).exists()
    with pytest.raises(Exception) as error:
        host_approve(host=host, verified=True)
    assert error.value.code == SupplierErrorCode.HARDWARE_UNCONFIRMED


def test_a_new_model_needs_staff_even_when_the_agent_confirms_it(host):
    h100 = AcceleratorModel.objects.get(slug="h100-80g")
    host_update(host=host, accelerator_model=h100, accelerator_count=1, vcpus=24, ram_gb=256, disk_gb=2000)
    agent_report_inventory(
        host=host,
        inventory={
            "source": "nvml",
            "accelerators": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559}],
            "vcpus": 24,
            "ram_gb": 250,
            "disk_gb": 2000,
        },
    )
    host.refresh_from_db()
    assert host.hardware_changed_at is None and host.status == Host.Status.PENDING
    assert not Offer.objects.listed().filter(host=host).exists()
    host_approve(host=host, verified=True)
    assert Offer.objects.filter(host=host, instance_type__name="h100-80g.1x").exists()
