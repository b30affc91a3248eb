"""The deployment's currency (settings.PLATFORM_CURRENCY, from CURRENCY), for pages, mail and Stripe."""

from django.conf import settings

from marketplace.money import CURRENCIES, Currency, format_money


def platform_currency() -> Currency:
    return CURRENCIES[settings.PLATFORM_CURRENCY]


def money_text(value, places: int = 2) -> str:
    """An amount as people read it in this deployment: '-$1,234.50', '¥80.00'."""
    return format_money(value, platform_currency(), places)
