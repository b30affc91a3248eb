from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def percent(value, places: int = 1) -> str:
    """0.9985 -> '99.9%'; empty for None (not measured)."""
    if value is None or value == "":
        return "—"
    return f"{Decimal(value) * 100:.{int(places)}f}%"


@register.filter
def money(value, places: int = 2) -> str:
    """-1.5 -> '-$1.50'; 2 -> '$2.00'."""
    if value is None or value == "":
        return "—"
    amount = Decimal(value)
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.{int(places)}f}"
