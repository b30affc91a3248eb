"""Suppliers (organizations with members) and the hosts they declare."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.models import Invitation
from accounts.roles import Role
from marketplace.capacity import SlicingPolicy
from marketplace.models import validate_clean_text, validate_printable
from marketplace.money import PRICE_DIGITS, PRICE_PLACES

from .validators import validate_public_address as validate_public_address

ORGANIZATION_DESCRIPTION_MAX_LENGTH = 2000
MAX_PORT_RANGE_SIZE = 20_000  # host ports one host may forward to its instances
LOWEST_FORWARDED_PORT = 1024  # below: privileged ports, and the host's own SSH


def validate_organization_description(value: str) -> None:
    """A supplier's description is free text buyers read: bounded, no control or bidi characters."""
    validate_clean_text(value, max_length=ORGANIZATION_DESCRIPTION_MAX_LENGTH)


class Organization(models.Model):
    """A supplier. New organizations are `pending` until staff approve them."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending review")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        SUSPENDED = "suspended", _("Suspended")

    name = models.CharField(max_length=150, unique=True, validators=[validate_printable])
    legal_name = models.CharField(max_length=200, blank=True, validators=[validate_printable])
    website = models.URLField(blank=True)
    description = models.TextField(blank=True, max_length=2000, validators=[validate_organization_description])
    contact_name = models.CharField(max_length=150, validators=[validate_printable])
    contact_email = models.EmailField()
    contact_phone = models.CharField(
        max_length=32,
        blank=True,
        validators=[RegexValidator(r"^\+?[0-9 ()-]{6,32}$", _("Enter a phone number such as +1 555 0100."))],
    )
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2 country of the business.")
    payout_country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2 country of the payout account.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    status_reason = models.CharField(max_length=500, blank=True)
    stripe_account_id = models.CharField(max_length=255, blank=True, help_text="Stripe Connect account for payouts.")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="organizations")
    created_at = models.DateTimeField(default=timezone.now)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_approved(self) -> bool:
        return self.status == self.Status.APPROVED


class Membership(models.Model):
    """A person in a supplier organization, with a role (`accounts.roles`): one organization per person."""

    Role = Role

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["organization", "user"]

    def __str__(self) -> str:
        return f"{self.user} @ {self.organization} ({self.role})"


class HostQuerySet(models.QuerySet["Host"]):
    def sellable(self) -> HostQuerySet:
        """Hosts whose capacity may be offered: approved, of an approved organization, agent not
        offline, inventory not contradicting the declaration, no unconfirmed hardware change."""
        return self.filter(
            status=Host.Status.APPROVED,
            organization__status=Organization.Status.APPROVED,
            inventory_mismatch__isnull=True,
            hardware_changed_at__isnull=True,
        ).exclude(agent_status=AgentStatus.OFFLINE)


class AgentStatus(models.TextChoices):
    NEVER_SEEN = "never_seen", _("No agent yet")
    ONLINE = "online", _("Online")
    OFFLINE = "offline", _("Offline")


# Labels of the policies for people; the migrations recorded the English ones, which these equal.
SLICING_POLICY_LABELS = {
    SlicingPolicy.WHOLE: pgettext_lazy("slicing policy", "Whole"),
    SlicingPolicy.EQUAL: pgettext_lazy("slicing policy", "Equal"),
    SlicingPolicy.FINE: pgettext_lazy("slicing policy", "Fine"),
}


class Host(models.Model):
    """A physical server a supplier declares. Offers are derived from it under its slicing policy."""

    AgentStatus = AgentStatus

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending verification")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        DELISTED = "delisted", _("Delisted")

    class DecidedBy(models.TextChoices):
        SUPPLIER = "supplier", _("The supplier")
        STAFF = "staff", _("Staff")
        PLATFORM = "platform", _("The platform")

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="hosts")
    name = models.CharField(max_length=100, validators=[validate_printable])
    region = models.ForeignKey("marketplace.Region", on_delete=models.PROTECT, related_name="hosts")
    zone = models.ForeignKey("marketplace.Zone", on_delete=models.PROTECT, null=True, blank=True, related_name="hosts")
    pue = models.DecimalField(
        "data-centre PUE",
        max_digits=4,
        decimal_places=2,
        default=Decimal("1.40"),
        validators=[MinValueValidator(Decimal("1.00")), MaxValueValidator(Decimal("3.00"))],
    )
    accelerator_model = models.ForeignKey(
        "marketplace.AcceleratorModel",
        on_delete=models.PROTECT,
        related_name="hosts",
        help_text="The accelerator, or the CPU model for CPU-only hosts.",
    )
    accelerator_count = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(64)],
        help_text="Accelerators in the server, or CPU sockets for CPU-only hosts.",
    )
    vcpus = models.PositiveIntegerField("vCPUs", validators=[MinValueValidator(1), MaxValueValidator(4096)])
    ram_gb = models.PositiveIntegerField("RAM (GB)", validators=[MinValueValidator(1), MaxValueValidator(65536)])
    disk_gb = models.PositiveIntegerField("disk (GB)", validators=[MinValueValidator(1), MaxValueValidator(10_000_000)])
    network_up_mbps = models.PositiveIntegerField(
        "network up (Mbps)", validators=[MinValueValidator(1), MaxValueValidator(1_600_000)]
    )
    network_down_mbps = models.PositiveIntegerField(
        "network down (Mbps)", validators=[MinValueValidator(1), MaxValueValidator(1_600_000)]
    )
    power_per_accelerator_watts = models.PositiveIntegerField(
        "power per accelerator (W)",
        validators=[MinValueValidator(1), MaxValueValidator(5000)],
        help_text="Draw per accelerator (per socket on CPU hosts); defaults to the model's TDP.",
    )
    price_per_unit_hour = models.DecimalField(
        "price per accelerator-hour (per vCPU-hour for CPU hosts)",
        max_digits=PRICE_DIGITS,
        decimal_places=PRICE_PLACES,
        validators=[MinValueValidator(Decimal("0.000001")), MaxValueValidator(Decimal("1000"))],
    )
    spot_min_price_per_unit_hour = models.DecimalField(
        "minimum spot bid per unit-hour",
        max_digits=PRICE_DIGITS,
        decimal_places=PRICE_PLACES,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.000001")), MaxValueValidator(Decimal("1000"))],
        help_text="Empty: half the on-demand price.",
    )
    reserved_discount_week = models.DecimalField(
        "reserved discount, 1 week",
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.10"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("0.9"))],
    )
    reserved_discount_month = models.DecimalField(
        "reserved discount, 1 month",
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.20"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("0.9"))],
    )
    reserved_discount_quarter = models.DecimalField(
        "reserved discount, 3 months",
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.35"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("0.9"))],
    )
    storage_price_per_gb_month = models.DecimalField(
        "storage price per GB-month",
        max_digits=PRICE_DIGITS,
        decimal_places=PRICE_PLACES,
        default=Decimal("0.10"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("10"))],
    )
    no_accelerator_price_per_vcpu_hour = models.DecimalField(
        "no-GPU mode price per vCPU-hour",
        max_digits=PRICE_DIGITS,
        decimal_places=PRICE_PLACES,
        default=Decimal("0.01"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="What a stopped instance costs per vCPU-hour when its buyer starts it without accelerators.",
    )
    min_rental_hours = models.PositiveIntegerField(
        "minimum rental (hours)", default=0, validators=[MaxValueValidator(24 * 366)]
    )
    offer_ends_at = models.DateTimeField(null=True, blank=True, help_text="No new rentals after this time.")
    slicing_policy = models.CharField(
        max_length=8,
        choices=[(policy.value, SLICING_POLICY_LABELS[policy]) for policy in SlicingPolicy],
        default=SlicingPolicy.FINE.value,
    )
    equal_slices = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(256)],
        help_text="For the equal policy: how many equal instances the host is cut into.",
    )
    oversubscription_ratio = models.DecimalField(
        "CPU/RAM oversubscription",
        max_digits=3,
        decimal_places=2,
        default=Decimal("1.00"),
        validators=[MinValueValidator(Decimal("1.00")), MaxValueValidator(Decimal("2.00"))],
    )
    public_address = models.CharField(
        max_length=253,
        blank=True,
        validators=[validate_public_address],
        help_text="IP address or DNS name buyers connect to. Empty: no inbound ports.",
    )
    port_range_start = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(LOWEST_FORWARDED_PORT), MaxValueValidator(65535)],
        help_text="First host port forwarded to instances. Empty: no inbound ports.",
    )
    port_range_end = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(LOWEST_FORWARDED_PORT), MaxValueValidator(65535)],
        help_text="Last host port forwarded to instances (inclusive).",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    status_reason = models.CharField(max_length=500, blank=True)
    status_decided_by = models.CharField(
        max_length=16,
        choices=DecidedBy.choices,
        default=DecidedBy.SUPPLIER,
        help_text="Who set the status: a staff decision can be undone only by staff.",
    )
    hardware_changed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The declared hardware changed: not offered until the agent's inventory confirms it.",
    )
    verified = models.BooleanField(default=False, help_text="Staff (later: the agent) confirmed the declaration.")
    reliability = models.DecimalField(
        max_digits=5, decimal_places=4, null=True, blank=True, help_text="0-1 uptime score; empty until measured."
    )
    # What the host agent reports.
    agent_status = models.CharField(max_length=16, choices=AgentStatus.choices, default=AgentStatus.NEVER_SEEN)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    inventory = models.JSONField(null=True, blank=True, help_text="The agent's last inventory report.")
    inventory_reported_at = models.DateTimeField(null=True, blank=True)
    inventory_mismatch = models.JSONField(
        null=True, blank=True, help_text="Differences between inventory and declaration; offers delisted while set."
    )
    selftest = models.JSONField(null=True, blank=True)
    selftest_passed = models.BooleanField(null=True, blank=True)
    selftest_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = HostQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="host_unique_name_per_organization"),
            models.CheckConstraint(name="host_pue_range", condition=Q(pue__gte=1, pue__lte=3)),
            models.CheckConstraint(
                name="host_oversubscription_range",
                condition=Q(oversubscription_ratio__gte=1, oversubscription_ratio__lte=2),
            ),
            models.CheckConstraint(name="host_price_positive", condition=Q(price_per_unit_hour__gt=0)),
            models.CheckConstraint(
                name="host_storage_price_not_negative", condition=Q(storage_price_per_gb_month__gte=0)
            ),
            models.CheckConstraint(name="host_has_accelerators", condition=Q(accelerator_count__gte=1)),
            models.CheckConstraint(
                name="host_port_range_whole",
                condition=Q(port_range_start__isnull=True, port_range_end__isnull=True)
                | Q(port_range_start__isnull=False, port_range_end__gte=models.F("port_range_start")),
            ),
            models.CheckConstraint(
                name="host_reliability_range",
                condition=Q(reliability__isnull=True) | Q(reliability__gte=0, reliability__lte=1),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.organization})"

    @property
    def accepts_inbound(self) -> bool:
        """Whether buyers can reach ports of its instances (an address and a port range)."""
        return bool(self.public_address) and self.port_range_start is not None and self.port_range_end is not None

    @property
    def spot_floor_per_unit_hour(self) -> Decimal:
        """The lowest spot bid per unit-hour the supplier accepts."""
        if self.spot_min_price_per_unit_hour is not None:
            return self.spot_min_price_per_unit_hour
        return (self.price_per_unit_hour / 2).quantize(Decimal("0.000001"))

    def spot_floor_for(self, on_demand_price_per_hour: Decimal) -> Decimal:
        """The lowest spot bid for an instance whose on-demand price on this host is given."""
        return (on_demand_price_per_hour * self.spot_floor_per_unit_hour / self.price_per_unit_hour).quantize(
            Decimal("0.000001")
        )

    def reserved_discount(self, term_hours: int) -> Decimal:
        """The supplier's discount for a reserved term (hours: 168, 720 or 2160)."""
        return {
            168: self.reserved_discount_week,
            720: self.reserved_discount_month,
            2160: self.reserved_discount_quarter,
        }[term_hours]


class HostRegistrationToken(models.Model):
    """A one-time token the supplier gives the agent to exchange for a host credential."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="registration_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"registration token for host {self.host_id}"


class HostCredentialQuerySet(models.QuerySet["HostCredential"]):
    def active(self) -> HostCredentialQuerySet:
        """Credentials that have not been revoked."""
        return self.filter(revoked_at__isnull=True)


class HostCredential(models.Model):
    """What a registered agent authenticates with. Only the SHA-256 of the secret is stored."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="credentials")
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = HostCredentialQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"credential {self.prefix} for host {self.host_id}"


class HostOutage(models.Model):
    """A heartbeat gap: from the last heartbeat before the host went offline to the first after.
    The evidence for reliability scores and SLA credits."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="outages")
    started_at = models.DateTimeField(help_text="The last heartbeat before the gap.")
    ended_at = models.DateTimeField(null=True, blank=True, help_text="The first heartbeat after it; empty: ongoing.")

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["host"], condition=Q(ended_at__isnull=True), name="outage_one_open_per_host"
            )
        ]

    def __str__(self) -> str:
        return f"host {self.host_id} down {self.started_at:%Y-%m-%d %H:%M} - {self.ended_at or 'now'}"


class MaintenanceWindow(models.Model):
    """Planned downtime. Renters are told when it is scheduled; orders that would overlap go
    elsewhere; the host is not offered while it lasts."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="maintenance_windows")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(name="maintenance_ends_after_start", condition=Q(ends_at__gt=models.F("starts_at")))
        ]

    def __str__(self) -> str:
        return f"host {self.host_id} maintenance {self.starts_at:%Y-%m-%d %H:%M} - {self.ends_at:%H:%M}"


def _document_path(instance: OrganizationDocument, filename: str) -> str:
    return f"organization-documents/{instance.organization_id}/{uuid.uuid4().hex}"


class OrganizationDocument(models.Model):
    """Business documents for supplier verification. Kept out of public media; served only to the
    organization's members and staff."""

    class Kind(models.TextChoices):
        REGISTRATION = "registration", _("Business registration")
        TAX = "tax", _("Tax certificate")
        IDENTITY = "identity", _("Representative's ID")
        DATACENTER = "datacenter", _("Data-centre contract or lease")
        OTHER = "other", _("Other")

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="documents")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    file = models.FileField(upload_to=_document_path)
    original_name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=64)
    size_bytes = models.PositiveIntegerField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    uploaded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-uploaded_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.organization}"


class OrganizationInvitation(Invitation):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")

    class Meta(Invitation.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "email"],
                condition=Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="organization_invitation_open_once",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization} ({self.role})"
