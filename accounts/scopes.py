"""What an API key may do: scopes, and the scope each API action needs.

A key carries scopes; each API view names the area it belongs to (`api_key_scope`, or per action
`api_key_scopes`). Reading (GET, HEAD, OPTIONS) needs the `read` scope or the area's own; any other
method needs the area's scope. `staff` is also what lets a staff account's key act as staff: a staff
member's key without it acts as an ordinary account. Views open to everyone (the catalog, offers)
name no area and take any key. Agent endpoints authenticate hosts, not keys."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from django.utils.translation import gettext_lazy as _

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Scope(StrEnum):
    READ = "read"  # read everything the account may see
    ORDERS = "orders"  # quotes, orders, launch templates, availability alerts
    INSTANCES = "instances"  # start, stop, terminate, SSH keys, problem reports
    BILLING = "billing"  # top-ups, spend ceiling, payouts
    SUPPLIER = "supplier"  # hosts, the organization, answering problem reports
    STAFF = "staff"  # staff powers, for staff accounts only

    @property
    def label(self) -> str:
        return str(SCOPE_LABELS[self])


SCOPE_LABELS = {
    Scope.READ: _("Read: everything the account can see"),
    Scope.ORDERS: _("Orders: quotes, orders, templates, alerts"),
    Scope.INSTANCES: _("Instances: start, stop, terminate; SSH keys; problem reports"),
    Scope.BILLING: _("Billing: top-ups, spend ceiling, payouts"),
    Scope.SUPPLIER: _("Supplier: hosts, organization, answers to reports"),
    Scope.STAFF: _("Staff: act as staff (staff accounts only)"),
}
# A key created without naming scopes: everything but staff powers.
DEFAULT_SCOPES = tuple(scope for scope in Scope if scope != Scope.STAFF)
# Keys issued before scopes existed keep what they could do: everything, staff powers for staff.
ALL_SCOPES = tuple(Scope)
# The account's keys and webhooks: reading them needs `read`; changing them, a key that could do
# everything the account can.
ACCOUNT = "account"


def required_scopes(view: Any, method: str) -> frozenset[str] | None:
    """The scopes any one of which lets a key make this request, or None when any key may."""
    action = getattr(view, "action", None)
    by_action = getattr(view, "api_key_scopes", {})
    return area_scopes(by_action.get(action, getattr(view, "api_key_scope", None)), method)


def area_scopes(area: str | None, method: str) -> frozenset[str] | None:
    """The scopes any one of which allows `method` in `area` (None: an area open to any key)."""
    if area is None:
        return None
    if area == ACCOUNT:
        return frozenset({Scope.READ}) if method in SAFE_METHODS else frozenset({ACCOUNT})
    if area == Scope.STAFF:
        return frozenset({Scope.STAFF})
    if method in SAFE_METHODS:
        return frozenset({Scope.READ, area})
    return frozenset({area})


def key_allows(key_scopes: list[str], needed: frozenset[str], *, user_is_staff: bool) -> bool:
    if ACCOUNT in needed:
        granted = set(key_scopes)
        return set(DEFAULT_SCOPES) <= granted and (not user_is_staff or Scope.STAFF in granted)
    return bool(needed & set(key_scopes))


def page_scope(area: str | None) -> Any:
    """Name the area of a page view (like `api_key_scope` of an API view): what a person acting
    for a team needs in their role to open it. `None`: open to every role. A page without one is
    closed to people acting for a team (`accounts.middleware`)."""

    def mark(view: Any) -> Any:
        view.scope_area = area
        return view

    return mark
