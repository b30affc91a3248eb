"""Offer figures from a host's declaration: price, TFLOPS and energy of one instance. Pure Python.

All figures scale with the share of the host's primary dimension an instance claims (its
accelerators, or its vCPUs on CPU-only hosts), so a whole host, an equal slice and a fine shape
are priced by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .money import quantize_price

WATTS_PER_KILOWATT = Decimal(1000)


@dataclass(frozen=True)
class HostEconomics:
    """Per-host inputs. ``units`` is the host's effective primary capacity (accelerators or vCPUs).

    ``price_per_unit_hour`` is per accelerator-hour, or per vCPU-hour on CPU hosts.
    ``host_power_watts`` and ``host_tflops`` are for the whole host.
    """

    units: int
    price_per_unit_hour: Decimal
    host_power_watts: Decimal
    host_tflops: Decimal
    pue: Decimal


@dataclass(frozen=True)
class OfferFigures:
    price_per_hour: Decimal
    tflops: Decimal
    price_per_tflop_hour: Decimal | None
    energy_kwh_per_hour: Decimal


def offer_figures(host: HostEconomics, claimed_units: int) -> OfferFigures:
    """Figures for one instance claiming ``claimed_units`` of the host's primary dimension."""
    if host.units <= 0 or claimed_units <= 0:
        raise ValueError("a host and an instance each need at least one unit")
    share = Decimal(claimed_units) / Decimal(host.units)
    price = quantize_price(host.price_per_unit_hour * claimed_units)
    tflops = (host.host_tflops * share).quantize(Decimal("0.01"))
    energy = (host.host_power_watts * share * host.pue / WATTS_PER_KILOWATT).quantize(Decimal("0.0001"))
    per_tflop = quantize_price(price / tflops) if tflops > 0 else None
    return OfferFigures(price_per_hour=price, tflops=tflops, price_per_tflop_hour=per_tflop, energy_kwh_per_hour=energy)
