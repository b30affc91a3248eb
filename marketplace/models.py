"""The platform's catalog (accelerator models, instance types, regions) and derived offers."""

from __future__ import annotations

import re
from typing import cast

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .errors import ErrorCode
from .money import PRICE_DIGITS, PRICE_PLACES


class AcceleratorKind(models.TextChoices):
    GPU = "gpu", _("GPU")
    DSA = "dsa", _("Dedicated accelerator (DSA/NPU)")
    CPU = "cpu", _("CPU")


class AcceleratorModel(models.Model):
    """A part with its public figures. For CPUs one unit is a socket."""

    vendor = models.CharField(max_length=50)
    name = models.CharField(max_length=100, unique=True)
    slug = models.SlugField(max_length=50, unique=True, help_text="Used in instance type names, e.g. h100-80g.")
    kind = models.CharField(max_length=8, choices=AcceleratorKind.choices)
    memory_gb = models.PositiveIntegerField(help_text="On-device memory; 0 for CPUs.")
    bf16_tflops = models.DecimalField(max_digits=8, decimal_places=1, help_text="Dense BF16/FP16 tensor TFLOPS.")
    fp32_tflops = models.DecimalField(max_digits=8, decimal_places=1)
    tdp_watts = models.PositiveIntegerField()
    cores = models.PositiveIntegerField(null=True, blank=True, help_text="CPUs only: physical cores per socket.")
    vcpus_per_unit = models.PositiveIntegerField(help_text="Standard family share of host vCPUs per unit.")
    ram_gb_per_unit = models.PositiveIntegerField(help_text="Standard family share of host RAM per unit.")
    disk_gb_per_unit = models.PositiveIntegerField(help_text="Standard family share of host disk per unit.")
    inventory_names = models.JSONField(
        default=list,
        blank=True,
        help_text="Names drivers report for this part (nvidia-smi, /proc/cpuinfo), for inventory checks.",
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind", "vendor", "name"]

    def __str__(self) -> str:
        return f"{self.vendor} {self.name}"


class InstanceTypeQuerySet(models.QuerySet["InstanceType"]):
    def active(self) -> InstanceTypeQuerySet:
        """Types that may be offered and ordered."""
        return self.filter(is_active=True)

    def compatible_with(self, accelerator_model: AcceleratorModel) -> InstanceTypeQuerySet:
        """Types a host with this part could carry: its own model, or CPU types on CPU hosts."""
        if accelerator_model.kind == AcceleratorKind.CPU:
            return self.filter(accelerator_model__isnull=True)
        return self.filter(accelerator_model=accelerator_model)


class InstanceType(models.Model):
    """A standard SKU buyers order, comparable across suppliers (e.g. h100-80g.8x, cpu.16x)."""

    class Family(models.TextChoices):
        STANDARD = "standard", _("Standard")
        HIGHCPU = "highcpu", _("High CPU")
        HIGHMEM = "highmem", _("High memory")

    name = models.CharField(
        max_length=64,
        unique=True,
        validators=[RegexValidator(r"^[a-z0-9][a-z0-9.-]*$", "Lowercase letters, digits, dots and dashes.")],
    )
    accelerator_model = models.ForeignKey(
        AcceleratorModel,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="instance_types",
        help_text="Empty for CPU-only types.",
    )
    accelerator_count = models.PositiveSmallIntegerField(default=0)
    family = models.CharField(max_length=16, choices=Family.choices, default=Family.STANDARD)
    vcpus = models.PositiveIntegerField()
    ram_gb = models.PositiveIntegerField()
    disk_gb = models.PositiveIntegerField()
    is_active = models.BooleanField(default=True)

    objects = InstanceTypeQuerySet.as_manager()

    class Meta:
        ordering = ["accelerator_model__kind", "accelerator_model__name", "accelerator_count", "vcpus", "name"]
        constraints = [
            models.CheckConstraint(
                name="instance_type_accelerators_match_model",
                condition=(Q(accelerator_model__isnull=True, accelerator_count=0))
                | (Q(accelerator_model__isnull=False, accelerator_count__gt=0)),
            ),
            models.CheckConstraint(name="instance_type_has_vcpus", condition=Q(vcpus__gt=0)),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def accelerator_kind(self) -> str:
        return cast(AcceleratorModel, self.accelerator_model).kind if self.accelerator_model_id else AcceleratorKind.CPU


class Region(models.Model):
    class Tier(models.TextChoices):
        CLOUD = "cloud", _("Cloud")
        EDGE = "edge", _("Edge")

    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    tier = models.CharField(max_length=8, choices=Tier.choices)
    country = models.CharField(max_length=2, help_text="ISO 3166-1 alpha-2.")
    latitude = models.DecimalField(max_digits=9, decimal_places=6)
    longitude = models.DecimalField(max_digits=9, decimal_places=6)

    class Meta:
        ordering = ["tier", "code"]
        constraints = [
            models.CheckConstraint(name="region_latitude_range", condition=Q(latitude__gte=-90, latitude__lte=90)),
            models.CheckConstraint(name="region_longitude_range", condition=Q(longitude__gte=-180, longitude__lte=180)),
        ]

    def __str__(self) -> str:
        return self.code


class Zone(models.Model):
    region = models.ForeignKey(Region, on_delete=models.CASCADE, related_name="zones")
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["region__code", "code"]

    def __str__(self) -> str:
        return self.code


class OfferQuerySet(models.QuerySet["Offer"]):
    def listed(self) -> OfferQuerySet:
        """Offers a buyer can order now: capacity left and not past the supplier's end date."""
        now = timezone.now()
        return self.filter(available_count__gt=0).filter(Q(listed_until__isnull=True) | Q(listed_until__gt=now))

    def with_related(self) -> OfferQuerySet:
        """Everything a list row shows, in one query."""
        return self.select_related("instance_type", "accelerator_model", "region", "zone", "host", "host__organization")


# Accelerator memory classes (GB per accelerator) with an index of their own for search by price.
OFFER_MEMORY_INDEX_FLOORS = (40, 80, 141)


class Offer(models.Model):
    """A host x instance type the host can still carry. Derived: rewritten whenever capacity changes.

    Figures are denormalized from the host so that search is one indexed query.
    """

    host = models.ForeignKey("suppliers.Host", on_delete=models.CASCADE, related_name="offers")
    instance_type = models.ForeignKey(InstanceType, on_delete=models.CASCADE, related_name="offers")
    # Its own index stays beside offer_model_price: without it, the capped count of one model in one
    # region became a sequential scan whose start moves on (synchronized scans), 100 ms one time in ten.
    accelerator_model = models.ForeignKey(AcceleratorModel, on_delete=models.PROTECT, related_name="offers")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="offers")
    zone = models.ForeignKey(Zone, on_delete=models.PROTECT, null=True, blank=True, related_name="offers")
    tier = models.CharField(max_length=8, choices=Region.Tier.choices)
    # The instance's figures as search filters them, copied from its type and accelerator model
    # so that a filtered, ordered page walks one index of this table without a join per row.
    accelerator_kind = models.CharField(max_length=8, choices=AcceleratorKind.choices, default="")
    accelerator_count = models.PositiveIntegerField(default=0, help_text="Accelerators of one instance.")
    accelerator_memory_gb = models.PositiveIntegerField(default=0, help_text="Memory of one accelerator.")
    vcpus = models.PositiveIntegerField(default=0)
    ram_gb = models.PositiveIntegerField(default=0)
    available_count = models.PositiveIntegerField()
    price_per_hour = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES)
    price_per_tflop_hour = models.DecimalField(
        max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, null=True, blank=True
    )
    tflops = models.DecimalField(max_digits=10, decimal_places=2, help_text="Dense BF16 TFLOPS of one instance.")
    energy_kwh_per_hour = models.DecimalField(
        max_digits=10, decimal_places=4, help_text="Power draw x data-centre PUE, for one instance."
    )
    verified = models.BooleanField()
    reliability = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    listed_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OfferQuerySet.as_manager()

    class Meta:
        ordering = ["price_per_hour", "id"]
        constraints = [
            models.UniqueConstraint(fields=["host", "instance_type"], name="offer_unique_host_instance_type"),
            models.CheckConstraint(name="offer_price_positive", condition=Q(price_per_hour__gt=0)),
        ]
        indexes = [
            models.Index(fields=["price_per_hour"]),
            models.Index(fields=["price_per_tflop_hour"]),
            models.Index(fields=["energy_kwh_per_hour"]),
            models.Index(fields=["instance_type", "price_per_hour"]),
            # Search at a million offers: a model's offers by price without walking every other
            # model's. (On PostgreSQL, migration 0007 also adds "most reliable first" as the API
            # orders it, DESC NULLS LAST: SQLite cannot declare that index.)
            models.Index(fields=["accelerator_model", "price_per_hour"], name="offer_model_price"),
            # A memory floor by price: the cheapest offers are small-memory ones, so the price index
            # alone walks past most of them. A floor at or above a class's threshold uses that
            # class's index (PostgreSQL proves `memory >= 96` implies `memory >= 80`).
            *(
                models.Index(
                    fields=["price_per_hour", "id"],
                    condition=Q(accelerator_memory_gb__gte=floor),
                    name=f"offer_price_memory_{floor}",
                )
                for floor in OFFER_MEMORY_INDEX_FLOORS
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instance_type} on {self.host_id} ({self.available_count} left)"


class AvailabilityAlertQuerySet(models.QuerySet["AvailabilityAlert"]):
    def active(self) -> AvailabilityAlertQuerySet:
        """Alerts still waiting to fire (one-shot) or to fire again (standing)."""
        return self.filter(active=True)


class AvailabilityAlert(models.Model):
    """A buyer's request to be told when an instance type can be ordered: in a region and under a
    price per hour where given. `matched` is whether the last check saw matching supply: an alert
    fires when it goes from none to some (edge-triggered), so supply that stays on sale is told
    once. A one-shot alert then turns itself off; a standing one fires again each time supply
    returns after having been gone."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="availability_alerts")
    instance_type = models.ForeignKey(InstanceType, on_delete=models.CASCADE, related_name="availability_alerts")
    region = models.ForeignKey(
        Region, on_delete=models.CASCADE, null=True, blank=True, related_name="availability_alerts"
    )
    max_price_per_hour = models.DecimalField(
        max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES, null=True, blank=True, help_text="Per instance."
    )
    standing = models.BooleanField(default=False, help_text="Fire each time supply returns, not only once.")
    active = models.BooleanField(default=True)
    matched = models.BooleanField(default=False, help_text="Matching supply was listed at the last check.")
    last_notified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = AvailabilityAlertQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                name="availability_alert_max_price_positive",
                condition=Q(max_price_per_hour__isnull=True) | Q(max_price_per_hour__gt=0),
            ),
        ]
        indexes = [
            # The check walks active alerts in id order; fired one-shot alerts pile up beside them.
            models.Index(fields=["id"], condition=Q(active=True), name="availability_alert_active_id"),
        ]

    def __str__(self) -> str:
        return f"Availability alert {self.pk} ({'standing' if self.standing else 'one-shot'})"


class IdempotencyRecord(models.Model):
    """The first successful response to a creating POST with an `Idempotency-Key` header."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the canonical request body.")
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.key} ({self.method} {self.path})"


class AuditEntry(models.Model):
    """Append-only record of every moderation and money action. PostgreSQL rejects UPDATE/DELETE."""

    actor = models.ForeignKey("accounts.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"]), models.Index(fields=["action"])]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type}:{self.object_id}"


def validate_printable(value: str) -> None:
    """Names people read: no control characters (newlines, escapes, NULs)."""
    if any(not ch.isprintable() for ch in value):
        raise ValidationError(_("Use printable characters only (no control characters)."), code=ErrorCode.NOT_PRINTABLE)


# Characters nobody types in free text: C0 controls but tab, newline and carriage return (a line
# break is CRLF in a form post), DEL, C1, lone surrogates (UTF-8 cannot store them), and the bidi
# embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) that make a name or a command
# display as something other than what it is. Written as a regex character class in escapes, so
# the same text serves Python's `re` and the API schema's JSON Schema pattern; the API body parser
# refuses the same set (`marketplace.api.inputs.CONTROL_CHARACTERS`).
UNCLEAN_TEXT_CLASS = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069"
_UNCLEAN_TEXT = re.compile(f"[{UNCLEAN_TEXT_CLASS}]")


def validate_clean_text(value: str, *, max_length: int) -> None:
    """Free text people write (a report, an answer, a reason): at most `max_length` characters, and
    no control characters but newline and tab (and CR, part of a CRLF line break; callers that
    store the text normalize line breaks to newlines first). A ValidationError otherwise, so the
    caller shows a field error instead of storing what the column was not meant to hold."""
    if _UNCLEAN_TEXT.search(value):
        raise ValidationError(
            _("Control characters are not allowed (only newlines and tabs)."), code=ErrorCode.NOT_PRINTABLE
        )
    if len(value) > max_length:
        raise ValidationError(
            _("At most %(maximum)s characters (this has %(length)s).") % {"maximum": max_length, "length": len(value)},
            code=ErrorCode.INVALID,
        )


def clean_text(value: str | None, *, max_length: int) -> str:
    """`value` as stored: line breaks as newlines (CRLF and CR become LF), spaces around removed,
    then `validate_clean_text`. Raises its ValidationError."""
    text = (value or "").replace("\r\n", "\n").replace("\r", "\n").strip()
    validate_clean_text(text, max_length=max_length)
    return text


class WebhookEndpoint(models.Model):
    """An HTTPS address of an account's that receives its events, signed with the endpoint's secret
    (`marketplace.webhooks`). `events` lists event types, or ["*"] for all. An endpoint whose
    deliveries keep failing is disabled (`disabled_at`, `disabled_reason`) and its owner told."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list)
    secret_encrypted = models.TextField(help_text="The signing secret, encrypted (marketplace.secrets).")
    active = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["user"], condition=Q(active=True), name="webhook_endpoint_active_user")]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint, tried until it is answered with a 2xx or its attempts run out.
    `event_id` is the event's (the same for every endpoint and for a replay): receivers dedupe on it."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")  # due at next_attempt_at
        SENDING = "sending", _("Sending")  # claimed by a worker
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")  # attempts ran out, or the endpoint was disabled

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # When it was last handed to the queue (None: not since its last try). A queued delivery is not
    # queued again by the sweeper unless its message looks lost.
    queued_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # No constraint: deleting an endpoint deletes its deliveries in bulk (a replay is of the same endpoint).
    replay_of = models.ForeignKey(
        "self", on_delete=models.DO_NOTHING, db_constraint=False, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The sweeper's walk: due deliveries, oldest first.
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="webhook_delivery_due"),
            models.Index(fields=["claimed_at"], condition=Q(status="sending"), name="webhook_delivery_sending"),
            models.Index(fields=["endpoint", "-id"], name="webhook_delivery_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} to {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP try of a delivery: its answer's status (None: no answer) or the error."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_rows")
    at = models.DateTimeField(default=timezone.now)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.delivery_id}: {self.status_code or self.error}"
