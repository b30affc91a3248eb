"""Orders, instances and their lifecycle, capacity allocations and commands queued for hosts."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from marketplace.capacity import Holding, HoldingKind, Resources
from marketplace.money import PRICE_DIGITS, PRICE_PLACES

from .launch_models import InstanceLog as InstanceLog
from .launch_models import InstancePort as InstancePort
from .launch_models import LaunchTemplate as LaunchTemplate


class Pricing(models.TextChoices):
    ON_DEMAND = "on_demand", _("On demand")
    SPOT = "spot", _("Spot (interruptible)")
    RESERVED = "reserved", _("Reserved term")


RESERVED_TERMS_HOURS = {168: _("1 week"), 720: _("1 month"), 2160: _("3 months")}


class Order(models.Model):
    """A buyer's request for `count` instances, as placed. Its instances carry the lifecycle."""

    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders")
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The person who placed it, when the buyer is a team (empty for a team's own key).",
    )
    instance_type = models.ForeignKey("marketplace.InstanceType", on_delete=models.PROTECT, related_name="+")
    offer_pinned = models.ForeignKey(
        "marketplace.Offer", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    requirements = models.JSONField(null=True, blank=True, help_text="Capability request, when ordered by one.")
    count = models.PositiveSmallIntegerField()
    pricing = models.CharField(max_length=16, choices=Pricing.choices)
    max_price_per_hour = models.DecimalField(
        max_digits=PRICE_DIGITS,
        decimal_places=PRICE_PLACES,
        null=True,
        blank=True,
        help_text="Per instance: the bid for spot, a ceiling otherwise.",
    )
    term_hours = models.PositiveIntegerField(null=True, blank=True)
    region = models.ForeignKey("marketplace.Region", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    near_latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    near_longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    same_host = models.BooleanField(default=False)
    image = models.CharField(max_length=255)
    command = models.TextField(blank=True, max_length=4000)
    terminate_after_hours = models.PositiveIntegerField(null=True, blank=True)
    ports = models.JSONField(default=list, blank=True, help_text="Container ports each instance exposes.")
    environment = models.JSONField(
        default=list,
        blank=True,
        help_text="[{name, value}] or [{name, secret: true, ciphertext}]: secret values encrypted at rest.",
    )
    disk_gb = models.PositiveIntegerField(null=True, blank=True, help_text="Chosen disk; empty: the type's default.")
    template = models.ForeignKey(
        "LaunchTemplate", on_delete=models.SET_NULL, null=True, blank=True, related_name="orders"
    )
    total_price_per_hour = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(name="order_count_positive", condition=Q(count__gte=1)),
            models.CheckConstraint(
                name="order_reserved_has_term",
                condition=~Q(pricing="reserved") | Q(term_hours__in=list(RESERVED_TERMS_HOURS)),
            ),
        ]

    def __str__(self) -> str:
        return f"Order {self.pk}: {self.count} x {self.instance_type_id} ({self.pricing})"


class InstanceStatus(models.TextChoices):
    REQUESTED = "requested", _("Requested")
    PROVISIONING = "provisioning", _("Provisioning")
    RUNNING = "running", _("Running")
    STOPPING = "stopping", _("Stopping")
    STOPPED = "stopped", _("Stopped")
    STARTING = "starting", _("Starting")
    TERMINATING = "terminating", _("Terminating")
    TERMINATED = "terminated", _("Terminated")
    FAILED = "failed", _("Failed")
    PREEMPTED = "preempted", _("Preempted")


# Statuses that hold compute (and so count against spend guards).
LIVE_STATUSES = (
    InstanceStatus.REQUESTED,
    InstanceStatus.PROVISIONING,
    InstanceStatus.RUNNING,
    InstanceStatus.STARTING,
)


class InstanceQuerySet(models.QuerySet["Instance"]):
    def live(self) -> InstanceQuerySet:
        """Instances holding compute now (what spend guards count)."""
        return self.filter(status__in=LIVE_STATUSES)

    def not_terminated(self) -> InstanceQuerySet:
        return self.exclude(status=InstanceStatus.TERMINATED)


class Instance(models.Model):
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="instances")
    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="instances")
    host = models.ForeignKey("suppliers.Host", on_delete=models.PROTECT, related_name="instances")
    instance_type = models.ForeignKey("marketplace.InstanceType", on_delete=models.PROTECT, related_name="+")
    pricing = models.CharField(max_length=16, choices=Pricing.choices)
    price_per_hour = models.DecimalField(
        max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, help_text="Agreed price (the bid, for spot)."
    )
    status = models.CharField(max_length=16, choices=InstanceStatus.choices, default=InstanceStatus.REQUESTED)
    image = models.CharField(max_length=255)
    command = models.TextField(blank=True)
    authorized_keys = models.TextField(
        blank=True, help_text="The buyer's SSH public keys chosen at order, installed by the agent (one per line)."
    )
    disk_gb = models.PositiveIntegerField(help_text="Its disk: the type's default or more, chosen at order.")
    without_accelerators = models.BooleanField(
        default=False, help_text="No-GPU mode: runs on CPU, RAM and disk only; its accelerators are free for others."
    )
    accelerated_price_per_hour = models.DecimalField(
        max_digits=PRICE_DIGITS,
        decimal_places=PRICE_PLACES,
        null=True,
        blank=True,
        help_text="In no-GPU mode: the rental's price with accelerators, restored when they are taken back.",
    )
    terminate_at = models.DateTimeField(null=True, blank=True)
    reserved_until = models.DateTimeField(null=True, blank=True)
    preemption_deadline = models.DateTimeField(null=True, blank=True)
    storage_price_per_gb_month = models.DecimalField(
        max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, default=0, help_text="Kept disk, agreed at order time."
    )
    backfills = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="backfilled_by",
        help_text="Spot only: the idle reserved instance whose capacity this one runs on (it earns the revenue).",
    )
    metered_until = models.DateTimeField(
        null=True, blank=True, help_text="Usage is recorded up to here; null while nothing accrues."
    )
    minimum_billed_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The host's minimum rental at order: compute is billed at least up to here.",
    )
    disk_release_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="Balance at zero with the disk kept: the disk is released at this time unless topped up.",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InstanceQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["buyer", "status"]),
            models.Index(fields=["host", "status"]),
            # Market depth's recent fills and the price hints read a type's newest placements.
            models.Index(fields=["instance_type", "created_at"], name="instance_type_created"),
        ]

    def __str__(self) -> str:
        return f"i-{self.pk} {self.instance_type_id} ({self.status})"

    @property
    def is_spot(self) -> bool:
        return self.pricing == Pricing.SPOT


class InstanceEvent(models.Model):
    """One row per status change: the instance's timeline."""

    class Actor(models.TextChoices):
        BUYER = "buyer", _("Buyer")
        PLATFORM = "platform", _("Platform")
        AGENT = "agent", _("Host agent")
        STAFF = "staff", _("Staff")

    class Kind(models.TextChoices):
        TRANSITION = "transition", _("Status change")
        HOST_LOST = "host_lost", _("Host lost")
        HOST_RECOVERED = "host_recovered", _("Host recovered")

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.TRANSITION)
    from_status = models.CharField(max_length=16, choices=InstanceStatus.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=InstanceStatus.choices)
    reason = models.CharField(max_length=500)
    actor = models.CharField(max_length=16, choices=Actor.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.instance_id}: {self.from_status or '-'} -> {self.to_status}"


class AllocationQuerySet(models.QuerySet["Allocation"]):
    def active(self) -> AllocationQuerySet:
        """Allocations still holding capacity."""
        return self.filter(released_at__isnull=True)


class Allocation(models.Model):
    """Capacity an instance holds on a host: its claim under the host's slicing policy.

    Written and released only under a lock on the host row, in the same transaction that
    recomputes the host's offers. `kind` says how much of the claim is in use (see capacity.py).
    """

    Kind = HoldingKind

    host = models.ForeignKey("suppliers.Host", on_delete=models.PROTECT, related_name="allocations")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, null=True, blank=True, related_name="allocations")
    instance_type = models.ForeignKey("marketplace.InstanceType", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=16, choices=[(k.value, k.value) for k in HoldingKind], default="running")
    spot_bid = models.DecimalField(
        max_digits=PRICE_DIGITS,
        decimal_places=PRICE_PLACES,
        null=True,
        blank=True,
        help_text="Set for spot instances: their bid per hour, which orders preemption.",
    )
    accelerators = models.PositiveIntegerField()
    vcpus = models.PositiveIntegerField()
    ram_gb = models.PositiveIntegerField()
    disk_gb = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)

    objects = AllocationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["host"], condition=Q(released_at__isnull=True), name="allocation_active_by_host")
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["instance"],
                condition=Q(released_at__isnull=True),
                name="allocation_one_active_per_instance",
            )
        ]

    def __str__(self) -> str:
        return f"{self.instance_type} on host {self.host_id} ({self.kind})"

    def as_resources(self) -> Resources:
        return Resources.of(accelerators=self.accelerators, vcpus=self.vcpus, ram_gb=self.ram_gb, disk_gb=self.disk_gb)

    def as_holding(self) -> Holding:
        return Holding(key=self.pk, claim=self.as_resources(), kind=HoldingKind(self.kind), spot_bid=self.spot_bid)


class HostCommand(models.Model):
    """Work for the host agent. Carries an id so re-delivery is harmless; acknowledged once."""

    class Kind(models.TextChoices):
        START = "start", _("Start instance")
        STOP = "stop", _("Stop instance")
        TERMINATE = "terminate", _("Terminate instance")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        ACKNOWLEDGED = "acknowledged", _("Acknowledged")
        FAILED = "failed", _("Failed")

    host = models.ForeignKey("suppliers.Host", on_delete=models.CASCADE, related_name="commands")
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="commands")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["host", "status"])]

    def __str__(self) -> str:
        return f"{self.kind} i-{self.instance_id} on host {self.host_id} ({self.status})"


class ProblemReport(models.Model):
    """A buyer's report about an instance; the supplier may answer; staff resolve it."""

    class Category(models.TextChoices):
        WONT_START = "wont_start", _("Does not start")
        PERFORMANCE = "performance", _("Slower than advertised")
        HOST_LOST = "host_lost", _("Host unreachable")
        HARDWARE = "hardware", _("Hardware does not match the offer")
        BILLING = "billing", _("Billing")
        OTHER = "other", _("Other")

    class Status(models.TextChoices):
        OPEN = "open", _("Open")
        ANSWERED = "answered", _("Answered by the supplier")
        REFUNDED = "refunded", _("Resolved with a credit")
        REJECTED = "rejected", _("Rejected")

    instance = models.ForeignKey(Instance, on_delete=models.PROTECT, related_name="problem_reports")
    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="problem_reports")
    category = models.CharField(max_length=16, choices=Category.choices)
    description = models.TextField(max_length=4000)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    supplier_answer = models.TextField(blank=True, max_length=4000)
    answered_at = models.DateTimeField(null=True, blank=True)
    resolution_reason = models.TextField(blank=True, max_length=2000)
    credit_amount = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"report {self.pk} on i-{self.instance_id} ({self.status})"


class AgentUsageReport(models.Model):
    """What the host agent last said about one instance (its status and usage counters), kept as
    evidence beside metering. One row per instance, overwritten by each heartbeat that reports it,
    so the table grows with instances, not with heartbeats; the history kept is the disagreements
    (`AgentUsageDisagreement`). Only the instance's own host writes it."""

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, related_name="agent_report")
    host = models.ForeignKey("suppliers.Host", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=32, help_text="As the agent reported it.")
    counters = models.JSONField(default=dict, blank=True, help_text="The agent's usage counters (bounded).")
    reported_at = models.DateTimeField()
    last_running_at = models.DateTimeField(
        null=True, blank=True, help_text="The last heartbeat that reported the instance running."
    )
    window_started_at = models.DateTimeField(
        null=True, blank=True, help_text="Start of the window compared with metering; empty: no window open."
    )
    window_counters = models.JSONField(default=dict, blank=True, help_text="The counters at the window's start.")
    utilization = models.JSONField(
        default=list,
        blank=True,
        help_text="The last hour of accelerator readings, one a minute: [[unix time, utilization %, memory MiB]].",
    )

    class Meta:
        ordering = ["-reported_at", "-id"]

    def __str__(self) -> str:
        return f"agent report i-{self.instance_id}: {self.status}"


class AgentUsageDisagreement(models.Model):
    """A window in which the agent's uptime for an instance and the platform's metered compute
    seconds differ by more than AGENT_USAGE_DISAGREEMENT_PERCENT: for staff to look into."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="usage_disagreements")
    host = models.ForeignKey("suppliers.Host", on_delete=models.CASCADE, related_name="+")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    agent_seconds = models.PositiveIntegerField(help_text="Uptime the agent counted in the window.")
    platform_seconds = models.PositiveIntegerField(help_text="Compute seconds the platform metered in the window.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-window_end", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "window_start"], name="usage_disagreement_one_per_window"),
            models.CheckConstraint(
                name="usage_disagreement_window_ordered", condition=Q(window_end__gt=models.F("window_start"))
            ),
        ]

    def __str__(self) -> str:
        return f"i-{self.instance_id}: agent {self.agent_seconds}s vs metered {self.platform_seconds}s"
