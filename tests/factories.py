"""Factories. Hosts are created and approved through the services, as in real use."""

from decimal import Decimal

import factory

from accounts.models import User
from billing.ledger import credit_grant
from marketplace.models import AcceleratorModel, Region, Zone
from suppliers.hosts import host_approve, host_create
from suppliers.models import Membership, Organization


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    full_name = factory.Faker("name")

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.set_password(extracted or "demo12345")
        if create:
            self.save(update_fields=["password"])

    @factory.post_generation
    def credit(self, create, extracted, **kwargs):
        """Prepaid credit (default $1000): nothing runs on credit."""
        amount = Decimal("1000") if extracted is None else Decimal(extracted)
        if create and amount:
            credit_grant(user=self, amount=amount, reason="Test credit", key=f"test-credit:{self.pk}")


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Supplier {n}")
    contact_name = "Sam Supplier"
    contact_email = factory.Sequence(lambda n: f"contact{n}@supplier.example.com")
    country = "US"
    payout_country = "US"
    status = Organization.Status.APPROVED

    @factory.post_generation
    def owner(self, create, extracted, **kwargs):
        if not create:
            return
        user = extracted or UserFactory(role=User.Role.SUPPLIER)
        Membership.objects.create(organization=self, user=user, role=Membership.Role.OWNER)


def host_data(**overrides) -> dict:
    """A valid declaration: 8x H100 SXM, enough CPU/RAM/disk for every standard family."""
    data = {
        "name": "host-1",
        "region": Region.objects.get(code="us-east"),
        "zone": Zone.objects.get(code="us-east-a"),
        "pue": Decimal("1.25"),
        "accelerator_model": AcceleratorModel.objects.get(slug="h100-80g"),
        "accelerator_count": 8,
        "vcpus": 192,
        "ram_gb": 2048,
        "disk_gb": 16000,
        "network_up_mbps": 25000,
        "network_down_mbps": 25000,
        "price_per_unit_hour": Decimal("2.50"),
        "storage_price_per_gb_month": Decimal("0.10"),
        "min_rental_hours": 0,
        "slicing_policy": "fine",
        "equal_slices": 1,
        "oversubscription_ratio": Decimal("1.00"),
    }
    data.update(overrides)
    return data


_host_counter = iter(range(1, 10**9))


def HostFactory(*, organization: Organization, approved: bool = True, verified: bool = True, **overrides):
    owner = organization.memberships.get(role=Membership.Role.OWNER).user
    overrides.setdefault("name", f"host-{next(_host_counter)}")
    host = host_create(user=owner, **host_data(**overrides))
    if approved:
        host = host_approve(host=host, verified=verified)
    return host


def l4_host_data(**overrides) -> dict:
    """A small L4 server: 4 GPUs, each slot exactly one l4-24g.1x (8 vCPU, 48 GB); disk for 8 such
    instances, so stopped and preempted instances can keep theirs while the GPUs are resold."""
    defaults = {
        "accelerator_model": AcceleratorModel.objects.get(slug="l4-24g"),
        "accelerator_count": 4,
        "vcpus": 32,
        "ram_gb": 192,
        "disk_gb": 4000,
        "price_per_unit_hour": Decimal("0.40"),
    }
    return {**defaults, **overrides}


def dsa_model(*, slug: str, name: str) -> AcceleratorModel:
    """A small dedicated accelerator for the catalog, for tests that need new catalog rows."""
    return AcceleratorModel.objects.create(
        vendor="Test",
        name=name,
        slug=slug,
        kind="dsa",
        memory_gb=16,
        bf16_tflops=Decimal("10.0"),
        fp32_tflops=Decimal("5.0"),
        tdp_watts=75,
        vcpus_per_unit=4,
        ram_gb_per_unit=16,
        disk_gb_per_unit=100,
    )
