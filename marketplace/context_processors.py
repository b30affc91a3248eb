from django.http import HttpRequest

from marketplace.currency import platform_currency


def currency(request: HttpRequest) -> dict:
    """The deployment's currency, for column headings such as '$/hour' or '¥/hour'."""
    return {"currency": platform_currency()}
