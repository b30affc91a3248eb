"""The buyer's dashboard, read only: live instances with what each has cost and the actions their
state allows, money (balance, burn, runway, spend), spend per day, recent instance events and
problem reports. A fixed number of queries whatever the number of instances: lists are capped and
per-instance figures come from grouped queries, never one query per row."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from django.db.models import Case, IntegerField, OuterRef, QuerySet, Subquery, Value, When
from django.utils import timezone

from accounts.models import User
from billing.ledger import buyer_wallet
from billing.models import LedgerPosting, LedgerTransaction
from billing.selectors import daily_spend, money_sum

from .models import Instance, InstanceEvent, InstanceStatus, ProblemReport
from .selectors import buyer_balance, buyer_live_rates, instance_costs_so_far
from .state import TRANSITIONS

LIVE_INSTANCES_SHOWN = 50
EVENTS_SHOWN = 20
REPORTS_SHOWN = 20
SPEND_DAYS = 30
HOURS_PER_DAY = Decimal(24)


@dataclass(frozen=True)
class InstanceActions:
    """What a buyer may ask of an instance in its state (the state table decides; the role is the page's)."""

    stop: bool
    start: bool
    terminate: bool

    @property
    def any(self) -> bool:
        return self.stop or self.start or self.terminate


def instance_actions(status: str) -> InstanceActions:
    """The stop/start/terminate buttons an instance in `status` gets, as on its own page."""
    allowed = TRANSITIONS[status]
    return InstanceActions(
        stop=InstanceStatus.STOPPING in allowed,
        start=status == InstanceStatus.STOPPED,
        terminate=InstanceStatus.TERMINATING in allowed,
    )


@dataclass(frozen=True)
class LiveInstanceRow:
    instance: Instance
    cost_so_far: Decimal  # its usage records' charges, as settlement rounds them
    running_for: dt.timedelta | None  # since it last became running; None unless running now
    actions: InstanceActions


@dataclass(frozen=True)
class LiveInstances:
    rows: list[LiveInstanceRow]
    total: int  # all not-terminated instances; `rows` holds at most LIVE_INSTANCES_SHOWN

    @property
    def more(self) -> int:
        return self.total - len(self.rows)


def live_instances(*, buyer: User, limit: int | None = None) -> LiveInstances:
    """The buyer's not-terminated instances, newest first, at most `limit` (LIVE_INSTANCES_SHOWN):
    three queries at most."""
    limit = limit or LIVE_INSTANCES_SHOWN
    became_running = InstanceEvent.objects.filter(instance=OuterRef("pk"), to_status=InstanceStatus.RUNNING).order_by(
        "-created_at", "-id"
    )
    queryset = (
        Instance.objects.not_terminated()
        .filter(buyer=buyer)
        .select_related("instance_type", "host__region")
        .annotate(running_since=Subquery(became_running.values("created_at")[:1]))
    )
    instances = list(queryset[:limit])
    total = len(instances) if len(instances) < limit else queryset.count()
    costs = instance_costs_so_far(instance_ids=[instance.pk for instance in instances])
    now = timezone.now()
    rows = [
        LiveInstanceRow(
            instance=instance,
            cost_so_far=costs.get(instance.pk, Decimal(0)),
            running_for=_running_for(instance, now),
            actions=instance_actions(instance.status),
        )
        for instance in instances
    ]
    return LiveInstances(rows=rows, total=total)


def _running_for(instance: Instance, now: dt.datetime) -> dt.timedelta | None:
    since: dt.datetime | None = getattr(instance, "running_since", None)  # annotated by `live_instances`
    if instance.status != InstanceStatus.RUNNING or since is None:
        return None
    return max(now - since, dt.timedelta(0))


class RunwayState(StrEnum):
    LASTS = "lasts"  # balance / burn hours left
    NOTHING_RUNNING = "nothing_running"  # no burn: it lasts for ever
    USED_UP = "used_up"  # something burns and the balance is at or below zero


@dataclass(frozen=True)
class BuyerMoney:
    balance: Decimal
    burn_per_hour: Decimal  # live on-demand and spot instances (reserved terms are prepaid)
    live_per_hour: Decimal  # every live instance: what the spend limit counts
    spend_limit_per_hour: Decimal
    runway_hours: Decimal | None
    runway_state: RunwayState
    spent_this_month: Decimal  # settled usage charged to the wallet since the 1st, 00:00 UTC
    spent_all_time: Decimal

    @property
    def runway_days(self) -> Decimal | None:
        if self.runway_hours is None:
            return None
        return (self.runway_hours / HOURS_PER_DAY).quantize(Decimal("0.1"))

    @property
    def limit_used_percent(self) -> int:
        if self.spend_limit_per_hour <= 0:
            return 100 if self.live_per_hour > 0 else 0
        return min(int(self.live_per_hour / self.spend_limit_per_hour * 100), 100)


def buyer_money(*, buyer: User) -> BuyerMoney:
    """Balance, burn and runway as the billing page counts them (`buyer_balance`), the live rate
    against the spend limit, and what usage charged the wallet this month and in all."""
    summary = buyer_balance(user=buyer)
    balance, burn = summary["balance"], summary["burn_per_hour"]
    if burn <= 0:
        state, runway = RunwayState.NOTHING_RUNNING, None
    elif balance <= 0:
        state, runway = RunwayState.USED_UP, None
    else:
        state, runway = RunwayState.LASTS, summary["runway_hours"]
    spent_all_time, spent_this_month = _usage_charged(buyer)
    return BuyerMoney(
        balance=balance,
        burn_per_hour=burn,
        live_per_hour=buyer_live_rates(user=buyer).total,
        spend_limit_per_hour=buyer.spend_limit_per_hour,
        runway_hours=runway,
        runway_state=state,
        spent_this_month=spent_this_month,
        spent_all_time=spent_all_time,
    )


def _usage_charged(buyer: User) -> tuple[Decimal, Decimal]:
    """(all time, this month): usage settlements (reserved prepayments included) out of the wallet."""
    month_start = timezone.now().astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    usage = LedgerPosting.objects.filter(account=buyer_wallet(buyer), transaction__kind=LedgerTransaction.Kind.USAGE)
    return -money_sum(usage), -money_sum(usage.filter(transaction__created_at__gte=month_start))


def spend_per_day(*, buyer: User, days: int = SPEND_DAYS) -> list[dict]:
    """Usage charges per UTC day for the last `days` days, oldest first: the billing page's
    selector (`day`, `amount`, `percent` of the busiest day)."""
    return daily_spend(user=buyer, days=days)


def recent_events(*, buyer: User, limit: int = EVENTS_SHOWN) -> QuerySet[InstanceEvent]:
    """The latest status changes of the buyer's instances, newest first."""
    return (
        InstanceEvent.objects.filter(instance__buyer=buyer)
        .select_related("instance__instance_type")
        .order_by("-created_at", "-id")[:limit]
    )


UNRESOLVED_REPORTS = (ProblemReport.Status.OPEN, ProblemReport.Status.ANSWERED)


def problem_reports(*, buyer: User, limit: int = REPORTS_SHOWN) -> QuerySet[ProblemReport]:
    """The buyer's problem reports, unresolved first, then newest first."""
    unresolved_first = Case(
        When(status__in=UNRESOLVED_REPORTS, then=Value(0)), default=Value(1), output_field=IntegerField()
    )
    return (
        ProblemReport.objects.filter(buyer=buyer)
        .select_related("instance__instance_type")
        .order_by(unresolved_first, "-created_at", "-id")[:limit]
    )
