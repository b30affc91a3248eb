"""Ranking and placement of offers for an order. Pure Python over plain data, no ORM.

Ranking (cheapest capable first):
- for an instance type or a pinned offer: price per hour, then energy per hour, then distance to
  the buyer's location, then reliability (higher first), then host id;
- for a capability request: effective cost per TFLOP-hour (so a cheaper dedicated accelerator
  beats a GPU, and a GPU a CPU), then energy per hour, then distance.
Placement takes ranked candidates in order, filling `count` instances, on one host when asked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float


def distance_km(a: Location, b: Location) -> float:
    """Great-circle (haversine) distance."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


@dataclass(frozen=True)
class Candidate:
    """One offer as the broker sees it. Prices are per instance-hour for the order's pricing model."""

    offer_id: int
    host_id: int
    instance_type: str
    accelerator_kind: str
    memory_gb: int  # accelerator memory of one instance; RAM for CPU instances
    tflops: Decimal
    price_per_hour: Decimal
    energy_kwh_per_hour: Decimal
    available: int
    location: Location
    region: str
    reliability: Decimal | None = None
    free_units: int | None = None  # the host's free primary units now (packing policies read it)

    @property
    def price_per_tflop_hour(self) -> Decimal | None:
        return self.price_per_hour / self.tflops if self.tflops > 0 else None


@dataclass(frozen=True)
class Requirements:
    """A capability request: what the work needs, not which model."""

    min_memory_gb: int = 0
    min_tflops: Decimal = Decimal(0)
    accelerator_kinds: frozenset[str] = field(default_factory=lambda: frozenset({"gpu", "dsa", "cpu"}))

    def is_met_by(self, candidate: Candidate) -> bool:
        return (
            candidate.accelerator_kind in self.accelerator_kinds
            and candidate.memory_gb >= self.min_memory_gb
            and candidate.tflops >= self.min_tflops
            and candidate.tflops > 0
        )


def _distance(candidate: Candidate, near: Location | None) -> float:
    return distance_km(candidate.location, near) if near else 0.0


class Packing(StrEnum):
    """How orders are spread over hosts of (nearly) the same price.

    CHEAPEST: strictly by price (first fit in price order): a small order may open an empty server
    while a partly used one at a cent more has room. BEST_FIT: the host with the fewest free units
    first, whatever its price. KEEP_LARGE: among offers within PACKING_PRICE_BAND of the cheapest,
    the fullest host first, so small orders fill partly used servers and whole ones stay free for
    large shapes; beyond the band, by price."""

    CHEAPEST = "cheapest"
    BEST_FIT = "best_fit"
    KEEP_LARGE = "keep_large"


PACKING_PRICE_BAND = Decimal("0.10")  # KEEP_LARGE: a buyer pays at most 10% over the cheapest offer


def _packed(ranked: list[Candidate], packing: Packing) -> list[Candidate]:
    """Reorder a price ranking by the packing policy (stable: price order breaks its ties)."""
    if packing == Packing.CHEAPEST or not ranked:
        return ranked

    def free(c: Candidate) -> int:
        return c.free_units if c.free_units is not None else 1 << 30

    if packing == Packing.BEST_FIT:
        return sorted(ranked, key=free)
    ceiling = ranked[0].price_per_hour * (1 + PACKING_PRICE_BAND)
    band = [c for c in ranked if c.price_per_hour <= ceiling]
    return sorted(band, key=free) + [c for c in ranked if c.price_per_hour > ceiling]


def rank_offers(
    candidates: Iterable[Candidate], *, near: Location | None = None, packing: Packing = Packing.CHEAPEST
) -> list[Candidate]:
    """Cheapest first; ties by energy, then distance, then reliability, then host id; then the
    packing policy (`Packing`) reorders hosts of about the same price."""
    return _packed(_by_price(candidates, near), packing)


def _by_price(candidates: Iterable[Candidate], near: Location | None) -> list[Candidate]:
    return sorted(
        candidates,
        key=lambda c: (
            c.price_per_hour,
            c.energy_kwh_per_hour,
            _distance(c, near),
            -(c.reliability if c.reliability is not None else Decimal(-1)),
            c.host_id,
            c.offer_id,
        ),
    )


def rank_capable(
    candidates: Iterable[Candidate], requirements: Requirements, *, near: Location | None = None
) -> list[Candidate]:
    """Capable offers by effective cost per TFLOP-hour, then energy, then distance."""
    capable = [c for c in candidates if requirements.is_met_by(c)]
    return sorted(
        capable,
        key=lambda c: (
            c.price_per_tflop_hour,
            c.energy_kwh_per_hour,
            _distance(c, near),
            c.price_per_hour,
            c.host_id,
            c.offer_id,
        ),
    )


@dataclass(frozen=True)
class PlacementShare:
    candidate: Candidate
    count: int


def place(ranked: Sequence[Candidate], count: int, *, same_host: bool = False) -> list[PlacementShare]:
    """Fill `count` from ranked candidates (each up to its `available`). Empty when impossible.

    With `same_host`, the first candidate that can take all of them alone.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    if same_host:
        for candidate in ranked:
            if candidate.available >= count:
                return [PlacementShare(candidate, count)]
        return []
    shares: list[PlacementShare] = []
    remaining = count
    used_hosts: set[int] = set()
    for candidate in ranked:
        if remaining == 0:
            break
        if candidate.available <= 0 or candidate.host_id in used_hosts:
            continue
        take = min(candidate.available, remaining)
        shares.append(PlacementShare(candidate, take))
        used_hosts.add(candidate.host_id)
        remaining -= take
    return shares if remaining == 0 else []
