"""Row locks of this app; the global lock order is in `accounts.locks`.

Hosts are always locked in id order, after the buyer and the organization and before ledger
accounts and instances.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils.translation import gettext as _

from marketplace.errors import NotFound

from .models import Host, HostRegistrationToken, Organization


def organization_lock(*, organization_id: int) -> Organization:
    """Lock one organization row; NotFound (404) when it is gone."""
    organization = Organization.objects.select_for_update().filter(pk=organization_id).first()
    if organization is None:
        raise NotFound(_("No such organization."))
    return organization


def hosts_lock(queryset: QuerySet[Host]) -> list[Host]:
    """Lock the hosts of `queryset` in id order, with what offers and placement read of them."""
    return list(
        queryset.select_for_update(of=("self",))
        .select_related("organization", "accelerator_model", "region", "zone")
        .order_by("pk")
    )


def host_lock(*, host_id: int) -> Host:
    """Lock one host row for a capacity change and return it fresh. NotFound (404) when the row is
    gone: a delete that committed while we waited for the lock won, and this change has nothing
    left to change."""
    locked = hosts_lock(Host.objects.filter(pk=host_id))
    if not locked:
        raise NotFound(_("No such host: it was removed."))
    return locked[0]


def host_lock_if_present(*, host_id: int) -> Host | None:
    """`host_lock` for batch loops: None when the host was removed meanwhile (the loop goes on)."""
    locked = hosts_lock(Host.objects.filter(pk=host_id))
    return locked[0] if locked else None


def registration_token_lock(*, token_hash: str) -> HostRegistrationToken | None:
    return (
        HostRegistrationToken.objects.select_for_update().select_related("host").filter(token_hash=token_hash).first()
    )
