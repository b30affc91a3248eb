"""Market depth: the order book of listed capacity per instance type and region, its recent fills
and spot clearing level (public), and the staff overview of supply, demand and gross volume.

Read only. Every figure is a grouped query (GROUP BY) or a fixed number of reads, whatever the
number of hosts, offers and instances. The one computation in memory is the spot clearing bid: the
placement maths over the hosts a spot order of one type in one region could use, read in two
queries, as a spot order itself reads them (`orders.candidates`).

Public figures show listed offers as search shows them by default: offers with capacity left and
not past their end, of verified hosts (`Offer.verified`). Offers exist only for hosts that can be
sold (approved, of an approved supplier, agent not offline, no inventory mismatch, not in
maintenance: `suppliers.offers`), so unapproved and delisted hosts never appear. Recent fills name
no buyer, order or host: a fill is a time, a pricing model, a price and a count.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.db.models import Count, DecimalField, Min, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone
from django.utils.translation import gettext

from billing.models import UsageRecord
from billing.rating import charge_for, split
from billing.selectors import usage_charge_and_fee_in_sql
from marketplace import capacity
from marketplace.databases import read_alias
from marketplace.errors import NotFound
from marketplace.models import InstanceType, Offer, Region
from marketplace.money import PRICE_DIGITS, PRICE_PLACES, PRICE_QUANTUM, quantize_price
from suppliers.models import Host
from suppliers.offers import host_capacity_spec, host_type_figures, instance_type_shape, type_fits_host

from .candidates import active_holdings, candidate_hosts
from .errors import OrderErrorCode
from .models import Allocation, Instance, InstanceStatus, Pricing
from .requests import OrderTarget

MAX_LEVELS = 50  # price levels listed, cheapest first; the totals cover every level
FILLS_WINDOW = dt.timedelta(hours=24)
MAX_FILLS = 50  # recent fills listed, newest first
OVERVIEW_DAYS = 30
# Catalog names and codes (`h100-80g.8x`, `us-east`): anything else names nothing and is not looked up.
CATALOG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
OVERVIEW_WINDOWS = (("24h", dt.timedelta(hours=24)), ("7d", dt.timedelta(days=7)), ("30d", dt.timedelta(days=30)))


# --- public: the order book -------------------------------------------------------------------


@dataclass(frozen=True)
class PriceLevel:
    """Listed instances at one price per instance-hour."""

    price_per_hour: Decimal
    available: int  # instances that can be ordered at this price
    cumulative: int  # instances at this price or cheaper
    offers: int  # offers (host x type) at this price
    offer_id: int  # one of them (the lowest id), to rent from


@dataclass(frozen=True)
class Fill:
    """Instances an order got in the type and region, at one agreed price (no buyer, order or host)."""

    at: dt.datetime
    pricing: str
    price_per_hour: Decimal
    count: int


@dataclass(frozen=True)
class SpotFills:
    """Bids of the spot instances placed in the window."""

    count: int
    min_per_hour: Decimal | None
    median_per_hour: Decimal | None
    max_per_hour: Decimal | None


@dataclass(frozen=True)
class SpotClearing:
    """What a spot bid for one instance meets now (see `spot_clearing`)."""

    clearing_bid_per_hour: Decimal | None
    floor_per_hour: Decimal | None
    free_at_floor: int
    lowest_running_bid_per_hour: Decimal | None
    running: int
    fills: SpotFills


@dataclass(frozen=True)
class MarketDepth:
    instance_type: InstanceType
    region: Region
    levels: list[PriceLevel]
    total_available: int  # over every level, also those past MAX_LEVELS
    level_count: int
    recent_fills: list[Fill]
    fills_since: dt.datetime
    spot: SpotClearing
    as_of: dt.datetime


@dataclass(frozen=True)
class MarketSummaryRow:
    """One instance type in one region: its cheapest listed price and what is listed."""

    instance_type: str
    region: str
    cheapest_per_hour: Decimal
    available: int
    offers: int


def public_offers() -> QuerySet[Offer]:
    """Offers search shows by default: listed now, of verified hosts (from the read replica, if any)."""
    return Offer.objects.using(read_alias()).listed().filter(verified=True)


def market_instance_type_names() -> list[str]:
    """Every active instance type's name, in catalog order (what the page offers to choose)."""
    return list(InstanceType.objects.using(read_alias()).active().values_list("name", flat=True))


def market_region_codes() -> list[str]:
    return list(Region.objects.using(read_alias()).order_by("code").values_list("code", flat=True))


def market_depth_target(*, instance_type: str, region: str) -> tuple[InstanceType, Region]:
    """The active instance type and the region these names name. NotFound (404) with the code
    `unknown_instance_type` or `unknown_region` otherwise; a name in characters no catalog name uses
    (control characters included) names nothing and is not looked up."""
    found_type = None
    if CATALOG_NAME.fullmatch(instance_type):
        found_type = (
            InstanceType.objects.using(read_alias())
            .active()
            .select_related("accelerator_model")
            .filter(name=instance_type)
            .first()
        )
    if found_type is None:
        raise NotFound(
            gettext("No active instance type is named %(name)r.") % {"name": instance_type},
            code=OrderErrorCode.UNKNOWN_INSTANCE_TYPE,
            fields={"instance_type": [gettext("Unknown instance type.")]},
        )
    found_region = None
    if CATALOG_NAME.fullmatch(region):
        found_region = Region.objects.using(read_alias()).filter(code=region).first()
    if found_region is None:
        raise NotFound(
            gettext("No region has the code %(code)r.") % {"code": region},
            code=OrderErrorCode.UNKNOWN_REGION,
            fields={"region": [gettext("Unknown region.")]},
        )
    return found_type, found_region


def market_summary() -> list[MarketSummaryRow]:
    """Every instance type x region with listed offers: cheapest price, instances listed, offers.
    One grouped query; rows by type name, then region code."""
    rows = (
        public_offers()
        .order_by()
        .values("instance_type__name", "region__code")
        .annotate(cheapest=Min("price_per_hour"), available=Sum("available_count"), offers=Count("id"))
        .order_by("instance_type__name", "region__code")
    )
    return [
        MarketSummaryRow(
            instance_type=row["instance_type__name"],
            region=row["region__code"],
            cheapest_per_hour=row["cheapest"],
            available=row["available"],
            offers=row["offers"],
        )
        for row in rows
    ]


def market_default_selection(
    summary: list[MarketSummaryRow], *, instance_type: str | None = None, region: str | None = None
) -> tuple[str, str] | None:
    """The type and region the page shows when the visitor chose none or one of them: the type
    with the most instances listed (in the chosen region, if one), then that type's region with
    the most listed. None when nothing matching is listed and a name is missing."""
    if instance_type and region:
        return instance_type, region
    rows = [
        r
        for r in summary
        if (not region or r.region == region) and (not instance_type or r.instance_type == instance_type)
    ]
    if not rows:
        return None
    if not instance_type:
        by_type: dict[str, int] = defaultdict(int)
        for row in rows:
            by_type[row.instance_type] += row.available
        instance_type = min(by_type, key=lambda name: (-by_type[name], name))
    if not region:
        region = min(
            (r for r in rows if r.instance_type == instance_type), key=lambda r: (-r.available, r.region)
        ).region
    return instance_type, region


def market_depth(*, instance_type: InstanceType, region: Region, now: dt.datetime | None = None) -> MarketDepth:
    """The order book of one instance type in one region (see the module docstring for what is
    listed): price levels cheapest first with the instances available at each and cumulatively,
    the fills of the last 24 hours, and the spot clearing level. A fixed number of queries."""
    now = now or timezone.now()
    offers = public_offers().filter(instance_type=instance_type, region=region).order_by()
    grouped = (
        offers.values("price_per_hour")
        .annotate(available=Sum("available_count"), offer_count=Count("id"), offer_id=Min("id"))
        .order_by("price_per_hour")[:MAX_LEVELS]
    )
    levels: list[PriceLevel] = []
    cumulative = 0
    for row in grouped:
        cumulative += row["available"]
        levels.append(
            PriceLevel(
                price_per_hour=row["price_per_hour"],
                available=row["available"],
                cumulative=cumulative,
                offers=row["offer_count"],
                offer_id=row["offer_id"],
            )
        )
    totals = offers.aggregate(available=Sum("available_count"), levels=Count("price_per_hour", distinct=True))
    since = now - FILLS_WINDOW
    return MarketDepth(
        instance_type=instance_type,
        region=region,
        levels=levels,
        total_available=totals["available"] or 0,
        level_count=totals["levels"],
        recent_fills=recent_fills(instance_type=instance_type, region=region, since=since),
        fills_since=since,
        spot=spot_clearing(instance_type=instance_type, region=region, since=since),
        as_of=now,
    )


def _fills(instance_type: InstanceType, region: Region, since: dt.datetime) -> QuerySet[Instance]:
    """Instances placed since `since` of the type on hosts in the region."""
    return (
        Instance.objects.using(read_alias())
        .filter(instance_type=instance_type, host__region=region, created_at__gte=since)
        .order_by()
    )


# The price per instance-hour agreed at order (with accelerators, for one started in no-GPU mode since).
AGREED_PRICE = Coalesce(
    "accelerated_price_per_hour",
    "price_per_hour",
    output_field=DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_PLACES),
)


def recent_fills(*, instance_type: InstanceType, region: Region, since: dt.datetime) -> list[Fill]:
    """Orders filled in the type and region since `since`, newest first (at most MAX_FILLS): per
    order and agreed price, when its first instance was placed, the pricing model and how many
    instances. One grouped query; nothing that names the buyer, the order or the host."""
    rows = (
        _fills(instance_type, region, since)
        .values("order_id", "pricing", agreed=AGREED_PRICE)
        .annotate(count=Count("id"), at=Min("created_at"))
        .order_by("-at", "-order_id")[:MAX_FILLS]
    )
    return [
        Fill(at=row["at"], pricing=row["pricing"], price_per_hour=row["agreed"], count=row["count"]) for row in rows
    ]


def spot_clearing(*, instance_type: InstanceType, region: Region, since: dt.datetime) -> SpotClearing:
    """What a spot bid for one instance of the type in the region meets now, by the rules spot
    orders are placed by (`marketplace.capacity.plan_placement`) on the hosts a spot order could use
    (`orders.candidates.candidate_hosts`: sellable, verified, no maintenance ahead):

    - `floor_per_hour`: the lowest minimum bid among those hosts (each host's spot floor for the
      type); a bid below it is refused everywhere (`bid_too_low`).
    - `clearing_bid_per_hour`: the lowest bid that gets one instance now. On each host: its floor
      when one instance fits in capacity no instance is running on; otherwise one price step
      ($0.000001) above the highest bid among the running spot instances it would preempt, as a
      spot bid preempts only lower bids, lowest first. The lowest over the hosts; None when no
      host could take one even by preempting every spot instance (its committed capacity is full).
    - `free_at_floor`: instances that fit in capacity nothing runs on, summed over the hosts: what
      bids at each host's floor get without preempting anyone.
    - `lowest_running_bid_per_hour` and `running`: the running spot instances of the type in the
      region (any host): the lowest bid among them, and how many there are.
    - `fills`: bids of the spot instances of the type placed in the region since `since`: count,
      lowest, median (the middle bid; for an even count, the mean of the two middle ones), highest.
    """
    target = OrderTarget(pricing=Pricing.SPOT, count=1, instance_type=instance_type, region_id=region.pk)
    hosts = candidate_hosts(target)
    if instance_type.accelerator_model_id is None:
        hosts = hosts.filter(accelerator_model__kind="cpu")
    else:
        hosts = hosts.filter(accelerator_model_id=instance_type.accelerator_model_id)
    host_list = list(hosts)
    holdings = active_holdings([host.pk for host in host_list])
    floors: list[Decimal] = []
    clearing: list[Decimal] = []
    free = 0
    shape = instance_type_shape(instance_type)
    for host in host_list:
        if not type_fits_host(instance_type, host):
            continue
        spec = host_capacity_spec(host)
        if not capacity.is_eligible(spec, shape):
            continue
        floor = _host_spot_floor(host, instance_type)
        floors.append(floor)
        held = holdings[host.pk]
        bid = lowest_winning_bid(spec, held, shape, floor=floor)
        if bid is not None:
            clearing.append(bid)
        free += capacity.available_count(spec, [capacity.physical_footprint(h) for h in held], shape)
    running = (
        Allocation.objects.using(read_alias())
        .active()
        .filter(
            instance_type=instance_type,
            host__region=region,
            kind=capacity.HoldingKind.RUNNING,
            spot_bid__isnull=False,
        )
        .aggregate(lowest=Min("spot_bid"), count=Count("id"))
    )
    return SpotClearing(
        clearing_bid_per_hour=min(clearing, default=None),
        floor_per_hour=min(floors, default=None),
        free_at_floor=free,
        lowest_running_bid_per_hour=running["lowest"],
        running=running["count"],
        fills=spot_fills(instance_type=instance_type, region=region, since=since),
    )


def _host_spot_floor(host: Host, instance_type: InstanceType) -> Decimal:
    return host.spot_floor_for(host_type_figures(host, instance_type).price_per_hour)


def lowest_winning_bid(
    spec: capacity.HostSpec, holdings: list[capacity.Holding], shape: capacity.Shape, *, floor: Decimal
) -> Decimal | None:
    """The lowest spot bid, at least `floor`, for which `plan_placement` places one `shape` on the
    host; None when no bid does. A bid can preempt only running spot holdings bidding less, so the
    outcome changes only one price step above each of their bids: those are the bids to try."""
    steps = sorted(
        {
            bid + PRICE_QUANTUM
            for holding in holdings
            if holding.is_preemptible and (bid := holding.spot_bid) is not None and bid + PRICE_QUANTUM > floor
        }
    )
    for bid in (floor, *steps):
        if capacity.plan_placement(spec, holdings, [shape], spot_bid=bid) is not None:
            return bid
    return None


def spot_fills(*, instance_type: InstanceType, region: Region, since: dt.datetime) -> SpotFills:
    """Count, lowest, median and highest bid of the spot instances placed since `since` (one query
    grouped by bid, so it reads one row per distinct bid)."""
    rows = list(
        _fills(instance_type, region, since)
        .filter(pricing=Pricing.SPOT)
        .values(agreed=AGREED_PRICE)
        .annotate(count=Count("id"))
        .order_by("agreed")
        .values_list("agreed", "count")
    )
    count = sum(n for _, n in rows)
    if not count:
        return SpotFills(count=0, min_per_hour=None, median_per_hour=None, max_per_hour=None)
    return SpotFills(
        count=count, min_per_hour=rows[0][0], median_per_hour=weighted_median(rows), max_per_hour=rows[-1][0]
    )


def weighted_median(rows: list[tuple[Decimal, int]]) -> Decimal:
    """The median of values given as (value, how many times) sorted by value: the middle one, or
    the mean of the two middle ones for an even count (rounded to the price quantum)."""
    count = sum(n for _, n in rows)
    middle = [(count - 1) // 2, count // 2]  # zero-based positions of the middle value(s)
    picked: list[Decimal] = []
    seen = 0
    for value, n in rows:
        picked += [value for position in middle if seen <= position < seen + n]
        seen += n
    return quantize_price(sum(picked, Decimal(0)) / len(picked))


# --- staff: supply, demand and gross volume --------------------------------------------------------


@dataclass(frozen=True)
class SupplyDemandRow:
    """One instance type in one region. `free` counts the instances its listed offers (verified or
    not) can still take; a host's offers of different types share its capacity, so these are
    alternatives, not a sum of machines. `listed` = rented + free."""

    instance_type: str
    region: str
    free: int
    rented: int  # instances holding compute now (requested, provisioning, running, starting)
    placed_30d: int  # instances placed in the last 30 days
    failed_30d: int  # of those, how many failed to start
    gross_30d: Decimal
    take_30d: Decimal

    @property
    def listed(self) -> int:
        return self.rented + self.free

    @property
    def fill_rate(self) -> Decimal | None:
        """Rented / listed, as a fraction; None when nothing is listed or rented."""
        return (Decimal(self.rented) / self.listed).quantize(Decimal("0.0001")) if self.listed else None


@dataclass(frozen=True)
class VolumeWindow:
    key: str  # "24h", "7d", "30d"
    gross: Decimal
    take: Decimal


@dataclass(frozen=True)
class DayVolume:
    day: dt.date  # a UTC day
    gross: Decimal
    take: Decimal


@dataclass(frozen=True)
class MarketOverview:
    rows: list[SupplyDemandRow]
    windows: list[VolumeWindow]
    days: list[DayVolume]  # the last OVERVIEW_DAYS UTC days, oldest first, today included
    as_of: dt.datetime

    @property
    def rented(self) -> int:
        return sum(row.rented for row in self.rows)


@dataclass
class _Volume:
    gross: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(dict(OVERVIEW_WINDOWS), Decimal(0)))
    take: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(dict(OVERVIEW_WINDOWS), Decimal(0)))


def market_overview(*, now: dt.datetime | None = None) -> MarketOverview:
    """Staff: supply and demand per instance type x region, and gross volume and the platform take.

    Gross volume is what buyers were charged for usage settled in the window: each settled usage
    record's charge (seconds x rate / 3600, rounded as settlement posts it: `billing.rating`),
    compute and storage, reserved terms as their time is used, dated when settlement posted it.
    The take is the platform fee of those charges (charge x PLATFORM_TAKE_RATE, rounded the same
    way): what settlement posted to platform revenue for them. Windows are rolling (last 24 hours,
    7 and 30 days); the chart's days are UTC days. Orders turned away are not recorded, so demand
    shows as instances placed and instances that failed to start. A fixed number of grouped queries."""
    now = now or timezone.now()
    free = {
        (row["instance_type__name"], row["region__code"]): row["free"]
        for row in Offer.objects.using(read_alias())
        .listed()
        .order_by()
        .values("instance_type__name", "region__code")
        .annotate(free=Sum("available_count"))
    }
    rented = {
        (row["instance_type__name"], row["host__region__code"]): row["count"]
        for row in Instance.objects.using(read_alias())
        .live()
        .order_by()
        .values("instance_type__name", "host__region__code")
        .annotate(count=Count("id"))
    }
    since = now - OVERVIEW_WINDOWS[-1][1]
    placed = {
        (row["instance_type__name"], row["host__region__code"]): (row["placed"], row["failed"])
        for row in Instance.objects.using(read_alias())
        .filter(created_at__gte=since)
        .order_by()
        .values("instance_type__name", "host__region__code")
        .annotate(placed=Count("id"), failed=Count("id", filter=Q(status=InstanceStatus.FAILED)))
    }
    volume, days = _usage_volume(now)
    keys = sorted(set(free) | set(rented) | set(placed) | set(volume))
    nothing = _Volume()
    rows = [
        SupplyDemandRow(
            instance_type=key[0],
            region=key[1],
            free=free.get(key) or 0,
            rented=rented.get(key, 0),
            placed_30d=placed.get(key, (0, 0))[0],
            failed_30d=placed.get(key, (0, 0))[1],
            gross_30d=volume.get(key, nothing).gross["30d"],
            take_30d=volume.get(key, nothing).take["30d"],
        )
        for key in keys
    ]
    windows = [
        VolumeWindow(
            key=key,
            gross=sum((v.gross[key] for v in volume.values()), Decimal(0)),
            take=sum((v.take[key] for v in volume.values()), Decimal(0)),
        )
        for key, _ in OVERVIEW_WINDOWS
    ]
    return MarketOverview(rows=rows, windows=windows, days=days, as_of=now)


def _settled_usage(since: dt.datetime) -> QuerySet[UsageRecord]:
    return (
        UsageRecord.objects.using(read_alias())
        .filter(settled_by__isnull=False, settled_by__created_at__gte=since)
        .order_by()
    )


def _usage_volume(now: dt.datetime) -> tuple[dict[tuple[str, str], _Volume], list[DayVolume]]:
    """Gross and take per (type, region) for each window, and per UTC day for the last
    OVERVIEW_DAYS days. PostgreSQL sums NUMERIC exactly in the database; SQLite's arithmetic is
    floating point, so there the rounding rule is applied in Python to the records' columns."""
    take_rate = Decimal(settings.PLATFORM_TAKE_RATE)
    first_day = now.astimezone(dt.UTC).date() - dt.timedelta(days=OVERVIEW_DAYS - 1)
    by_day = {first_day + dt.timedelta(days=i): [Decimal(0), Decimal(0)] for i in range(OVERVIEW_DAYS)}
    starts = {key: now - length for key, length in OVERVIEW_WINDOWS}
    records = _settled_usage(min(starts.values()))
    volume: dict[tuple[str, str], _Volume] = defaultdict(_Volume)
    if connection.vendor == "postgresql":
        _volume_in_sql(records, take_rate, starts, volume, by_day)
    else:
        _volume_in_python(records, take_rate, starts, volume, by_day)
    days = [DayVolume(day=day, gross=gross, take=take) for day, (gross, take) in sorted(by_day.items())]
    return dict(volume), days


def _volume_in_python(
    records: QuerySet[UsageRecord],
    take_rate: Decimal,
    starts: dict[str, dt.datetime],
    volume: dict[tuple[str, str], _Volume],
    by_day: dict[dt.date, list[Decimal]],
) -> None:
    columns = (
        "instance__instance_type__name",
        "instance__host__region__code",
        "settled_by__created_at",
        "seconds",
        "rate_per_hour",
    )
    for type_name, region_code, settled_at, seconds, rate in records.values_list(*columns):
        parts = split(charge_for(seconds, rate), take_rate)
        row = volume[(type_name, region_code)]
        for key, start in starts.items():
            if settled_at >= start:
                row.gross[key] += parts.charge
                row.take[key] += parts.fee
        day = settled_at.astimezone(dt.UTC).date()
        if day in by_day:
            by_day[day][0] += parts.charge
            by_day[day][1] += parts.fee


def _volume_in_sql(
    records: QuerySet[UsageRecord],
    take_rate: Decimal,
    starts: dict[str, dt.datetime],
    volume: dict[tuple[str, str], _Volume],
    by_day: dict[dt.date, list[Decimal]],
) -> None:
    """ROUND(x, 6) on NUMERIC rounds half away from zero: half-up for these non-negative amounts,
    as `billing.rating` rounds. The product is widened before the division (see
    `billing.selectors._host_totals_in_sql`)."""
    charge, fee = usage_charge_and_fee_in_sql(take_rate)
    sums = {}
    for key, start in starts.items():
        within = Q(settled_by__created_at__gte=start)
        sums[f"gross_{key}"] = Sum(charge, filter=within, default=Decimal(0))
        sums[f"take_{key}"] = Sum(fee, filter=within, default=Decimal(0))
    groups = ("instance__instance_type__name", "instance__host__region__code")
    for type_name, region_code, *amounts in records.values(*groups).annotate(**sums).values_list(*groups, *sums):
        target = volume[(type_name, region_code)]
        for index, key in enumerate(starts):
            target.gross[key], target.take[key] = amounts[2 * index], amounts[2 * index + 1]
    daily = (
        records.annotate(day=TruncDate("settled_by__created_at", tzinfo=dt.UTC))
        .values("day")
        .annotate(gross=Sum(charge), take=Sum(fee))
        .values_list("day", "gross", "take")
    )
    for day, gross, take in daily:
        if day in by_day:
            by_day[day] = [gross, take]
