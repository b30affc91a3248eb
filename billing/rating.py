"""Charges from usage, and the one rounding rule. Pure Python.

Rule: a usage record's charge is seconds x rate / 3600, rounded half-up to $0.000001 once, at
settlement. The platform fee is the charge x take rate, rounded the same way; the supplier's
share is charge - fee, so charge = supplier share + fee exactly, always.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from marketplace.money import PRICE_QUANTUM

SECONDS_PER_HOUR = Decimal(3600)
HOURS_PER_MONTH = Decimal(730)  # storage GB-month pro-rating (365 x 24 / 12)


def _round(value: Decimal) -> Decimal:
    return value.quantize(PRICE_QUANTUM, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Split:
    charge: Decimal
    fee: Decimal
    supplier_share: Decimal


def charge_for(seconds: int, rate_per_hour: Decimal) -> Decimal:
    if seconds < 0 or rate_per_hour < 0:
        raise ValueError("seconds and rate cannot be negative")
    return _round(Decimal(seconds) * rate_per_hour / SECONDS_PER_HOUR)


def split(charge: Decimal, take_rate: Decimal) -> Split:
    if not Decimal(0) <= take_rate <= Decimal(1):
        raise ValueError("take rate is a fraction")
    fee = _round(charge * take_rate)
    return Split(charge=charge, fee=fee, supplier_share=charge - fee)


def storage_rate_per_hour(disk_gb: int, price_per_gb_month: Decimal) -> Decimal:
    """Hourly rate for keeping `disk_gb` (unrounded beyond 6 places: it is a rate, not money)."""
    return _round(Decimal(disk_gb) * price_per_gb_month / HOURS_PER_MONTH)
