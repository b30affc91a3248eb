from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def percent(value, places: int = 1) -> str:
    """0.9985 -> '99.9%'; empty for None (not measured)."""
    if value is None or value == "":
        return "—"
    return f"{Decimal(value) * 100:.{int(places)}f}%"
