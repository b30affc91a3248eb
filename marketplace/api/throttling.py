"""Request rate limits per API key and per account, counted in the shared cache (Redis in
production, so every web process counts together): a fixed window per limit, one atomic INCR per
request and limit. Over a limit: 429 `throttled` with `Retry-After` (seconds to the window's end),
naming the limit. Limits protect the service; what protects money (the spend ceiling) is checked in
the order's own database transaction, not here."""

from __future__ import annotations

import ipaddress
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext, gettext_lazy
from rest_framework import exceptions
from rest_framework.throttling import BaseThrottle

from accounts.models import ApiKey, User
from accounts.views import client_ip
from suppliers.models import HostCredential

PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """'600/minute' -> (600, 60)."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period]


class FixedWindowThrottle(BaseThrottle):
    scope = ""  # the key of settings.API_RATE_LIMITS
    label = ""

    def identity(self, request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        rate = settings.API_RATE_LIMITS.get(self.scope)
        identity = self.identity(request)
        if not rate or identity is None:
            return True
        wait = window_hit(self.scope, identity, rate)
        if wait is None:
            return True
        raise exceptions.Throttled(
            wait=wait,
            detail=gettext("Too many requests for %(who)s (%(rate)s). Try again in %(seconds)s s.")
            % {"who": self.label, "rate": rate, "seconds": wait},
        )


def window_hit(scope: str, identity: str, rate: str) -> int | None:
    """Count one request in the current window; None while within `rate`, else the seconds to wait."""
    limit, period = parse_rate(rate)
    now = time.time()
    window = int(now // period)
    key = f"throttle:{scope}:{identity}:{rate}:{window}"
    cache.add(key, 0, timeout=period + 1)
    try:
        used = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=period + 1)
        used = 1
    return None if used <= limit else max(1, math.ceil((window + 1) * period - now))


def _network(address: str) -> str:
    """The unit an address is counted in: itself for IPv4, its /64 for IPv6 (one host's share)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    return str(ipaddress.ip_network(f"{ip}/64", strict=False)) if ip.version == 6 else address


def credential_refused(request) -> None:
    """A request whose key or host credential was refused counts against its address: past
    API_RATE_LIMITS["refused"], 429 instead of 401, so guessing credentials costs time. (DRF throttles
    only after authentication succeeds.)"""
    rate = settings.API_RATE_LIMITS.get("refused")
    if not rate:
        return
    address = client_ip(request._request)
    if not address:
        return
    wait = window_hit("refused", _network(address), rate)
    if wait is not None:
        raise exceptions.Throttled(wait=wait, detail=gettext("Too many refused credentials from your address."))


class ApiKeyRateThrottle(FixedWindowThrottle):
    scope = "key"
    label = gettext_lazy("this API key")

    def identity(self, request) -> str | None:
        # The key's random public prefix, not its id: ids come back in a database built again.
        return request.auth.prefix if isinstance(request.auth, ApiKey) else None


class AccountRateThrottle(FixedWindowThrottle):
    """All of an account's keys and its browser session together."""

    scope = "account"
    label = gettext_lazy("this account")

    def identity(self, request) -> str | None:
        user = request.user
        if not isinstance(user, User) or not user.is_authenticated:
            return None
        return f"{user.pk}.{user.date_joined.timestamp():.6f}"  # the id alone comes back in a new database


class AnonymousRateThrottle(FixedWindowThrottle):
    """Requests without credentials (the catalog, offers, quotes of the public pages), per client
    address as `TRUSTED_PROXY_COUNT` says to read it."""

    scope = "anonymous"
    label = gettext_lazy("your address")

    def identity(self, request) -> str | None:
        if request.auth is not None or getattr(request.user, "is_authenticated", False):
            return None
        return client_ip(request._request)


class HostRateThrottle(FixedWindowThrottle):
    """A host agent's calls, per host credential."""

    scope = "host"
    label = gettext_lazy("this host's agent")

    def identity(self, request) -> str | None:
        return str(request.auth.pk) if isinstance(request.auth, HostCredential) else None
