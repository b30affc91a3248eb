"""Slicing and capacity maths: which instance shapes a host can still carry. Pure Python, no ORM.

A host has a physical capacity over named dimensions (accelerators, vCPUs, RAM, disk, ... or, in
the field example, cores and NIC Gbps). Its slicing policy decides what one instance *claims*:

- ``whole``: bare metal. One instance claims the whole host; only shapes whose primary dimension
  (accelerators, or vCPUs on CPU hosts) equals the host's are sold.
- ``equal``: the host is cut into ``slices`` equal parts; an instance claims one part, and only
  shapes whose primary dimension is one part's are sold.
- ``fine``: any mix of shapes; an instance claims exactly its shape.

CPU and RAM may be oversubscribed by a ratio (1.0-2.0); other dimensions never are. Storage
(``disk_gb``) is claimed at the shape's own size under every policy, so a stopped instance can keep
its disk while its compute goes back to the market. A set of instances fits when the sum of their
claims is within the host's effective capacity in every dimension at once.

Existing allocations are ``Holding``s. A running spot holding may be preempted; an idle reserved
holding (the reserving buyer stopped it) keeps its whole claim committed but physically frees its
compute for spot backfill. Two invariants hold on every host:

- physical: what is running (plus kept disks) fits the host;
- committed: everything but spot compute fits the host, so on-demand and reserved demand can
  always be served by preempting spot (a spot instance is owed only its disk).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import cast

OVERSUBSCRIBABLE_DIMENSIONS = frozenset({"vcpus", "ram_gb"})
STORAGE_DIMENSIONS = frozenset({"disk_gb"})
MIN_OVERSUBSCRIPTION = Decimal("1.0")
MAX_OVERSUBSCRIPTION = Decimal("2.0")


class SlicingPolicy(enum.StrEnum):
    WHOLE = "whole"
    EQUAL = "equal"
    FINE = "fine"


@dataclass(frozen=True)
class Resources:
    """A non-negative integer amount per named dimension; absent dimensions are zero."""

    amounts: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clean = {}
        for dim, amount in self.amounts.items():
            if not isinstance(amount, int) or isinstance(amount, bool):
                raise TypeError(f"{dim} must be an integer amount, got {amount!r}")
            if amount < 0:
                raise ValueError(f"{dim} must not be negative, got {amount}")
            if amount:
                clean[dim] = amount
        object.__setattr__(self, "amounts", dict(sorted(clean.items())))

    @classmethod
    def of(cls, **amounts: int) -> Resources:
        return cls(amounts)

    @classmethod
    def _checked(cls, amounts: dict[str, int]) -> Resources:
        """From amounts already known to be non-negative integers (sums of Resources): the hot
        path of the placement maths skips re-validating them."""
        resources = object.__new__(cls)
        object.__setattr__(resources, "amounts", {d: a for d, a in sorted(amounts.items()) if a})
        return resources

    def __getitem__(self, dim: str) -> int:
        return self.amounts.get(dim, 0)

    def __hash__(self) -> int:
        return hash(tuple(self.amounts.items()))

    @property
    def dimensions(self) -> frozenset[str]:
        return frozenset(self.amounts)

    def __add__(self, other: Resources) -> Resources:
        amounts = dict(self.amounts)
        for dim, amount in other.amounts.items():
            amounts[dim] = amounts.get(dim, 0) + amount
        return Resources._checked(amounts)

    def minus(self, other: Resources) -> dict[str, int]:
        """Signed difference per dimension (may be negative, so not a Resources)."""
        dims = self.dimensions | other.dimensions
        return {d: self[d] - other[d] for d in dims}

    def fits_in(self, other: Resources) -> bool:
        """True when every dimension of self is at most other's."""
        others = other.amounts
        return all(amount <= others.get(dim, 0) for dim, amount in self.amounts.items())

    def is_empty(self) -> bool:
        return not self.amounts


def total(claims: Iterable[Resources]) -> Resources:
    amounts: dict[str, int] = {}
    for claim in claims:
        for dim, amount in claim.amounts.items():
            amounts[dim] = amounts.get(dim, 0) + amount
    return Resources._checked(amounts)


@dataclass(frozen=True)
class Shape:
    """A sellable instance shape (an instance type), e.g. h100-80g.2x = 2 GPUs, 48 vCPU, ..."""

    name: str
    resources: Resources


@dataclass(frozen=True)
class HostSpec:
    """What the capacity maths needs to know about a host.

    ``primary`` is the dimension a host is sold by: "accelerators" on accelerator hosts, "vcpus"
    on CPU-only hosts. ``slices`` is used by the ``equal`` policy only.
    """

    capacity: Resources
    policy: SlicingPolicy
    primary: str
    slices: int = 1
    oversubscription: Decimal = Decimal("1.0")

    def __post_init__(self) -> None:
        if not MIN_OVERSUBSCRIPTION <= self.oversubscription <= MAX_OVERSUBSCRIPTION:
            raise ValueError("oversubscription must be between 1.0 and 2.0")
        if self.slices < 1:
            raise ValueError("slices must be at least 1")
        if self.policy == SlicingPolicy.EQUAL and self.capacity[self.primary] % self.slices:
            raise ValueError(f"{self.slices} equal slices do not divide {self.capacity[self.primary]} {self.primary}")


def effective_capacity(host: HostSpec) -> Resources:
    """Capacity with CPU/RAM oversubscription applied (rounded down); accelerators never are."""
    amounts = {}
    for dim, amount in host.capacity.amounts.items():
        if dim in OVERSUBSCRIBABLE_DIMENSIONS and host.policy != SlicingPolicy.WHOLE:
            amounts[dim] = int(amount * host.oversubscription)
        else:
            amounts[dim] = amount
    return Resources(amounts)


def slice_share(host: HostSpec) -> Resources:
    """One of the equal slices of the host's effective capacity (rounded down)."""
    capacity = effective_capacity(host)
    return Resources({d: a // host.slices for d, a in capacity.amounts.items()})


def storage_part(resources: Resources) -> Resources:
    """Only the storage dimensions (what a stopped instance keeps)."""
    return Resources({d: a for d, a in resources.amounts.items() if d in STORAGE_DIMENSIONS})


def _compute_part(resources: Resources) -> Resources:
    return Resources({d: a for d, a in resources.amounts.items() if d not in STORAGE_DIMENSIONS})


def claim_for(host: HostSpec, shape: Shape) -> Resources:
    """What one instance of ``shape`` takes from ``host`` under its policy."""
    if host.policy == SlicingPolicy.WHOLE:
        return _compute_part(effective_capacity(host)) + storage_part(shape.resources)
    if host.policy == SlicingPolicy.EQUAL:
        return _compute_part(slice_share(host)) + storage_part(shape.resources)
    return shape.resources


def is_eligible(host: HostSpec, shape: Shape) -> bool:
    """Whether the policy sells this shape on this host at all (ignoring what is allocated)."""
    if shape.resources.is_empty() or shape.resources[host.primary] <= 0:
        return False
    if host.policy == SlicingPolicy.WHOLE:
        wanted_primary = host.capacity[host.primary]
    elif host.policy == SlicingPolicy.EQUAL:
        wanted_primary = host.capacity[host.primary] // host.slices
    else:
        wanted_primary = None
    if wanted_primary is not None and shape.resources[host.primary] != wanted_primary:
        return False
    return shape.resources.fits_in(claim_for(host, shape))


def remaining(host: HostSpec, allocated: Sequence[Resources]) -> dict[str, int]:
    """Effective capacity minus what is allocated, per dimension (negative means overcommitted)."""
    return effective_capacity(host).minus(total(allocated))


def available_count(host: HostSpec, allocated: Sequence[Resources], shape: Shape) -> int:
    """How many more instances of ``shape`` the host can carry, given what is allocated."""
    if not is_eligible(host, shape):
        return 0
    claim = claim_for(host, shape)
    free = remaining(host, allocated)
    counts = [max(free.get(dim, 0), 0) // amount for dim, amount in claim.amounts.items()]
    return min(counts) if counts else 0


def carriable(host: HostSpec, allocated: Sequence[Resources], shapes: Iterable[Shape]) -> dict[str, int]:
    """For each shape, how many more the host can carry (each counted on its own)."""
    return {shape.name: available_count(host, allocated, shape) for shape in shapes}


def fits(host: HostSpec, allocated: Sequence[Resources], new_shapes: Sequence[Shape]) -> bool:
    """Whether all of ``new_shapes`` can be added to the host at once."""
    if not all(is_eligible(host, shape) for shape in new_shapes):
        return False
    claims = list(allocated) + [claim_for(host, shape) for shape in new_shapes]
    return total(claims).fits_in(effective_capacity(host))


def place_in_order(host: HostSpec, shapes: Sequence[Shape]) -> list[Shape]:
    """Greedily accept each requested shape that still fits; returns the accepted ones."""
    accepted: list[Shape] = []
    claims: list[Resources] = []
    for shape in shapes:
        if fits(host, claims, [shape]):
            accepted.append(shape)
            claims.append(claim_for(host, shape))
    return accepted


def max_instances(host: HostSpec, shapes: Iterable[Shape]) -> int:
    """The most instances of a single shape an empty host can carry."""
    return max((available_count(host, [], shape) for shape in shapes), default=0)


# --- Holdings: placement with preemption ----------------------------------------------------


class HoldingKind(enum.StrEnum):
    RUNNING = "running"  # compute and disk in use
    DISK_ONLY = "disk_only"  # stopped or preempted: only the disk is kept
    RESERVED_IDLE = "reserved_idle"  # reserved and stopped: committed, compute free for spot backfill


@dataclass(frozen=True)
class Holding:
    """An existing allocation as the maths sees it. ``spot_bid`` is None for non-spot holdings."""

    key: object
    claim: Resources
    kind: HoldingKind = HoldingKind.RUNNING
    spot_bid: Decimal | None = None

    @property
    def is_preemptible(self) -> bool:
        return self.spot_bid is not None and self.kind == HoldingKind.RUNNING


def physical_footprint(holding: Holding) -> Resources:
    """What the holding uses on the machine right now."""
    return holding.claim if holding.kind == HoldingKind.RUNNING else storage_part(holding.claim)


def committed_footprint(holding: Holding) -> Resources:
    """What the holding is owed: running non-spot and idle reserved instances their whole claim;
    spot, stopped and preempted instances only their disk."""
    if holding.kind == HoldingKind.RESERVED_IDLE:
        return holding.claim
    if holding.kind == HoldingKind.RUNNING and holding.spot_bid is None:
        return holding.claim
    return storage_part(holding.claim)


@dataclass(frozen=True)
class PlacementPlan:
    claims: list[Resources]
    preempt: list[Holding]


def plan_placement(
    host: HostSpec,
    holdings: Sequence[Holding],
    shapes: Sequence[Shape],
    *,
    spot_bid: Decimal | None = None,
    replacing: object = None,
) -> PlacementPlan | None:
    """Place ``shapes`` on the host, preempting the cheapest spot holdings if needed.

    Non-spot demand (``spot_bid`` None) needs committed room and may preempt any running spot;
    spot demand needs physical room and may preempt only lower bids. ``replacing`` names a holding
    that the new claim supersedes (an instance starting again). Returns None when it cannot fit.
    """
    if not shapes or not all(is_eligible(host, shape) for shape in shapes):
        return None
    capacity = effective_capacity(host)
    holdings = [h for h in holdings if replacing is None or h.key != replacing]
    claims = [claim_for(host, shape) for shape in shapes]
    new = total(claims)
    if spot_bid is None:
        if not (total(committed_footprint(h) for h in holdings) + new).fits_in(capacity):
            return None
        candidates = [h for h in holdings if h.is_preemptible]
    else:
        candidates = [h for h in holdings if h.is_preemptible and cast(Decimal, h.spot_bid) < spot_bid]
    physical = {h.key: physical_footprint(h) for h in holdings}
    victims: list[Holding] = []
    # Lowest bids go first; among equal bids, the most recent holding (largest key) goes first.
    for victim in sorted(candidates, key=lambda h: (h.spot_bid, _negated_key(h.key))):
        if (total(physical.values()) + new).fits_in(capacity):
            break
        physical[victim.key] = storage_part(victim.claim)
        victims.append(victim)
    if not (total(physical.values()) + new).fits_in(capacity):
        return None
    # Preempt only what was needed: give back victims whose compute is not required after all.
    for victim in reversed(list(victims)):
        physical[victim.key] = victim.claim
        if (total(physical.values()) + new).fits_in(capacity):
            victims.remove(victim)
        else:
            physical[victim.key] = storage_part(victim.claim)
    return PlacementPlan(claims=claims, preempt=victims)


def fits_exact_claim(
    host: HostSpec, holdings: Sequence[Holding], claim: Resources, *, replacing: object = None
) -> bool:
    """Whether a claim outside the slicing policy (an instance running without its accelerators:
    CPU, RAM and disk only) fits in the host's committed room. It never preempts anyone."""
    others = [h for h in holdings if replacing is None or h.key != replacing]
    return (total(committed_footprint(h) for h in others) + claim).fits_in(effective_capacity(host))


def _negated_key(key: object) -> int:
    return -key if isinstance(key, int) else 0


def placeable_count(
    host: HostSpec, holdings: Sequence[Holding], shape: Shape, *, spot_bid: Decimal | None = None, limit: int
) -> int:
    """The most instances of ``shape`` (up to ``limit``) that ``plan_placement`` would accept."""
    placed = 0
    for n in range(1, limit + 1):
        if plan_placement(host, holdings, [shape] * n, spot_bid=spot_bid) is None:
            break
        placed = n
    return placed


def backfilled_holding(host: HostSpec, holdings: Sequence[Holding], claim: Resources) -> Holding | None:
    """The idle reserved holding whose capacity a new spot claim runs on, if any: the claim would
    not fit were idle reserved capacity in use. The lowest key is credited when several are idle."""
    idle = sorted((h for h in holdings if h.kind == HoldingKind.RESERVED_IDLE), key=lambda h: _sort_key(h.key))
    if not idle:
        return None
    in_use = [h.claim if h.kind == HoldingKind.RESERVED_IDLE else physical_footprint(h) for h in holdings]
    if (total(in_use) + claim).fits_in(effective_capacity(host)):
        return None
    return idle[0]


def _sort_key(key: object) -> int:
    return key if isinstance(key, int) else 0
