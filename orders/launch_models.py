"""Models of reaching and launching instances: host ports forwarded to them, launch templates,
and their output tails. Re-exported by `orders.models`."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class InstancePortQuerySet(models.QuerySet["InstancePort"]):
    def active(self) -> InstancePortQuerySet:
        return self.filter(released_at__isnull=True)


class InstancePort(models.Model):
    """A host port forwarded to one container port of an instance, held until it terminates.

    Assigned only under the host row lock; the partial unique constraint makes two holders of
    one host port impossible even so."""

    instance = models.ForeignKey("orders.Instance", on_delete=models.CASCADE, related_name="ports")
    host = models.ForeignKey("suppliers.Host", on_delete=models.PROTECT, related_name="instance_ports")
    container_port = models.PositiveIntegerField()
    host_port = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)

    objects = InstancePortQuerySet.as_manager()

    class Meta:
        ordering = ["container_port"]
        constraints = [
            models.UniqueConstraint(
                fields=["host", "host_port"], condition=Q(released_at__isnull=True), name="instance_port_one_holder"
            ),
            models.UniqueConstraint(
                fields=["instance", "container_port"],
                condition=Q(released_at__isnull=True),
                name="instance_port_once_per_instance",
            ),
        ]

    def __str__(self) -> str:
        return f"i-{self.instance_id} {self.container_port} -> host {self.host_id}:{self.host_port}"


class LaunchTemplate(models.Model):
    """What an instance runs: image, command, ports, environment and a recommended disk. Curated by
    staff (no owner, visible to everyone) or a buyer's own (visible to them only)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True, related_name="launch_templates"
    )
    name = models.SlugField(max_length=64, help_text="What orders name it by.")
    title = models.CharField(max_length=120)
    description = models.TextField(blank=True, max_length=2000)
    image = models.CharField(max_length=255)
    command = models.TextField(blank=True, max_length=4000)
    ports = models.JSONField(default=list, blank=True)
    environment = models.JSONField(default=list, blank=True, help_text="[{name, value}]: no secrets in templates.")
    disk_gb = models.PositiveIntegerField(null=True, blank=True, help_text="Recommended disk (GB).")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="template_name_per_owner"),
            models.UniqueConstraint(fields=["name"], condition=Q(owner__isnull=True), name="template_curated_name"),
        ]

    def __str__(self) -> str:
        return self.name


class InstanceLog(models.Model):
    """The instance's recent output as its agent last shipped it (bounded: the tail only)."""

    instance = models.OneToOneField("orders.Instance", on_delete=models.CASCADE, related_name="log")
    text = models.TextField(blank=True)
    shipped_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"log of i-{self.instance_id}"
