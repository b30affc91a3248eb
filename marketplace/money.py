"""Money and rate arithmetic. Money is a Decimal in the platform currency, never a float.

Prices are stored with six decimal places (micro-dollars) so that per-second metering can be
exact; amounts are rounded to cents only at a named boundary (an invoice line, a Stripe charge).
"""

from decimal import ROUND_HALF_UP, Decimal

PRICE_DIGITS = 14
PRICE_PLACES = 6
PRICE_QUANTUM = Decimal("0.000001")
CENT = Decimal("0.01")


def as_money(value: Decimal | int | str) -> Decimal:
    """A Decimal from a trusted non-float value; floats are refused because they are inexact."""
    if isinstance(value, float):
        raise TypeError("money is never a float")
    return Decimal(value)


def quantize_price(value: Decimal) -> Decimal:
    """Round a price or rate to the stored precision (6 places, half up)."""
    return as_money(value).quantize(PRICE_QUANTUM, rounding=ROUND_HALF_UP)


def quantize_cents(value: Decimal) -> Decimal:
    """Round an amount to cents (half up): the boundary for invoice lines and charges."""
    return as_money(value).quantize(CENT, rounding=ROUND_HALF_UP)
