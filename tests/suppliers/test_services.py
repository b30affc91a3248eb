"""Host declaration and review through the services: validation, offers, capacity in use."""

from decimal import Decimal

import pytest
from django.utils import timezone
from freezegun import freeze_time

from marketplace.errors import Conflict, Forbidden, InvalidInput
from marketplace.models import AcceleratorModel, InstanceType, Offer, Region, Zone
from marketplace.models import Offer as OfferModel
from marketplace.services import offers_delist_expired
from orders.models import Allocation
from orders.supply import host_update, organization_suspend
from suppliers.hosts import host_create, host_delete, host_reject, host_set_listed
from suppliers.models import Host, Organization
from suppliers.organizations import organization_approve, organization_create
from tests.factories import HostFactory, OrganizationFactory, UserFactory, host_data

pytestmark = pytest.mark.django_db


def test_new_host_is_pending_and_not_offered(supplier, supplier_org):
    host = host_create(user=supplier, **host_data())
    assert host.status == Host.Status.PENDING
    assert not Offer.objects.listed().filter(host=host).exists()


def test_power_defaults_to_the_model_tdp(supplier):
    host = host_create(user=supplier, **host_data())
    assert host.power_per_accelerator_watts == 700


def test_approval_derives_one_offer_per_carriable_instance_type(supplier_org):
    host = HostFactory(organization=supplier_org)
    offers = {o.instance_type.name: o for o in host.offers.select_related("instance_type")}
    # 192 vCPU, 2048 GB: standard shapes up to 8x fit; high-CPU 8x (288 vCPU) does not.
    assert offers["h100-80g.1x"].available_count == 8
    assert offers["h100-80g.8x"].available_count == 1
    assert "h100-80g.8x.highcpu" not in offers
    assert offers["h100-80g.1x"].price_per_hour == Decimal("2.500000")
    assert offers["h100-80g.8x"].price_per_hour == Decimal("20.000000")
    assert offers["h100-80g.1x"].energy_kwh_per_hour == Decimal("0.8750")
    assert all(o.verified for o in offers.values())


def test_offers_need_an_approved_organization(db):
    organization = OrganizationFactory(status=Organization.Status.PENDING)
    host = HostFactory(organization=organization)
    assert host.offers.listed().count() == 0
    organization_approve(organization=organization)
    assert host.offers.count() > 0
    organization_suspend(organization=organization, reason="fraud check")
    assert host.offers.listed().count() == 0


def test_whole_policy_sells_the_host_once(supplier_org):
    host = HostFactory(organization=supplier_org, slicing_policy="whole")
    names = set(host.offers.values_list("instance_type__name", flat=True))
    assert names == {"h100-80g.8x"}  # high-memory 8x needs 3072 GB RAM; this host has 2048
    assert set(host.offers.values_list("available_count", flat=True)) == {1}


def test_equal_policy_sells_only_the_slice_size(supplier_org):
    host = HostFactory(organization=supplier_org, slicing_policy="equal", equal_slices=4)
    offers = {o.instance_type.name: o.available_count for o in host.offers.select_related("instance_type")}
    assert offers == {"h100-80g.2x": 4}  # a quarter: 2 GPUs, 48 vCPU, 512 GB


def test_cpu_host_is_sold_by_vcpu(supplier_org):
    host = HostFactory(
        organization=supplier_org,
        accelerator_model=AcceleratorModel.objects.get(slug="epyc-9654"),
        accelerator_count=1,
        vcpus=192,
        ram_gb=768,
        disk_gb=4000,
        price_per_unit_hour=Decimal("0.02"),
    )
    offer = host.offers.get(instance_type__name="cpu.16x")
    assert offer.available_count == 12
    assert offer.price_per_hour == Decimal("0.320000")
    assert offer.energy_kwh_per_hour == Decimal("0.0375")  # 360 W x 16/192 x 1.25
    assert not host.offers.filter(instance_type__accelerator_count__gt=0).exists()


def test_oversubscription_raises_what_a_host_carries(supplier_org):
    host = HostFactory(organization=supplier_org, oversubscription_ratio=Decimal("1.5"))
    assert host.offers.filter(instance_type__name="h100-80g.8x.highcpu").exists()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"pue": Decimal("0.9")}, "pue"),
        ({"oversubscription_ratio": Decimal("2.5")}, "oversubscription_ratio"),
        ({"price_per_unit_hour": Decimal("0")}, "price_per_unit_hour"),
        ({"vcpus": 0}, "vcpus"),
        ({"slicing_policy": "equal", "equal_slices": 3}, "equal_slices"),
        ({"slicing_policy": "diagonal"}, "slicing_policy"),
        ({"offer_ends_at": timezone.now() - timezone.timedelta(days=1)}, "offer_ends_at"),
        ({"zone": "wrong-region"}, "zone"),
        ({"vcpus": 4, "ram_gb": 8}, "slicing_policy"),  # nothing standard fits
    ],
)
def test_invalid_declarations_are_refused_with_the_field_named(supplier, overrides, field):
    if overrides.get("zone") == "wrong-region":
        overrides["zone"] = Zone.objects.get(code="eu-north-a")
    with pytest.raises(InvalidInput) as error:
        host_create(user=supplier, **host_data(**overrides))
    assert field in error.value.fields
    assert not Host.objects.exists()


def test_unknown_fields_are_refused(supplier):
    with pytest.raises(InvalidInput) as error:
        host_create(user=supplier, **host_data(gpus=8))
    assert error.value.code == "unknown_field"


def test_a_person_without_an_organization_cannot_declare_hosts(buyer):
    with pytest.raises(Forbidden):
        host_create(user=buyer, **host_data())


def test_names_are_unique_per_organization(supplier, other_supplier):
    host_create(user=supplier, **host_data(name="box"))
    with pytest.raises(InvalidInput):
        host_create(user=supplier, **host_data(name="box"))
    host_create(user=other_supplier, **host_data(name="box"))  # another organization may


def test_update_recomputes_offers_in_the_same_transaction(approved_host):
    host_update(
        host=approved_host, price_per_unit_hour=Decimal("3.00"), region=Region.objects.get(code="eu-north"), zone=None
    )
    offer = approved_host.offers.get(instance_type__name="h100-80g.1x")
    assert offer.price_per_hour == Decimal("3.000000")
    assert offer.region.code == "eu-north"


def _allocate(host, type_name):
    t = InstanceType.objects.get(name=type_name)
    return Allocation.objects.create(
        host=host, instance_type=t, accelerators=t.accelerator_count, vcpus=t.vcpus, ram_gb=t.ram_gb, disk_gb=t.disk_gb
    )


def test_allocations_reduce_offers_and_capacity_cannot_drop_below_them(approved_host):
    _allocate(approved_host, "h100-80g.4x")
    host_update(host=approved_host, price_per_unit_hour=Decimal("2.60"))
    offers = {o.instance_type.name: o.available_count for o in approved_host.offers.select_related("instance_type")}
    assert offers["h100-80g.1x"] == 4
    assert offers["h100-80g.8x"] == 0  # sold out, kept at 0 (not on sale)

    with pytest.raises(Conflict) as error:
        host_update(host=approved_host, accelerator_count=2)
    assert error.value.code == "capacity_in_use"
    approved_host.refresh_from_db()
    assert approved_host.accelerator_count == 8  # no half-write

    with pytest.raises(Conflict):
        host_delete(host=approved_host)


def test_delist_and_relist(approved_host):
    host_set_listed(host=approved_host, listed=False)
    assert approved_host.offers.listed().count() == 0
    host_set_listed(host=approved_host, listed=True)
    assert approved_host.offers.count() > 0
    with pytest.raises(Conflict):
        host_set_listed(host=approved_host, listed=True)


def test_reject_needs_a_reason_and_removes_offers(approved_host):
    with pytest.raises(InvalidInput):
        host_reject(host=approved_host, reason=" ")
    host_reject(host=approved_host, reason="Inventory does not match")
    approved_host.refresh_from_db()
    assert approved_host.status == Host.Status.REJECTED
    assert approved_host.offers.listed().count() == 0


def test_offer_end_date_hides_offers_and_the_expiry_sweep_takes_them_off_sale(approved_host):

    ends = timezone.now() + timezone.timedelta(days=2)
    host_update(host=approved_host, offer_ends_at=ends)
    assert OfferModel.objects.listed().filter(host=approved_host).exists()
    offered = approved_host.offers.count()
    with freeze_time(ends + timezone.timedelta(seconds=1)):
        assert not OfferModel.objects.listed().filter(host=approved_host).exists()
        removed = offers_delist_expired().done
    assert removed == offered > 0
    # Off sale at count 0; the rows stay so an order pinned to one is told it is no longer listed.
    assert approved_host.offers.count() == offered and not approved_host.offers.filter(available_count__gt=0).exists()


def test_onboarding_makes_a_pending_organization_and_a_supplier(db):
    user = UserFactory()
    organization = organization_create(
        owner=user,
        name="Gamma GPUs",
        contact_name="G",
        contact_email="g@example.com",
        country="de",
        payout_country="de",
    )
    user.refresh_from_db()
    assert organization.status == Organization.Status.PENDING
    assert organization.payout_country == "DE"
    assert user.role == "supplier"
    with pytest.raises(Conflict):
        organization_create(
            owner=user,
            name="Second",
            contact_name="G",
            contact_email="g@example.com",
            country="DE",
            payout_country="DE",
        )


def test_onboarding_validates_fields(db):
    with pytest.raises(InvalidInput) as error:
        organization_create(
            owner=UserFactory(),
            name="",
            contact_name="G",
            contact_email="not-an-email",
            country="DE",
            payout_country="DE",
        )
    assert {"name", "contact_email"} <= set(error.value.fields)
