"""No-GPU mode: a stopped instance starts with its disk, a little CPU and RAM, billed at the host's
no-GPU rate, while its accelerators go back to the market; taking them back needs them free."""

from decimal import Decimal

import pytest

from marketplace.errors import Conflict
from orders.agent import instance_agent_report
from orders.errors import CapacityTaken
from orders.lifecycle import instance_start, instance_stop, instance_terminate
from orders.models import HostCommand, Instance
from tests.conftest import bearer_client
from tests.factories import HostFactory, UserFactory, l4_host_data

from .conftest import order


@pytest.fixture
def roomy_host(supplier_org):
    """4 x L4 with 8 vCPUs and 32 GB to spare beyond its four l4-24g.1x slots."""
    return HostFactory(organization=supplier_org, name="l4-roomy", **l4_host_data(vcpus=40, ram_gb=224))


def stopped(instance: Instance) -> Instance:
    instance = instance_agent_report(instance=instance, status="running")
    instance_stop(instance=instance)
    return instance_agent_report(instance=Instance.objects.get(pk=instance.pk), status="stopped")


def test_no_gpu_start_frees_the_accelerators_and_taking_them_back_needs_them_free(buyer, roomy_host):
    mine = stopped(order(buyer, disk_gb=600).instances.get())
    instance_start(instance=mine, accelerators=False)
    mine.refresh_from_db()
    assert mine.without_accelerators and mine.price_per_hour == Decimal("0.020000")  # 2 vCPU x $0.01
    assert mine.accelerated_price_per_hour == Decimal("0.413699")  # with 100 GB disk beyond the default
    allocation = mine.allocations.get(released_at__isnull=True)
    assert (allocation.accelerators, allocation.vcpus, allocation.ram_gb, allocation.disk_gb) == (0, 2, 8, 600)
    payload = HostCommand.objects.filter(instance=mine, kind="start").latest("pk").payload
    assert (payload["accelerators"], payload["vcpus"], payload["ram_gb"]) == (0, 2, 8)

    other = UserFactory(email="other@example.com")
    others = order(other, count=4).instances.all()  # all four GPUs: the one mine left is sold again
    assert len(others) == 4

    mine = instance_agent_report(instance=Instance.objects.get(pk=mine.pk), status="running")
    instance_stop(instance=mine)
    mine = instance_agent_report(instance=Instance.objects.get(pk=mine.pk), status="stopped")
    with pytest.raises(CapacityTaken) as taken:
        instance_start(instance=mine)
    assert taken.value.status_code == 409 and taken.value.extra["instance_type"] == "l4-24g.1x"
    assert "offers_elsewhere" in taken.value.extra

    instance_terminate(instance=others[0], actor_user=other)
    instance_start(instance=Instance.objects.get(pk=mine.pk))
    mine.refresh_from_db()
    assert not mine.without_accelerators and mine.price_per_hour == Decimal("0.413699")
    assert mine.allocations.get(released_at__isnull=True).accelerators == 1


def test_reserved_rentals_and_cpu_types_have_no_no_gpu_mode(buyer, roomy_host):
    reserved = stopped(order(buyer, pricing="reserved", term_hours=168).instances.get())
    with pytest.raises(Conflict) as refused:
        instance_start(instance=reserved, accelerators=False)
    assert refused.value.code == "no_accelerator_mode_unavailable"


def test_the_api_starts_without_accelerators_and_refuses_a_wrong_type(buyer, roomy_host):
    client = bearer_client(buyer)
    mine = stopped(order(buyer).instances.get())
    bad = client.post(f"/api/v1/instances/{mine.pk}/start/", {"accelerators": "no"}, format="json")
    assert bad.status_code == 400
    response = client.post(f"/api/v1/instances/{mine.pk}/start/", {"accelerators": False}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["without_accelerators"] is True and response.json()["price_per_hour"] == "0.020000"
    stranger = bearer_client(UserFactory(email="stranger@example.com"))
    assert (
        stranger.post(f"/api/v1/instances/{mine.pk}/start/", {"accelerators": False}, format="json").status_code == 404
    )
