"""Supplier-side changes that renters must hear about. Each does the supplier's change (in
`suppliers`) and tells the buyers renting on the host, in the same transaction. Entry points
(pages, API, admin) call these rather than the `suppliers` functions they wrap.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.urls import reverse
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.services import notify_all
from suppliers import hosts, maintenance, organizations
from suppliers.models import Host, MaintenanceWindow, Organization
from suppliers.verification import host_verification_update

from .price_changes import renters_notify_price_change
from .selectors import renters


@transaction.atomic
def host_update(*, host: Host, **data: Any) -> Host:
    """Change a host's declaration (`suppliers.hosts.host_update`); with a new price, renters of
    on-demand instances on it are told they may accept it."""
    host = hosts.host_update(host=host, **data)
    host = host_verification_update(host=host)  # a hardware change unverifies; its confirmation may verify
    if "price_per_unit_hour" in data:
        renters_notify_price_change(host=host)
    return host


@transaction.atomic
def maintenance_schedule(
    *, user: User, host: Host, starts_at: datetime | None, ends_at: datetime | None, reason: str
) -> MaintenanceWindow:
    """Schedule maintenance on the user's host; every current renter is notified now."""
    window = maintenance.maintenance_window_create(
        user=user, host=host, starts_at=starts_at, ends_at=ends_at, reason=reason
    )
    notify_all(
        renters(host=window.host),
        kind="maintenance",
        title=_("Planned maintenance on your host %(starts)s-%(ends)s UTC")
        % {"starts": f"{window.starts_at:%Y-%m-%d %H:%M}", "ends": f"{window.ends_at:%H:%M}"},
        body=_("%(reason)s. Your instances on host %(host)s may be interrupted during the window.")
        % {"reason": window.reason, "host": window.host_id},
        link=reverse("orders:instances"),
    )
    return window


@transaction.atomic
def organization_suspend(*, organization: Organization, reason: str, actor: User | None = None) -> Organization:
    """Staff suspend a supplier (`suppliers.organizations.organization_suspend`); its renters are told."""
    organization = organizations.organization_suspend(organization=organization, reason=reason, actor=actor)
    notify_all(
        renters(host__organization=organization),
        kind="moderation",
        title=_("A supplier you rent from was suspended"),
        body=_("Its offers are delisted; your running instances are not interrupted by us."),
    )
    return organization
