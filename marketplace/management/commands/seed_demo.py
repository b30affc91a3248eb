"""Demo data: users, supplier organizations and 20+ hosts across cloud and edge regions.

Idempotent: existing users, organizations and hosts (matched by email / name) are left alone.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.models import Team, TeamMembership, User
from accounts.roles import Role
from accounts.services import user_create
from accounts.teams import team_create
from billing.ledger import credit_grant
from marketplace.models import AcceleratorModel, Region, Zone
from marketplace.services import catalog_sync
from suppliers import hosts as supplier_hosts
from suppliers import organizations as supplier_organizations
from suppliers.models import Host, Membership, Organization

DEMO_PASSWORD = "demo12345"

ORGANIZATIONS = [
    # name, owner email, country, payout country, status
    ("Northwind Compute", "supplier@example.com", "US", "US", "approved"),
    ("Fjord AI Cloud", "ops@fjord.example.com", "SE", "SE", "approved"),
    ("Sakura GPU Works", "infra@sakura.example.com", "JP", "JP", "approved"),
    ("Garage GPU Collective", "hello@garage.example.com", "GB", "GB", "approved"),
    ("Newco Datacenters", "founder@newco.example.com", "DE", "DE", "pending"),
]

# organization, host name, region, zone, accelerator slug, count, price per unit-hour, policy,
# equal slices, oversubscription, PUE, verified, reliability, (vcpus, ram, disk) override
# fmt: off
HOSTS = [
    ("Northwind Compute", "nw-iad-h100-01", "us-east", "us-east-a", "h100-80g", 8, "2.49", "fine", 1, "1.5", "1.25", True, "0.9990"),
    ("Northwind Compute", "nw-iad-h100-02", "us-east", "us-east-b", "h100-80g", 8, "2.39", "whole", 1, "1.0", "1.25", True, "0.9970"),
    ("Northwind Compute", "nw-iad-h200-01", "us-east", "us-east-a", "h200-141g", 8, "3.29", "equal", 4, "1.0", "1.25", True, "0.9985"),
    ("Northwind Compute", "nw-pdx-a100-01", "us-west", "us-west-a", "a100-80g", 8, "1.39", "fine", 1, "1.25", "1.20", True, "0.9950"),
    ("Northwind Compute", "nw-pdx-a100-02", "us-west", "us-west-b", "a100-40g", 4, "0.99", "equal", 4, "1.0", "1.20", True, "0.9930"),
    ("Northwind Compute", "nw-pdx-cpu-01", "us-west", "us-west-a", "epyc-9654", 2, "0.018", "fine", 1, "2.0", "1.20", True, "0.9995"),
    ("Northwind Compute", "nw-iad-h100pcie-01", "us-east", "us-east-b", "h100-pcie-80g", 4, "1.95", "fine", 1, "1.0", "1.25", False, None),
    ("Fjord AI Cloud", "fj-sto-mi300x-01", "eu-north", "eu-north-a", "mi300x-192g", 8, "2.15", "fine", 1, "1.5", "1.08", True, "0.9980"),
    ("Fjord AI Cloud", "fj-sto-gaudi2-01", "eu-north", "eu-north-a", "gaudi2-96g", 8, "0.98", "fine", 1, "1.0", "1.08", True, "0.9960"),
    ("Fjord AI Cloud", "fj-fra-h100-01", "eu-central", "eu-central-a", "h100-80g", 8, "2.69", "fine", 1, "1.0", "1.15", True, "0.9975"),
    ("Fjord AI Cloud", "fj-fra-l40s-01", "eu-central", "eu-central-b", "l40s-48g", 4, "0.89", "fine", 1, "1.5", "1.15", True, "0.9940"),
    ("Fjord AI Cloud", "fj-fra-cpu-01", "eu-central", "eu-central-a", "xeon-8480", 2, "0.021", "equal", 7, "1.0", "1.15", True, "0.9990"),
    ("Fjord AI Cloud", "fj-sto-ascend-01", "eu-north", "eu-north-a", "ascend910b-64g", 8, "0.85", "fine", 1, "1.0", "1.08", False, "0.9800"),
    ("Sakura GPU Works", "sk-tyo-l4-01", "ap-northeast", "ap-northeast-a", "l4-24g", 8, "0.39", "fine", 1, "2.0", "1.35", True, "0.9960"),
    ("Sakura GPU Works", "sk-tyo-inf2-01", "ap-northeast", "ap-northeast-a", "inf2-32g", 8, "0.29", "fine", 1, "1.0", "1.35", True, "0.9950"),
    ("Sakura GPU Works", "sk-sin-h100-01", "ap-southeast", "ap-southeast-a", "h100-80g", 8, "2.59", "equal", 8, "1.0", "1.45", True, "0.9920"),
    ("Sakura GPU Works", "sk-sin-l40s-01", "ap-southeast", "ap-southeast-a", "l40s-48g", 8, "0.92", "fine", 1, "1.0", "1.45", True, "0.9910"),
    ("Sakura GPU Works", "sk-sin-cpu-01", "ap-southeast", "ap-southeast-a", "altra-m128", 1, "0.012", "fine", 1, "1.5", "1.45", True, "0.9970"),
    ("Sakura GPU Works", "sk-sgp-edge-l4-01", "edge-sgp", "edge-sgp-1", "l4-24g", 2, "0.45", "fine", 1, "1.0", "1.60", True, "0.9890"),
    ("Garage GPU Collective", "gg-lon-4090-01", "edge-lon", "edge-lon-1", "rtx4090-24g", 4, "0.34", "fine", 1, "1.0", "1.70", True, "0.9700"),
    ("Garage GPU Collective", "gg-lon-4090-02", "edge-lon", "edge-lon-1", "rtx4090-24g", 2, "0.31", "whole", 1, "1.0", "1.70", False, "0.9500"),
    ("Garage GPU Collective", "gg-nyc-3090-01", "edge-nyc", "edge-nyc-1", "rtx3090-24g", 4, "0.19", "equal", 4, "1.0", "1.80", False, "0.9400"),
    ("Garage GPU Collective", "gg-nyc-4090-01", "edge-nyc", "edge-nyc-1", "rtx4090-24g", 8, "0.36", "fine", 1, "1.5", "1.65", True, "0.9650"),
    ("Newco Datacenters", "nc-fra-h200-01", "eu-central", "eu-central-b", "h200-141g", 8, "2.99", "fine", 1, "1.0", "1.30", False, None),
]
# fmt: on


DEMO_PORTS_FROM = 20000  # each demo host forwards 100 ports of the local machine from here on
DEMO_PORTS_PER_HOST = 100


def _host_hardware(model: AcceleratorModel, count: int, oversubscription: Decimal) -> dict[str, int]:
    """A plausible server for `count` units: enough CPU/RAM/disk for every standard family."""
    if model.kind == "cpu":
        vcpus = model.cores * 2 * count
        return {"vcpus": vcpus, "ram_gb": vcpus * 8, "disk_gb": vcpus * 40}
    return {
        "vcpus": model.vcpus_per_unit * count + 16,
        "ram_gb": model.ram_gb_per_unit * count + 128,
        "disk_gb": model.disk_gb_per_unit * count * 2,
    }


DEMO_TEAM = "Demo lab"


class Command(BaseCommand):
    help = "Load demo users, supplier organizations and hosts (idempotent)."

    @transaction.atomic
    def handle(self, *args, **options):
        catalog_sync()
        self._user("admin@example.com", "Ada Admin", User.Role.BUYER, staff=True)
        buyer = self._user("buyer@example.com", "Bea Buyer", User.Role.BUYER)
        credit_grant(user=buyer, amount=Decimal("500"), reason=_("Welcome credit"), key=f"demo-credit:{buyer.pk}")
        self._team(buyer)
        organizations = {}
        for name, owner_email, country, payout_country, status in ORGANIZATIONS:
            owner = self._user(owner_email, f"{name} owner", User.Role.SUPPLIER)
            organizations[name] = self._organization(name, owner, country, payout_country, status)
        created = 0
        for number, row in enumerate(HOSTS):
            created += self._host(organizations, *row)
            self._inbound_ports(organizations[row[0]], row[1], number)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: {len(organizations)} organizations, {Host.objects.count()} hosts "
                f"({created} new), team {DEMO_TEAM!r}. Logins: admin@example.com, supplier@example.com, "
                "buyer@example.com, colleague@example.com "
                f"/ {DEMO_PASSWORD}"
            )
        )

    def _inbound_ports(self, organization: Organization, name: str, number: int) -> None:
        """Demo hosts forward ports of this machine (the simulated agents run instances as local
        processes that bind them), so a rented instance's URL opens in the browser."""
        host = Host.objects.filter(organization=organization, name=name).first()
        if host is None or host.accepts_inbound:
            return
        start = DEMO_PORTS_FROM + number * DEMO_PORTS_PER_HOST
        supplier_hosts.host_update(
            host=host,
            public_address="127.0.0.1",
            port_range_start=start,
            port_range_end=start + DEMO_PORTS_PER_HOST - 1,
        )

    def _team(self, owner: User) -> None:
        """A team the demo buyer owns, with its own wallet and a colleague who may only read."""
        if Team.objects.filter(name=DEMO_TEAM, memberships__user=owner).exists():
            return
        team = team_create(owner=owner, name=DEMO_TEAM)
        colleague = self._user("colleague@example.com", "Cole League", User.Role.BUYER)
        TeamMembership.objects.create(team=team, user=colleague, role=Role.READ_ONLY)
        credit_grant(user=team.account, amount=Decimal("300"), reason=_("Welcome credit"), key=f"demo-credit:{team.pk}")

    def _user(self, email: str, full_name: str, role: str, staff: bool = False) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            user = user_create(email=email, password=DEMO_PASSWORD, role=role, full_name=full_name)
        if staff and not user.is_staff:
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        return user

    def _organization(self, name, owner, country, payout_country, status) -> Organization:
        organization = Organization.objects.filter(name=name).first()
        if organization is None:
            membership = Membership.objects.filter(user=owner).first()
            if membership:
                return membership.organization
            organization = supplier_organizations.organization_create(
                owner=owner,
                name=name,
                legal_name=f"{name} Ltd",
                contact_name=owner.full_name,
                contact_email=owner.email,
                country=country,
                payout_country=payout_country,
                website=f"https://{name.split()[0].lower()}.example.com",
            )
            if status == "approved":
                organization = supplier_organizations.organization_approve(organization=organization)
        return organization

    def _host(
        self,
        organizations,
        org_name,
        name,
        region,
        zone,
        slug,
        count,
        price,
        policy,
        slices,
        oversub,
        pue,
        verified,
        reliability,
    ) -> int:
        organization = organizations[org_name]
        if Host.objects.filter(organization=organization, name=name).exists():
            return 0
        owner = Membership.objects.filter(organization=organization, role=Membership.Role.OWNER).first().user
        model = AcceleratorModel.objects.get(slug=slug)
        host = supplier_hosts.host_create(
            user=owner,
            name=name,
            region=Region.objects.get(code=region),
            zone=Zone.objects.get(code=zone),
            pue=Decimal(pue),
            accelerator_model=model,
            accelerator_count=count,
            network_up_mbps=25_000 if model.kind != "cpu" else 10_000,
            network_down_mbps=25_000 if model.kind != "cpu" else 10_000,
            price_per_unit_hour=Decimal(price),
            storage_price_per_gb_month=Decimal("0.08"),
            min_rental_hours=0 if policy != "whole" else 24,
            slicing_policy=policy,
            equal_slices=slices,
            oversubscription_ratio=Decimal(oversub),
            **_host_hardware(model, count, Decimal(oversub)),
        )
        if reliability is not None:
            host = supplier_hosts.host_set_reliability(host=host, reliability=Decimal(reliability))
        if organization.status == Organization.Status.APPROVED:
            supplier_hosts.host_approve(host=host, verified=verified)
        return 1
