from decimal import Decimal

from django import template

from marketplace.currency import platform_currency
from marketplace.money import format_money

register = template.Library()


@register.filter
def percent(value, places: int = 1) -> str:
    """0.9985 -> '99.9%'; empty for None (not measured)."""
    if value is None or value == "":
        return "—"
    return f"{Decimal(value) * 100:.{int(places)}f}%"


@register.filter
def money(value, places: int = 2) -> str:
    """-1234.5 -> '-$1,234.50' (or '-¥1,234.50' where CURRENCY=CNY); '—' for None."""
    if value is None or value == "":
        return "—"
    return format_money(Decimal(value), platform_currency(), int(places))
