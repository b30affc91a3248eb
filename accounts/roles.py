"""Roles of a person in a team (buyer organization) or a supplier organization, as scopes.

A role grants scopes exactly as an API key does (`accounts.scopes`), so one rule decides both:
what a request may do is what its key allows *and* what the person's role allows. Reading an area
needs `read` or the area's scope; changing it needs the area's scope; managing members, keys and
webhooks needs every scope (`ACCOUNT`).

    owner      everything, including making owners and admins
    admin      everything but making or removing owners and admins
    member     orders and instances (buyer teams); hosts (supplier organizations); no money
    billing    the wallet, top-ups, the spend ceiling, usage, earnings and payouts; nothing else
    read_only  reads everything the team or organization can see, changes nothing
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .scopes import ACCOUNT, Scope, area_scopes


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    ADMIN = "admin", _("Admin")
    MEMBER = "member", _("Member")
    BILLING = "billing", _("Billing only")
    READ_ONLY = "read_only", _("Read only")


_EVERYTHING = frozenset({Scope.READ, Scope.ORDERS, Scope.INSTANCES, Scope.BILLING, Scope.SUPPLIER, ACCOUNT})
ROLE_SCOPES: dict[str, frozenset[str]] = {
    Role.OWNER: _EVERYTHING,
    Role.ADMIN: _EVERYTHING,
    Role.MEMBER: frozenset({Scope.ORDERS, Scope.INSTANCES, Scope.SUPPLIER}),
    Role.BILLING: frozenset({Scope.BILLING}),
    Role.READ_ONLY: frozenset({Scope.READ}),
}
ROLE_HELP = _(
    "Owner and admin: everything (admins cannot make owners or admins). Member: orders and instances "
    "(in a supplier organization, hosts). Billing only: wallet, top-ups, spend ceiling, earnings. "
    "Read only: sees everything, changes nothing."
)
# Who may hand out or take away a role: owners any; admins only the roles below admin.
MANAGERS = frozenset({Role.OWNER, Role.ADMIN})
ROLES_ONLY_OWNERS_GRANT = frozenset({Role.OWNER, Role.ADMIN})


def role_allows(role: str, area: str | None, *, write: bool) -> bool:
    """Whether a person with `role` may read (or, with `write`, change) things of `area`."""
    needed = area_scopes(area, "POST" if write else "GET")
    return needed is None or bool(needed & ROLE_SCOPES.get(role, frozenset()))


def role_scopes_grant(role: str, key_scopes: list[str] | tuple[str, ...]) -> list[str]:
    """What a key acting for a person in `role` may do: the key's scopes the role also holds.
    `ACCOUNT` (managing keys, members and webhooks) survives only when both grant everything."""
    granted = ROLE_SCOPES.get(role, frozenset())
    return [scope for scope in key_scopes if scope in granted]


def may_manage_role(manager_role: str, role: str) -> bool:
    """Whether `manager_role` may invite someone as `role`, or give or take `role` away."""
    if manager_role == Role.OWNER:
        return True
    return manager_role == Role.ADMIN and role not in ROLES_ONLY_OWNERS_GRANT
