"""Where a webhook may be delivered and how: the URL read as the HTTP library reads it (anything two
parsers could read differently refused), every address it resolves to public (IPv6 forms carrying an
IPv4 address judged by it), and the connection pinned to the checked addresses while TLS verifies the
host name, so a name that resolves elsewhere later is never used. `marketplace.webhooks` calls it."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.utils.translation import gettext as _
from requests.adapters import HTTPAdapter
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from .errors import InvalidInput

TIMEOUT_SECONDS = 10  # reading the answer's status
CONNECT_TIMEOUT_SECONDS = 5
# IPv6 ranges that reach IPv4 addresses (NAT64, local NAT64, IPv4-compatible, IPv4-translated) or are
# old site-local: refused outright.
IPV6_TO_IPV4 = tuple(
    ipaddress.ip_network(network)
    for network in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96", "::ffff:0:0:0/96", "fec0::/10")
)


@dataclass(frozen=True)
class Destination:
    """Where a delivery goes: the URL's parts as the HTTP library reads them, and the one address
    checked, which the connection is pinned to (a name that resolves elsewhere later is not used)."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]  # every address the name resolved to, all checked; tried in turn


def destination_check(url: str, *, field: str = "url") -> Destination:
    """HTTPS to a public address (plain HTTP and private addresses only where allowed: development).

    The URL is read with the parser the HTTP library uses (urllib3), and anything two parsers could
    read differently is refused: backslashes, user info, non-ASCII, whitespace."""
    refuse = InvalidInput(_("Not a URL this platform delivers to."), fields={field: [_("Enter a plain https:// URL.")]})
    if not url or len(url) > 2000 or not url.isascii() or any(c in url for c in "\\ \t\r\n"):
        raise refuse
    try:
        parts = parse_url(url)
        if "@" in urlsplit(url).netloc or parts.port == 0:
            raise refuse
        port = parts.port if parts.port is not None else (443 if parts.scheme == "https" else 80)
    except (LocationParseError, ValueError):
        raise refuse from None
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise InvalidInput(_("Webhook endpoints must use https://."), fields={field: [_("Use an https:// URL.")]})
    if not parts.host or parts.auth or urlsplit(url).hostname != parts.host.strip("[]").lower():
        raise refuse
    host = parts.host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise InvalidInput(
            _("%(host)s does not resolve.") % {"host": host}, fields={field: [_("The host name does not resolve.")]}
        ) from None
    addresses = tuple(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not allow_private and any(not _public(address) for address in addresses):
        raise InvalidInput(
            _("%(host)s resolves to a non-public address.") % {"host": host},
            fields={field: [_("Webhooks go to public addresses only.")]},
        )
    return Destination(parts.scheme, host, port, parts.request_uri or "/", addresses)


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address: judged by the address they carry.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return _public(str(embedded))
        if ip.teredo or any(ip in network for network in IPV6_TO_IPV4):
            return False
    return ip.is_global and not ip.is_multicast


class _PinnedAdapter(HTTPAdapter):
    """Connect to the checked address while TLS checks the certificate for the host name."""

    def __init__(self, host: str) -> None:
        self._host = host
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._host.rstrip(".")  # SNI, and the name the certificate must match
        super().init_poolmanager(*args, **kwargs)


def post_pinned(destination: Destination, body: bytes, headers: dict[str, str]) -> int:
    """POST to the checked addresses in turn until one connects; returns the status. The answer's
    body is never read."""
    shown_host = f"[{destination.host}]" if ":" in destination.host else destination.host
    default_port = 443 if destination.scheme == "https" else 80
    host_header = shown_host if destination.port == default_port else f"{shown_host}:{destination.port}"
    for n, checked in enumerate(destination.addresses):
        address = f"[{checked}]" if ":" in checked else checked
        url = f"{destination.scheme}://{address}:{destination.port}{destination.path}"
        with requests.Session() as session:
            session.trust_env = False  # no proxy from the environment decides where this goes
            session.mount(f"{destination.scheme}://", _PinnedAdapter(destination.host))
            try:
                response = session.post(
                    url,
                    data=body,
                    headers={**headers, "Host": host_header},
                    timeout=(CONNECT_TIMEOUT_SECONDS, TIMEOUT_SECONDS),
                    allow_redirects=False,  # a redirect could lead anywhere, private addresses included
                    stream=True,
                )
            except requests.ConnectionError:
                if n == len(destination.addresses) - 1:
                    raise
                continue
            response.close()
            return response.status_code
    raise requests.ConnectionError("no address to connect to")
