"""Supplier analytics: utilization, idle rate, sold accelerator-hours and earnings over time, a price
hint for a target occupancy, and where each listed offer stands against comparable offers.

Read only, scoped to one supplier organization, and a fixed number of queries whatever the number
of hosts: aggregates bucketed by hour or day (`Trunc`, UTC), the rest in Python over plain values.

A host's *unit* is its primary dimension, the one its price is per: accelerators, or vCPUs on
CPU-only hosts (so "accelerator-hours" are vCPU-hours there). An instance holds as many units as
its instance type has.

What is measured, and how:

- Sold unit-hours: the compute seconds of usage records (`billing.UsageRecord`) x the units of the
  instance's type. A record counts in the bucket its window starts in (metering windows are one
  beat tick long, a minute by default). Spot compute on idle reserved capacity is left out: the
  reserved instance already counts those accelerators as sold (and earns for them). Time an
  instance ran in no-GPU mode counts as accelerator time (records do not say which mode they were
  metered in).
- Listed unit-hours: the host's units x the hours it was listed. Hosts keep no listing history, so
  it is approximated: a host approved now counts as listed from its first approval (the
  `host.approve` audit entry; its creation when there is none) until now; any other host as not
  listed. Outages and maintenance are not taken off. Where sold time exceeds that (a host delisted
  while instances still ran), listed is raised to sold, so utilization never passes 100%.
- Earnings: the supplier's share of each settled record, as settlement posted it to the
  organization's supplier payable (`billing.rating`: charge and fee each rounded half-up to
  0.000001, share = charge - fee). Settlement sums many records into one posting per payer, so the
  ledger cannot say which host or hour earned what; the records can, and their shares add up to
  exactly what was posted. Credits charged to the supplier (disputes, SLA) come from the ledger.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from django.conf import settings
from django.db import connection
from django.db.models import (
    BigIntegerField,
    Case,
    CharField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    When,
)
from django.db.models.functions import Cast, Coalesce, Trunc
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from billing.models import LedgerAccount, LedgerPosting, LedgerTransaction, UsageRecord
from billing.rating import charge_for, split
from billing.selectors import money_sum, usage_charge_and_fee_in_sql
from marketplace.errors import ErrorCode, InvalidInput
from marketplace.models import AcceleratorKind, AuditEntry, Offer
from marketplace.money import quantize_price
from suppliers.models import Host

from .models import AgentUsageReport, Instance, Pricing

ZERO = Decimal(0)
RATIO_QUANTUM = Decimal("0.0001")
HOURS_QUANTUM = Decimal("0.01")
PERCENT_QUANTUM = Decimal(1)
HOUR_SECONDS = 3600


# --- Ranges -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnalyticsRange:
    """A period ending now, in `buckets` hours or UTC days (the last one still running)."""

    code: str
    label: Any  # a lazy translation
    bucket: Literal["hour", "day"]
    buckets: int

    @property
    def step(self) -> dt.timedelta:
        return dt.timedelta(hours=1) if self.bucket == "hour" else dt.timedelta(days=1)

    def bucket_starts(self, now: dt.datetime) -> list[dt.datetime]:
        """The start of each bucket, oldest first; the last holds `now`."""
        now = now.astimezone(dt.UTC)
        last = now.replace(minute=0, second=0, microsecond=0)
        if self.bucket == "day":
            last = last.replace(hour=0)
        return [last - self.step * (self.buckets - 1 - i) for i in range(self.buckets)]


RANGES = {
    "24h": AnalyticsRange("24h", _("Last 24 hours, by hour"), "hour", 24),
    "7d": AnalyticsRange("7d", _("Last 7 days, by day"), "day", 7),
    "30d": AnalyticsRange("30d", _("Last 30 days, by day"), "day", 30),
}
DEFAULT_RANGE = "7d"
TARGET_OCCUPANCY_DEFAULT = 80
TARGET_OCCUPANCY_MIN = 50
TARGET_OCCUPANCY_MAX = 95


def analytics_range_parse(value: str | None) -> AnalyticsRange:
    """The `range` query parameter: 24h, 7d or 30d (absent or empty: 7d). Else 400 `invalid_filter`."""
    if not value:
        return RANGES[DEFAULT_RANGE]
    found = RANGES.get(value)
    if found is None:
        choices = ", ".join(RANGES)
        raise InvalidInput(
            gettext("Unknown range: choose one of %(choices)s.") % {"choices": choices},
            code=ErrorCode.INVALID_FILTER,
            fields={"range": [gettext("One of %(choices)s.") % {"choices": choices}]},
        )
    return found


def target_occupancy_parse(value: str | None) -> int:
    """The `target` query parameter: a whole percent from 50 to 95 (absent or empty: 80). Else 400
    `invalid_filter`."""
    if not value:
        return TARGET_OCCUPANCY_DEFAULT
    # isascii: int() also reads other scripts' digits.
    number = int(value) if value.isascii() and value.isdigit() and len(value) <= 3 else None
    if number is None or not TARGET_OCCUPANCY_MIN <= number <= TARGET_OCCUPANCY_MAX:
        bounds = {"low": TARGET_OCCUPANCY_MIN, "high": TARGET_OCCUPANCY_MAX}
        raise InvalidInput(
            gettext("The target occupancy is a whole percent from %(low)s to %(high)s.") % bounds,
            code=ErrorCode.INVALID_FILTER,
            fields={"target": [gettext("A whole number from %(low)s to %(high)s.") % bounds]},
        )
    return number


# --- Results ----------------------------------------------------------------------------------


def _ratio(part: Decimal, whole: Decimal) -> Decimal | None:
    return (part / whole).quantize(RATIO_QUANTUM, rounding=ROUND_HALF_UP) if whole > 0 else None


def _unit_hours(unit_seconds: int) -> Decimal:
    return (Decimal(unit_seconds) / HOUR_SECONDS).quantize(HOURS_QUANTUM, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Usage:
    """Sold and listed unit-seconds and the supplier's earnings over one period (a bucket or all)."""

    sold_unit_seconds: int = 0
    listed_unit_seconds: int = 0
    earned: Decimal = ZERO

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.sold_unit_seconds + other.sold_unit_seconds,
            self.listed_unit_seconds + other.listed_unit_seconds,
            self.earned + other.earned,
        )

    @property
    def sold_unit_hours(self) -> Decimal:
        return _unit_hours(self.sold_unit_seconds)

    @property
    def listed_unit_hours(self) -> Decimal:
        return _unit_hours(self.listed_unit_seconds)

    @property
    def utilization(self) -> Decimal | None:
        """Sold / listed unit-hours, 0-1 (None when nothing was listed)."""
        return _ratio(Decimal(self.sold_unit_seconds), Decimal(self.listed_unit_seconds))

    @property
    def idle(self) -> Decimal | None:
        """1 - utilization."""
        utilization = self.utilization
        return None if utilization is None else 1 - utilization

    @property
    def earned_per_unit_hour(self) -> Decimal | None:
        """Earnings per sold unit-hour (None when nothing was sold)."""
        if self.sold_unit_seconds <= 0:
            return None
        return quantize_price(self.earned * HOUR_SECONDS / self.sold_unit_seconds)


@dataclass(frozen=True)
class Point:
    start: dt.datetime
    usage: Usage


@dataclass(frozen=True)
class PriceHint:
    """A price per unit-hour that recent market fills say would reach the target occupancy.

    Method: the on-demand rentals of the same accelerator model (CPU types on CPU hosts) in the
    same region started in the last `FILL_WINDOW`, each as a price per unit-hour; the suggestion is
    the highest price that at least `target_percent`% of them paid or exceeded (the
    (100 - target)th percentile, nearest rank). Priced there, the host would have been no dearer
    than what that share of recent buyers accepted. Below `MIN_FILLS` rentals: not enough data."""

    target_percent: int
    unit: str
    fills: int
    suggested: Decimal | None  # per unit-hour; None: not enough data
    current: Decimal
    median_fill: Decimal | None
    lowest_fill: Decimal | None
    highest_fill: Decimal | None
    median_listed: Decimal | None  # other suppliers' hosts listed now, per unit-hour
    listed: int
    region_code: str
    model_name: str

    @property
    def enough_data(self) -> bool:
        return self.suggested is not None

    @property
    def change_percent(self) -> Decimal | None:
        """How far the suggestion is from the current price, in percent (negative: lower)."""
        if self.suggested is None or self.current <= 0:
            return None
        return ((self.suggested - self.current) * 100 / self.current).quantize(PERCENT_QUANTUM, ROUND_HALF_UP)

    @property
    def min_fills(self) -> int:
        return MIN_FILLS


@dataclass(frozen=True)
class HostAnalytics:
    host_id: int
    name: str
    region_code: str
    unit: str
    capacity_units: int
    listed_now: bool
    points: list[Point]
    total: Usage
    measured_utilization_percent: Decimal | None  # the agents' readings, last hour
    price_hint: PriceHint | None


@dataclass(frozen=True)
class SupplierAnalytics:
    range: AnalyticsRange
    start: dt.datetime
    now: dt.datetime
    points: list[Point]  # all hosts together
    hosts: list[HostAnalytics]
    total: Usage
    credits_charged: Decimal  # disputes and SLA credits charged to the payable in the period
    target_percent: int

    @property
    def net_earned(self) -> Decimal:
        return self.total.earned - self.credits_charged


# --- Hosts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HostFacts:
    pk: int
    name: str
    cpu_only: bool
    capacity_units: int
    listed_now: bool
    listed_since: dt.datetime
    accelerator_model_id: int
    model_name: str
    region_id: int
    region_code: str
    price_per_unit_hour: Decimal

    @property
    def unit(self) -> str:
        return gettext("vCPU") if self.cpu_only else gettext("accelerator")

    @property
    def market_key(self) -> tuple[int | None, int]:
        """(accelerator model, region) as fills are grouped: CPU types have no model."""
        return (None if self.cpu_only else self.accelerator_model_id, self.region_id)


def _host_facts(*, organization_id: int, host_id: int | None) -> list[_HostFacts]:
    """The organization's hosts (or one of them) with their first approval: one query."""
    first_approval = (
        AuditEntry.objects.filter(
            object_type=Host._meta.label_lower,
            object_id=Cast(OuterRef("pk"), output_field=CharField()),
            action="host.approve",
        )
        .order_by("created_at")
        .values("created_at")[:1]
    )
    hosts = Host.objects.filter(organization_id=organization_id)
    if host_id is not None:
        hosts = hosts.filter(pk=host_id)
    rows = (
        hosts.annotate(approved_at=Subquery(first_approval))
        .order_by("name", "pk")
        .values(
            "pk",
            "name",
            "status",
            "created_at",
            "approved_at",
            "accelerator_count",
            "vcpus",
            "accelerator_model_id",
            "accelerator_model__name",
            "accelerator_model__kind",
            "region_id",
            "region__code",
            "price_per_unit_hour",
        )
    )
    facts = []
    for row in rows:
        cpu_only = row["accelerator_model__kind"] == AcceleratorKind.CPU
        facts.append(
            _HostFacts(
                pk=row["pk"],
                name=row["name"],
                cpu_only=cpu_only,
                capacity_units=row["vcpus"] if cpu_only else row["accelerator_count"],
                listed_now=row["status"] == Host.Status.APPROVED,
                listed_since=row["approved_at"] or row["created_at"],
                accelerator_model_id=row["accelerator_model_id"],
                model_name=row["accelerator_model__name"],
                region_id=row["region_id"],
                region_code=row["region__code"],
                price_per_unit_hour=row["price_per_unit_hour"],
            )
        )
    return facts


def _listed_unit_seconds(host: _HostFacts, start: dt.datetime, end: dt.datetime) -> int:
    """Units x seconds of [start, end) the host counts as listed (see the module docstring)."""
    if not host.listed_now:
        return 0
    seconds = (end - max(start, host.listed_since)).total_seconds()
    return host.capacity_units * int(seconds) if seconds > 0 else 0


# --- Sold time and earnings -------------------------------------------------------------------


def _type_units(prefix: str) -> Case:
    """The units one instance of a type holds: its accelerators, or its vCPUs for CPU types."""
    return Case(
        When(**{f"{prefix}accelerator_model__isnull": True}, then=F(f"{prefix}vcpus")),
        default=F(f"{prefix}accelerator_count"),
        output_field=IntegerField(),
    )


def _supplier_share_in_sql(take: Decimal) -> ExpressionWrapper:
    """PostgreSQL: a record's supplier share exactly as `billing.rating` rounds it (NUMERIC is
    exact; ROUND(x, 6) is half away from zero, half-up for these non-negative amounts)."""
    charge, fee = usage_charge_and_fee_in_sql(take)
    return ExpressionWrapper(charge - fee, output_field=charge.output_field)


def _sold_and_earned(
    *, organization_id: int, host_ids: list[int] | None, range_: AnalyticsRange, start: dt.datetime, now: dt.datetime
) -> dict[tuple[int, dt.datetime], tuple[int, Decimal]]:
    """(host, bucket start) -> (sold unit-seconds, supplier share of the settled records): one query."""
    records = UsageRecord.objects.filter(
        organization_id=organization_id,
        kind=UsageRecord.Kind.COMPUTE,
        window_start__gte=start,
        window_start__lt=now,
        instance__backfills__isnull=True,
    )
    if host_ids is not None:
        records = records.filter(instance__host_id__in=host_ids)
    bucketed = records.annotate(
        bucket=Trunc("window_start", range_.bucket, tzinfo=dt.UTC), units=_type_units("instance__instance_type__")
    ).order_by()
    take = Decimal(settings.PLATFORM_TAKE_RATE)
    totals: dict[tuple[int, dt.datetime], tuple[int, Decimal]] = {}
    if connection.vendor == "postgresql":
        rows = bucketed.values("instance__host_id", "bucket").annotate(
            unit_seconds=Sum(ExpressionWrapper(F("seconds") * F("units"), output_field=BigIntegerField())),
            earned=Sum(_supplier_share_in_sql(take), filter=Q(settled_by__isnull=False)),
        )
        for row in rows:
            key = (row["instance__host_id"], row["bucket"])
            totals[key] = (row["unit_seconds"] or 0, row["earned"] or ZERO)
        return totals
    # SQLite does arithmetic in floating point: the rule is applied here, record by record.
    columns = ("instance__host_id", "bucket", "seconds", "units", "rate_per_hour", "settled_by_id")
    for host_id, bucket, seconds, units, rate, settled_by in bucketed.values_list(*columns):
        sold, earned = totals.get((host_id, bucket), (0, ZERO))
        if settled_by is not None:
            earned += split(charge_for(seconds, rate), take).supplier_share
        totals[(host_id, bucket)] = (sold + seconds * units, earned)
    return totals


def _credits_charged(*, organization_id: int, start: dt.datetime, now: dt.datetime) -> Decimal:
    """What credits (disputes, SLA) took from the organization's payable in the period: one query."""
    postings = LedgerPosting.objects.filter(
        account__kind=LedgerAccount.Kind.SUPPLIER_PAYABLE,
        account__organization_id=organization_id,
        amount__lt=0,
        transaction__created_at__gte=start,
        transaction__created_at__lt=now,
    ).exclude(transaction__kind=LedgerTransaction.Kind.PAYOUT)
    return -money_sum(postings)


def _measured_utilization(*, host_ids: list[int], now: dt.datetime) -> dict[int, Decimal]:
    """Per host, the mean accelerator utilization (percent) of its agents' readings in the last
    hour, over every instance it reported: one query."""
    since = now - dt.timedelta(hours=1)
    readings: dict[int, list[Decimal]] = defaultdict(list)
    reports = AgentUsageReport.objects.filter(host_id__in=host_ids, reported_at__gte=since)
    for host_id, samples in reports.values_list("host_id", "utilization"):
        for sample in samples or []:
            if len(sample) >= 2 and sample[0] >= since.timestamp():
                readings[host_id].append(Decimal(str(sample[1])))
    return {
        host_id: (sum(values, ZERO) / len(values)).quantize(Decimal("0.1"), ROUND_HALF_UP)
        for host_id, values in readings.items()
    }


# --- Price hint -------------------------------------------------------------------------------

FILL_WINDOW = dt.timedelta(days=7)
MIN_FILLS = 5


def fill_price_for_target(prices: Sequence[Decimal], target_percent: int) -> Decimal | None:
    """The highest of `prices` that at least `target_percent`% of them are at or above (nearest
    rank): ascending, the one at index floor(n x (100 - target) / 100). None for no prices."""
    if not prices:
        return None
    ordered = sorted(prices)
    return ordered[len(ordered) * (100 - target_percent) // 100]


def median(values: Sequence[Decimal]) -> Decimal | None:
    """The middle of `values` (the mean of the two middle ones for an even count)."""
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _price_hints(
    *, hosts: list[_HostFacts], organization_id: int, target_percent: int, now: dt.datetime
) -> dict[int, PriceHint]:
    """A price hint for each host: two queries for all of them (fills, listed competitors)."""
    if not hosts:
        return {}
    keys = {host.market_key for host in hosts}
    regions = {region for _, region in keys}
    models = {model for model, _ in keys if model is not None}
    fits = Q(instance_type__accelerator_model_id__in=models)
    if any(model is None for model, _ in keys):
        fits |= Q(instance_type__accelerator_model__isnull=True)
    fills: dict[tuple[int | None, int], list[Decimal]] = defaultdict(list)
    rentals = (
        Instance.objects.filter(fits, created_at__gte=now - FILL_WINDOW, created_at__lt=now, pricing=Pricing.ON_DEMAND)
        .filter(host__region_id__in=regions)
        .annotate(agreed=Coalesce("accelerated_price_per_hour", "price_per_hour"), units=_type_units("instance_type__"))
        .order_by()
        .values_list("instance_type__accelerator_model_id", "host__region_id", "agreed", "units")
    )
    for model, region, price, units in rentals:
        if units:
            fills[(model, region)].append(quantize_price(price / units))
    listed: dict[tuple[int | None, int], list[Decimal]] = defaultdict(list)
    competitors = (
        Host.objects.sellable()
        .filter(Exists(Offer.objects.listed().filter(host=OuterRef("pk"))))
        .filter(region_id__in=regions)
        .filter(Q(accelerator_model_id__in=models) | Q(accelerator_model__kind=AcceleratorKind.CPU))
        .exclude(organization_id=organization_id)
        .order_by()
        .values_list("accelerator_model_id", "accelerator_model__kind", "region_id", "price_per_unit_hour")
    )
    for model, kind, region, price in competitors:
        listed[(None if kind == AcceleratorKind.CPU else model, region)].append(price)
    hints = {}
    for host in hosts:
        prices = fills.get(host.market_key, [])
        enough = len(prices) >= MIN_FILLS
        middle = median(prices)
        listed_prices = listed.get(host.market_key, [])
        listed_middle = median(listed_prices)
        hints[host.pk] = PriceHint(
            target_percent=target_percent,
            unit=host.unit,
            fills=len(prices),
            suggested=fill_price_for_target(prices, target_percent) if enough else None,
            current=host.price_per_unit_hour,
            median_fill=None if middle is None else quantize_price(middle),
            lowest_fill=min(prices, default=None),
            highest_fill=max(prices, default=None),
            median_listed=None if listed_middle is None else quantize_price(listed_middle),
            listed=len(listed_prices),
            region_code=host.region_code,
            model_name=gettext("CPU") if host.cpu_only else host.model_name,
        )
    return hints


# --- Over time --------------------------------------------------------------------------------


def supplier_analytics(
    *,
    organization_id: int,
    range_: AnalyticsRange,
    target_percent: int = TARGET_OCCUPANCY_DEFAULT,
    host_id: int | None = None,
    now: dt.datetime | None = None,
) -> SupplierAnalytics:
    """Utilization, idle rate, sold unit-hours and earnings per bucket for each of the
    organization's hosts (or only `host_id`, which the caller has checked the person may see) and
    for all together, with a price hint per host. Six queries whatever the number of hosts."""
    now = now or timezone.now()
    starts = range_.bucket_starts(now)
    start = starts[0]
    ends = [*starts[1:], now]
    hosts = _host_facts(organization_id=organization_id, host_id=host_id)
    host_ids = [host.pk for host in hosts]
    sold = _sold_and_earned(
        organization_id=organization_id,
        host_ids=None if host_id is None else host_ids,
        range_=range_,
        start=start,
        now=now,
    )
    measured = _measured_utilization(host_ids=host_ids, now=now)
    hints = _price_hints(hosts=hosts, organization_id=organization_id, target_percent=target_percent, now=now)
    per_host = []
    overall = [Usage() for _ in starts]
    for host in hosts:
        points = []
        for index, (bucket_start, bucket_end) in enumerate(zip(starts, ends, strict=True)):
            sold_seconds, earned = sold.get((host.pk, bucket_start), (0, ZERO))
            listed = max(_listed_unit_seconds(host, bucket_start, bucket_end), sold_seconds)
            usage = Usage(sold_seconds, listed, earned)
            points.append(Point(bucket_start, usage))
            overall[index] += usage
        per_host.append(
            HostAnalytics(
                host_id=host.pk,
                name=host.name,
                region_code=host.region_code,
                unit=host.unit,
                capacity_units=host.capacity_units,
                listed_now=host.listed_now,
                points=points,
                total=sum((point.usage for point in points), Usage()),
                measured_utilization_percent=measured.get(host.pk),
                price_hint=hints.get(host.pk),
            )
        )
    return SupplierAnalytics(
        range=range_,
        start=start,
        now=now,
        points=[Point(bucket_start, usage) for bucket_start, usage in zip(starts, overall, strict=True)],
        hosts=per_host,
        total=sum(overall, Usage()),
        credits_charged=_credits_charged(organization_id=organization_id, start=start, now=now),
        target_percent=target_percent,
    )


# --- Why not rented ---------------------------------------------------------------------------

DEMAND_WINDOW = dt.timedelta(days=7)
ENERGY_NOTABLE = Decimal("1.10")  # more than 10% above the median energy is worth saying
STANDINGS_SHOWN = 200


@dataclass(frozen=True)
class _MarketOffer:
    pk: int
    instance_type_id: int
    region_id: int
    price_per_hour: Decimal
    reliability: Decimal | None
    energy_kwh_per_hour: Decimal


@dataclass(frozen=True)
class OfferStanding:
    """Where one of the supplier's listed offers stands against comparable offers: the other listed
    offers of the same instance type in the same region (and, for context, in other regions)."""

    offer_id: int
    host_id: int
    host_name: str
    instance_type_name: str
    region_code: str
    available_count: int
    price_per_hour: Decimal
    verified: bool
    reliability: Decimal | None
    energy_kwh_per_hour: Decimal
    comparables: int
    cheaper: int  # comparables priced below this offer
    cheapest: Decimal | None
    median_price: Decimal | None
    median_reliability: Decimal | None
    median_energy: Decimal | None
    other_regions: int  # listed offers of the type elsewhere
    other_regions_median_price: Decimal | None
    rentals_here: int  # of the type in this region in the last DEMAND_WINDOW
    rentals_elsewhere: int
    reasons: list[str] = field(default_factory=list)

    @property
    def rank(self) -> int:
        """1 for the cheapest (ties share the better rank)."""
        return self.cheaper + 1

    @property
    def cheaper_percent(self) -> Decimal | None:
        """The share of comparable offers priced below this one, in percent."""
        if not self.comparables:
            return None
        return (Decimal(self.cheaper) * 100 / self.comparables).quantize(PERCENT_QUANTUM, ROUND_HALF_UP)

    @property
    def above_median_percent(self) -> Decimal | None:
        return _percent_above(self.price_per_hour, self.median_price)

    @property
    def above_cheapest_percent(self) -> Decimal | None:
        return _percent_above(self.price_per_hour, self.cheapest)


def _percent_above(value: Decimal, reference: Decimal | None) -> Decimal | None:
    if reference is None or reference <= 0:
        return None
    return ((value - reference) * 100 / reference).quantize(PERCENT_QUANTUM, ROUND_HALF_UP)


def _median_without(ordered: list[Decimal], own: Decimal | None) -> Decimal | None:
    """The median of the sorted `ordered` with one occurrence of `own` taken out (when present)."""
    if own is not None:
        index = bisect_left(ordered, own)
        if index < len(ordered) and ordered[index] == own:
            return median(ordered[:index] + ordered[index + 1 :])
    return median(ordered)


def _standing_reasons(standing: OfferStanding) -> list[str]:
    """Plain-language reasons a buyer may pass this offer by, most telling first."""
    reasons = []
    above = standing.above_median_percent
    if standing.comparables and above is not None and above >= 1:
        reasons.append(
            gettext("Priced %(percent)s%% above the median of %(count)s comparable offers.")
            % {"percent": above, "count": standing.comparables}
        )
    elif standing.comparables and standing.cheaper == 0:
        count = {"count": standing.comparables + 1}
        if standing.cheapest is not None and standing.cheapest > standing.price_per_hour:
            reasons.append(gettext("The cheapest of the %(count)s listed offers of this type here.") % count)
        else:
            reasons.append(
                gettext("Tied for the lowest price of the %(count)s listed offers of this type here.") % count
            )
    if not standing.verified:
        reasons.append(gettext("Not verified: buyers must opt in to unverified hosts."))
    if standing.reliability is None:
        reasons.append(gettext("Reliability not measured yet."))
    elif standing.median_reliability is not None and standing.reliability < standing.median_reliability:
        reasons.append(
            gettext("Reliability below the median (%(own)s%% against %(median)s%%).")
            % {
                "own": (standing.reliability * 100).quantize(Decimal("0.1")),
                "median": (standing.median_reliability * 100).quantize(Decimal("0.1")),
            }
        )
    if standing.median_energy and standing.energy_kwh_per_hour > standing.median_energy * ENERGY_NOTABLE:
        reasons.append(
            gettext("Uses %(percent)s%% more energy per hour than the median.")
            % {"percent": _percent_above(standing.energy_kwh_per_hour, standing.median_energy)}
        )
    if standing.rentals_here == 0:
        if standing.rentals_elsewhere:
            reasons.append(
                gettext("No rentals of this type in %(region)s in the last 7 days (%(count)s in other regions).")
                % {"region": standing.region_code, "count": standing.rentals_elsewhere}
            )
        else:
            reasons.append(gettext("No rentals of this type anywhere in the last 7 days: little demand."))
    if not standing.comparables:
        reasons.append(
            gettext("No other offer of this type in %(region)s to compare with.") % {"region": standing.region_code}
        )
    return reasons


def _own_listed_offers(*, organization_id: int, host_id: int | None) -> QuerySet[Offer]:
    offers = Offer.objects.listed().filter(host__organization_id=organization_id)
    return offers if host_id is None else offers.filter(host_id=host_id)


def offer_standings(
    *, organization_id: int, host_id: int | None = None, now: dt.datetime | None = None
) -> list[OfferStanding]:
    """ "Why not rented": each of the organization's listed offers (those with capacity left; or only
    `host_id`'s) against comparable offers, with reasons. Three queries whatever the number of
    offers: the supplier's offers, every listed offer of the same instance types, and rentals of
    those types per region in the last 7 days. Offers with the most reasons come first."""
    now = now or timezone.now()
    own = list(
        _own_listed_offers(organization_id=organization_id, host_id=host_id)
        .order_by("host__name", "instance_type__name")
        .values(
            "pk",
            "host_id",
            "host__name",
            "instance_type_id",
            "instance_type__name",
            "region_id",
            "region__code",
            "available_count",
            "price_per_hour",
            "verified",
            "reliability",
            "energy_kwh_per_hour",
        )
    )
    if not own:
        return []
    type_ids = {row["instance_type_id"] for row in own}
    market: dict[int, list[_MarketOffer]] = defaultdict(list)
    for pk, type_id, region_id, price, reliability, energy in (
        Offer.objects.listed()
        .filter(instance_type_id__in=type_ids)
        .order_by()
        .values_list("pk", "instance_type_id", "region_id", "price_per_hour", "reliability", "energy_kwh_per_hour")
    ):
        market[type_id].append(_MarketOffer(pk, type_id, region_id, price, reliability, energy))
    rentals: dict[tuple[int, int], int] = {}
    for type_id, region_id, count in (
        Instance.objects.filter(instance_type_id__in=type_ids, created_at__gte=now - DEMAND_WINDOW, created_at__lt=now)
        .order_by()
        .values("instance_type_id", "host__region_id")
        .annotate(count=Count("pk"))
        .values_list("instance_type_id", "host__region_id", "count")
    ):
        rentals[(type_id, region_id)] = count
    rentals_by_type: dict[int, int] = defaultdict(int)
    for (type_id, _region), count in rentals.items():
        rentals_by_type[type_id] += count
    groups = _market_groups(market)
    standings = []
    for row in own:
        type_id, region_id = row["instance_type_id"], row["region_id"]
        same = groups.get((type_id, region_id), _Group())
        price = row["price_per_hour"]
        in_same = row["pk"] in same.offer_ids  # it is, unless it sold out between the two reads
        elsewhere = [offer.price_per_hour for offer in market[type_id] if offer.region_id != region_id]
        here = rentals.get((type_id, region_id), 0)
        standing = OfferStanding(
            offer_id=row["pk"],
            host_id=row["host_id"],
            host_name=row["host__name"],
            instance_type_name=row["instance_type__name"],
            region_code=row["region__code"],
            available_count=row["available_count"],
            price_per_hour=price,
            verified=row["verified"],
            reliability=row["reliability"],
            energy_kwh_per_hour=row["energy_kwh_per_hour"],
            comparables=len(same.prices) - (1 if in_same else 0),
            cheaper=bisect_left(same.prices, price),
            cheapest=_cheapest_without(same.prices, price if in_same else None),
            median_price=_quantized(_median_without(same.prices, price if in_same else None)),
            median_reliability=_median_without(same.reliabilities, row["reliability"] if in_same else None),
            median_energy=_median_without(same.energies, row["energy_kwh_per_hour"] if in_same else None),
            other_regions=len(elsewhere),
            other_regions_median_price=_quantized(median(elsewhere)),
            rentals_here=here,
            rentals_elsewhere=rentals_by_type[type_id] - here,
        )
        standings.append(replace(standing, reasons=_standing_reasons(standing)))
    standings.sort(key=lambda s: (-len(s.reasons), -(s.above_median_percent or 0), s.host_name))
    return standings


@dataclass
class _Group:
    """The listed offers of one instance type in one region, each figure sorted."""

    offer_ids: set[int] = field(default_factory=set)
    prices: list[Decimal] = field(default_factory=list)
    reliabilities: list[Decimal] = field(default_factory=list)
    energies: list[Decimal] = field(default_factory=list)


def _market_groups(market: dict[int, list[_MarketOffer]]) -> dict[tuple[int, int], _Group]:
    groups: dict[tuple[int, int], _Group] = defaultdict(_Group)
    for offers in market.values():
        for offer in offers:
            group = groups[(offer.instance_type_id, offer.region_id)]
            group.offer_ids.add(offer.pk)
            group.prices.append(offer.price_per_hour)
            group.energies.append(offer.energy_kwh_per_hour)
            if offer.reliability is not None:
                group.reliabilities.append(offer.reliability)
    for group in groups.values():
        group.prices.sort()
        group.reliabilities.sort()
        group.energies.sort()
    return groups


def _cheapest_without(ordered: list[Decimal], own: Decimal | None) -> Decimal | None:
    """The lowest of the sorted `ordered` once one occurrence of `own` is taken out."""
    if own is not None and ordered and ordered[0] == own:
        return ordered[1] if len(ordered) > 1 else None
    return ordered[0] if ordered else None


def _quantized(value: Decimal | None) -> Decimal | None:
    return None if value is None else quantize_price(value)
