"""Staff moderation actions. Each takes a reason, goes through the services, is audited, and
tells the people affected."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.errors import AccountErrorCode
from accounts.locks import user_lock
from accounts.models import User
from accounts.services import notify, notify_all
from marketplace.audit import audit_record
from marketplace.errors import Conflict, ErrorCode, Forbidden, InvalidInput
from orders.lifecycle import instance_stop
from orders.models import Instance, InstanceEvent, InstanceStatus
from orders.selectors import renters
from suppliers.hosts import host_set_status
from suppliers.locks import host_lock
from suppliers.models import Host
from suppliers.organizations import organization_notify_members


def _require(staff: User, reason: str) -> str:
    if not staff.is_staff:
        raise Forbidden(_("Only staff moderate."))
    if not (reason or "").strip():
        raise InvalidInput(
            _("Moderation needs a reason the affected people will see."), fields={"reason": [_("Required.")]}
        )
    return reason.strip()


@transaction.atomic
def buyer_suspend(*, buyer: User, reason: str, staff: User) -> User:
    """No new orders; running instances are stopped (disks kept); the buyer is told why."""
    reason = _require(staff, reason)
    buyer = user_lock(user_id=buyer.pk)
    if buyer.suspended_at:
        raise Conflict(_("This buyer is already suspended."), code=AccountErrorCode.ALREADY_SUSPENDED)
    audit_record(
        action="buyer.suspend",
        obj=buyer,
        actor=staff,
        reason=reason,
        before={"suspended": False},
        after={"suspended": True},
    )
    buyer.suspended_at = timezone.now()
    buyer.suspension_reason = reason
    buyer.save(update_fields=["suspended_at", "suspension_reason"])
    for instance in Instance.objects.live().filter(buyer=buyer).exclude(status=InstanceStatus.REQUESTED):
        instance_stop(instance=instance, actor=InstanceEvent.Actor.STAFF, actor_user=staff)
    notify(user=buyer, kind="moderation", title=_("Your account was suspended"), body=reason)
    return buyer


@transaction.atomic
def buyer_reinstate(*, buyer: User, reason: str, staff: User) -> User:
    reason = _require(staff, reason)
    buyer = user_lock(user_id=buyer.pk)
    audit_record(
        action="buyer.reinstate",
        obj=buyer,
        actor=staff,
        reason=reason,
        before={"suspended": bool(buyer.suspended_at)},
        after={"suspended": False},
    )
    buyer.suspended_at = None
    buyer.suspension_reason = ""
    buyer.save(update_fields=["suspended_at", "suspension_reason"])
    notify(user=buyer, kind="moderation", title=_("Your account was reinstated"), body=reason)
    return buyer


@transaction.atomic
def host_reinstate(*, host: Host, reason: str, staff: User) -> Host:
    """Staff undo their own delisting: the host is offered again; its supplier is told."""
    reason = _require(staff, reason)
    host = host_lock(host_id=host.pk)
    if host.status != Host.Status.DELISTED:
        raise Conflict(
            _("A %(status)s host cannot be reinstated.") % {"status": host.get_status_display().lower()},
            code=ErrorCode.INVALID_TRANSITION,
        )
    host = host_set_status(host=host, status=Host.Status.APPROVED, reason="", actor=staff, action="host.reinstate")
    organization_notify_members(host.organization, _("Host %(name)s is listed again") % {"name": host.name}, reason)
    return host


@transaction.atomic
def host_delist(*, host: Host, reason: str, staff: User) -> Host:
    """Staff take a host's offers down; its supplier and current renters are told."""
    reason = _require(staff, reason)
    host = host_set_status(host=host, status=Host.Status.DELISTED, reason=reason, actor=staff, action="host.delist")
    organization_notify_members(host.organization, _("Host %(name)s was delisted") % {"name": host.name}, reason)
    notify_all(
        renters(host=host),
        kind="moderation",
        title=_("A host you rent on was delisted by our staff"),
        body=_("Your instances keep running for now. Reason: %(reason)s") % {"reason": reason},
    )
    return host
