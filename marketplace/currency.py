"""The deployment's currency (settings.PLATFORM_CURRENCY, from CURRENCY), for pages, mail and Stripe."""

from decimal import Decimal

from django.conf import settings

from marketplace.money import CENT_PLACES, CURRENCIES, PRICE_PLACES, Currency, format_money


def platform_currency() -> Currency:
    return CURRENCIES[settings.PLATFORM_CURRENCY]


def money_text(value: Decimal | int | str, places: int = 2) -> str:
    """An amount as people read it in this deployment: '-$1,234.50', '¥80.00'."""
    return format_money(value, platform_currency(), places)


def price_text(value: Decimal | int | str) -> str:
    """A price or rate with the places it has, at least cents: 2.500000 -> '$2.50', 0.1234 -> '$0.1234'."""
    exponent = Decimal(value).normalize().as_tuple().exponent
    places = max(CENT_PLACES, -exponent if isinstance(exponent, int) else CENT_PLACES)
    return format_money(value, platform_currency(), min(places, PRICE_PLACES))
