"""Host ports forwarded to instances: assigned from the host's range under the host lock, held
until the instance terminates, and shown to the buyer as ready-to-use connection details."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

from marketplace.errors import Conflict
from suppliers.models import Host

from .errors import OrderErrorCode
from .models import Instance, InstancePort

MAX_PORTS_PER_INSTANCE = 16
SSH_PORT = 22
HTTP_PORTS = frozenset({80, 3000, 5000, 6006, 7860, 8000, 8080, 8888})


class NoFreePorts(Conflict):
    code = OrderErrorCode.NO_FREE_PORTS


def free_port_counts(hosts: Iterable[Host]) -> dict[int, int]:
    """How many host ports each host (with inbound ports) has free: one query for all of them."""
    inbound = {host.pk: host for host in hosts if host.accepts_inbound}
    if not inbound:
        return {}
    held = dict(
        InstancePort.objects.active()
        .filter(host_id__in=list(inbound))
        .values("host_id")
        .annotate(n=Count("pk"))
        .values_list("host_id", "n")
    )
    return {pk: _range_size(host) - held.get(pk, 0) for pk, host in inbound.items()}


def _range_size(host: Host) -> int:
    return int(host.port_range_end or 0) - int(host.port_range_start or 0) + 1


def ports_assign(*, host: Host, instances: list[Instance], container_ports: list[int]) -> dict[int, dict[str, int]]:
    """Give each instance's container ports the lowest free host ports of the host's range, in
    the order of `instances`; returns each instance's port map (as `port_map` gives it). Two
    queries whatever the number of instances.

    Precondition: the host row is locked (`suppliers.locks`), so the free set cannot change under
    us; the partial unique constraint on (host, host_port) backs that up. NoFreePorts (409) when the
    range has too few left."""
    if not container_ports or not instances:
        return {instance.pk: {} for instance in instances}
    if not host.accepts_inbound:
        raise NoFreePorts(
            _("Host %(host)s accepts no inbound connections.") % {"host": host.pk}, extra={"host": host.pk}
        )
    start, end = int(host.port_range_start or 0), int(host.port_range_end or 0)
    held = set(InstancePort.objects.active().filter(host=host).values_list("host_port", flat=True))
    needed = len(container_ports) * len(instances)
    chosen: list[int] = []
    for port in range(start, end + 1):
        if port not in held:
            chosen.append(port)
            if len(chosen) == needed:
                break
    if len(chosen) < needed:
        raise NoFreePorts(
            _("Host %(host)s has %(free)s free port(s) of its range %(start)s-%(end)s; the instances need %(needed)s.")
            % {"host": host.pk, "free": len(chosen), "start": start, "end": end, "needed": needed},
            extra={"host": host.pk, "free": len(chosen), "needed": needed},
        )
    now = timezone.now()
    rows: list[InstancePort] = []
    maps: dict[int, dict[str, int]] = {}
    outside = iter(chosen)
    for instance in instances:
        pairs = sorted((inside, next(outside)) for inside in container_ports)
        maps[instance.pk] = {str(inside): host_port for inside, host_port in pairs}
        rows.extend(
            InstancePort(instance=instance, host=host, container_port=inside, host_port=host_port, created_at=now)
            for inside, host_port in pairs
        )
    InstancePort.objects.bulk_create(rows)
    return maps


def ports_release(instance_ids: Iterable[int]) -> int:
    """Free the host ports of terminated (or lost) instances."""
    return InstancePort.objects.active().filter(instance_id__in=list(instance_ids)).update(released_at=timezone.now())


def port_map(instance: Instance) -> dict[str, int]:
    """Container port -> host port, as the agent's start command carries it (JSON keys are strings)."""
    return {str(p.container_port): p.host_port for p in instance.ports.active().order_by("container_port")}


@dataclass(frozen=True)
class Connection:
    container_port: int
    host_port: int
    address: str
    kind: str  # "ssh", "http" or "tcp"
    command: str  # what to type or open

    def as_dict(self) -> dict[str, object]:
        return {
            "container_port": self.container_port,
            "host_port": self.host_port,
            "address": self.address,
            "kind": self.kind,
            "command": self.command,
        }


def connection_details(instance: Instance, ports: Iterable[InstancePort] | None = None) -> list[Connection]:
    """Ready-to-use ways in: `ssh -p 40022 root@203.0.113.5`, `http://203.0.113.5:40888/`. Empty
    once the instance has ended (its ports are released) or when it asked for none."""
    host = instance.host
    if not host.public_address:
        return []
    address = host.public_address
    shown = f"[{address}]" if ":" in address else address  # an IPv6 literal in a URL
    rows = list(ports) if ports is not None else list(instance.ports.active().order_by("container_port"))
    details = []
    for port in rows:
        if port.released_at is not None:
            continue
        if port.container_port == SSH_PORT:
            kind, command = "ssh", f"ssh -p {port.host_port} root@{address}"
        elif port.container_port in HTTP_PORTS:
            kind, command = "http", f"http://{shown}:{port.host_port}/"
        else:
            kind, command = "tcp", f"{shown}:{port.host_port}"
        details.append(Connection(port.container_port, port.host_port, address, kind, command))
    return details
