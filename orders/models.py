"""Capacity allocations: what each placed instance claims from a host."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from marketplace.capacity import Resources


class AllocationQuerySet(models.QuerySet):
    def active(self) -> AllocationQuerySet:
        """Allocations still holding capacity."""
        return self.filter(released_at__isnull=True)


class Allocation(models.Model):
    """Capacity one instance holds on a host: the claim under the host's slicing policy at placement.

    Written and released only under a lock on the host row (see `suppliers.services`), in the same
    transaction that recomputes the host's offers.
    """

    host = models.ForeignKey("suppliers.Host", on_delete=models.PROTECT, related_name="allocations")
    instance_type = models.ForeignKey("marketplace.InstanceType", on_delete=models.PROTECT, related_name="+")
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

    def __str__(self) -> str:
        return f"{self.instance_type} on host {self.host_id}"

    def as_resources(self) -> Resources:
        return Resources.of(accelerators=self.accelerators, vcpus=self.vcpus, ram_gb=self.ram_gb, disk_gb=self.disk_gb)
