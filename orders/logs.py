"""Instances' recent output: the host agent ships the tail of what an instance printed (bounded,
at most once per LOG_SHIP_MIN_INTERVAL_SECONDS), and its renter (or staff) reads the last lines."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from marketplace.errors import ApplicationError, NotFound
from suppliers.models import Host

from .errors import OrderErrorCode
from .models import Instance, InstanceLog

LOG_MAX_CHARACTERS = 256 * 1024  # what is kept of an instance's output: its last 256 KiB or so
DEFAULT_TAIL_LINES = 200
MAX_TAIL_LINES = 10_000


class LogRateLimited(ApplicationError):
    status_code = 429
    code = OrderErrorCode.LOG_RATE_LIMITED


def log_ship_min_interval() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "LOG_SHIP_MIN_INTERVAL_SECONDS", 5)))


def agent_ship_log(*, host: Host, instance_id: int, text: str) -> InstanceLog:
    """Keep the tail an agent sent for one of its host's instances (an instance of another host
    is 404). Replaces what was kept: the agent sends its whole recent tail each time. Shipping more
    often than the minimum interval is refused (429): the agent waits for its next turn."""
    instance = Instance.objects.filter(pk=instance_id, host=host).only("pk").first()
    if instance is None:
        raise NotFound(_("No such instance on this host."))
    now = timezone.now()
    log = InstanceLog.objects.filter(instance=instance).first()
    if log is not None and now - log.shipped_at < log_ship_min_interval():
        raise LogRateLimited(
            _("Output was shipped %(ago)s s ago; at most one shipment every %(interval)s s.")
            % {
                "ago": f"{(now - log.shipped_at).total_seconds():.1f}",
                "interval": f"{log_ship_min_interval().total_seconds():.0f}",
            },
            extra={"retry_after_seconds": log_ship_min_interval().total_seconds()},
        )
    tail = text[-LOG_MAX_CHARACTERS:]
    log, _created = InstanceLog.objects.update_or_create(instance=instance, defaults={"text": tail, "shipped_at": now})
    return log


def instance_log_tail(*, instance: Instance, lines: int = DEFAULT_TAIL_LINES) -> tuple[str, InstanceLog | None]:
    """The last `lines` lines of what the instance printed, and the row they came from (None when
    its agent has sent nothing yet). Precondition: the caller may see the instance."""
    log = InstanceLog.objects.filter(instance=instance).first()
    if log is None:
        return "", None
    kept = log.text.splitlines(keepends=True)
    return "".join(kept[-max(1, min(lines, MAX_TAIL_LINES)) :]), log
