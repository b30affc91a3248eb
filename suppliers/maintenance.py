"""Maintenance windows: scheduled by the supplier; offers end at a window and return after it.

Entry points call `orders.supply.maintenance_schedule`, which also tells the current renters.
"""

from __future__ import annotations

import datetime as dt
from datetime import datetime, timedelta
from typing import cast

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import User
from accounts.scopes import Scope
from marketplace.errors import Forbidden, InvalidInput
from marketplace.models import validate_clean_text

from .locks import host_lock, host_lock_if_present
from .models import Host, MaintenanceWindow
from .offers import offers_refresh_for_host
from .selectors import member_may

MAX_MAINTENANCE = timedelta(days=7)
MAX_REASON_LENGTH = 500  # MaintenanceWindow.reason


@transaction.atomic
def maintenance_window_create(
    *, user: User, host: Host, starts_at: datetime | None, ends_at: datetime | None, reason: str
) -> MaintenanceWindow:
    """Schedule maintenance on the user's host (locks it) and recompute its offers."""
    errors = {}
    now = timezone.now()
    for name, moment in (("starts_at", starts_at), ("ends_at", ends_at)):
        try:
            if moment is not None:
                moment.astimezone(dt.UTC)  # stored in UTC: 9999-12-31T23:00-05:00 is in year 10000
        except OverflowError:
            errors[name] = [_("Out of range.")]
    if errors:
        raise InvalidInput(_("The maintenance window is not valid."), fields=errors)
    if starts_at is None or starts_at <= now:
        errors["starts_at"] = [_("Maintenance is scheduled in the future.")]
    if ends_at is None:
        errors["ends_at"] = [_("Give the end of the window.")]
    elif starts_at and ends_at <= starts_at:
        errors["ends_at"] = [_("The end comes after the start.")]
    elif starts_at and ends_at - starts_at > MAX_MAINTENANCE:
        errors["ends_at"] = [_("At most 7 days.")]
    if not (reason or "").strip():
        errors["reason"] = [_("Tell renters why.")]
    else:
        try:
            validate_clean_text(reason, max_length=MAX_REASON_LENGTH)
        except ValidationError as error:
            errors["reason"] = list(error.messages)
    if errors:
        raise InvalidInput(_("The maintenance window is not valid."), fields=errors)
    host = host_lock(host_id=host.pk)
    if not user.is_staff and not member_may(
        user=user, organization_id=host.organization_id, area=Scope.SUPPLIER, write=True
    ):
        raise Forbidden(_("Only the host's supplier (a role that changes hosts) schedules maintenance."))
    # Both are checked above (None is a field error).
    window = MaintenanceWindow.objects.create(
        host=host, starts_at=cast(datetime, starts_at), ends_at=cast(datetime, ends_at), reason=reason.strip()
    )
    offers_refresh_for_host(host=host)
    return window


def maintenance_refresh(*, within: timedelta = timedelta(minutes=10)) -> int:
    """Beat: re-offer hosts whose maintenance just ended, hide those where it just began."""
    now = timezone.now()
    host_ids = set(
        MaintenanceWindow.objects.filter(
            Q(starts_at__range=(now - within, now)) | Q(ends_at__range=(now - within, now))
        ).values_list("host_id", flat=True)
    )
    for host_id in sorted(host_ids):
        with transaction.atomic():
            host = host_lock_if_present(host_id=host_id)
            if host is not None:  # else removed meanwhile
                offers_refresh_for_host(host=host)
    return len(host_ids)
