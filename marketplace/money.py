"""Money and rate arithmetic. Money is a Decimal in the platform currency, never a float.

Prices are stored with six decimal places (micro-dollars) so that per-second metering can be
exact; amounts are rounded to cents only at a named boundary (an invoice line, a Stripe charge).
"""

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

PRICE_DIGITS = 14
PRICE_PLACES = 6
PRICE_QUANTUM = Decimal("0.000001")
CENT = Decimal("0.01")
CENT_PLACES = 2
MAX_WHOLE_DIGITS = 12  # up to $999,999,999,999: more than any amount the platform moves at once
_MONEY_TEXT = re.compile(rf"-?[0-9]{{1,{MAX_WHOLE_DIGITS}}}(?:\.[0-9]+)?")


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


def parse_money(text: str | None, *, places: int = CENT_PLACES) -> Decimal | None:
    """An amount a person typed: ASCII digits, an optional leading minus and at most `places`
    decimals ("25", "25.5", "-3.25"; spaces around are ignored). None for anything else, so the
    caller shows a field error: exponents ("1E+2", "1e999"), NaN, Infinity, other scripts' digits
    ("٣٠"), thousands separators, currency signs, more decimals than `places`."""
    text = (text or "").strip()
    if not _MONEY_TEXT.fullmatch(text):
        return None
    decimals = text.partition(".")[2]
    if len(decimals) > places:
        return None
    return Decimal(text)


class Currency(NamedTuple):
    """A platform currency: its ISO code, the symbol people read and Stripe's lower-case code."""

    code: str
    symbol: str
    stripe_code: str


# Both have two minor units (cents, fen), so the ledger's cent boundary serves either.
CURRENCIES = {
    "USD": Currency("USD", "$", "usd"),
    "CNY": Currency("CNY", "¥", "cny"),
}


def format_money(value: Decimal | int | str, currency: Currency, places: int = CENT_PLACES) -> str:
    """-1234.5 -> '-$1,234.50': the sign before the symbol, thousands separators, fixed places."""
    amount = as_money(value)
    sign = "-" if amount < 0 else ""
    return f"{sign}{currency.symbol}{abs(amount):,.{int(places)}f}"
