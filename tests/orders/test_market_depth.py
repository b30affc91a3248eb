"""Market depth: the public order book per instance type and region (page and API), its recent fills
and spot clearing level, and the staff market overview (supply, demand, gross volume, take)."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time

from billing.ledger import platform_account
from billing.models import LedgerAccount
from billing.selectors import account_balance
from marketplace import capacity
from marketplace.models import Offer, Region, Zone
from marketplace.moderation import host_delist
from orders import market_depth
from orders.candidates import active_holdings
from orders.models import Instance
from suppliers.offers import host_capacity_spec, instance_type_shape
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data

from .conftest import order, usage_paid

pytestmark = pytest.mark.django_db

L4 = "l4-24g.1x"


@pytest.fixture
def staff(db):
    return UserFactory(email="staff@example.com", is_staff=True, credit=0)


def l4(organization, price: str, *, region: str = "us-east", **options):
    """An L4 host of four l4-24g.1x slots at `price` each per hour (its spot floor: half that)."""
    data = l4_host_data(
        price_per_unit_hour=Decimal(price),
        region=Region.objects.get(code=region),
        zone=Zone.objects.get(code=f"{region}-a"),
    )
    return HostFactory(organization=organization, **data, **options)


def offer_of(host, instance_type: str = L4) -> Offer:
    return Offer.objects.get(host=host, instance_type__name=instance_type)


@pytest.fixture
def market(supplier_org, other_supplier_org, staff):
    """us-east L4 hosts at $0.40 (two of them), $0.50, and, none of which may show: an unapproved
    one at $0.30, an unverified one at $0.35, a delisted one at $0.32, one fully rented at $0.45;
    and one in us-west at $0.20."""
    hosts = {
        "a": l4(supplier_org, "0.40"),
        "b": l4(supplier_org, "0.50"),
        "c": l4(other_supplier_org, "0.40"),
        "unapproved": l4(supplier_org, "0.30", approved=False),
        "unverified": l4(other_supplier_org, "0.35", verified=False),
        "delisted": l4(other_supplier_org, "0.32"),
        "full": l4(supplier_org, "0.45"),
        "west": l4(supplier_org, "0.20", region="us-west"),
    }
    host_delist(host=hosts["delisted"], reason="Overheating reports", staff=staff)
    renter = UserFactory(email="secret-renter@example.com")
    order(renter, instance_type=None, offer=offer_of(hosts["full"]).pk, count=4)
    return hosts


def test_levels_count_only_listed_verified_capacity_cheapest_first(market):
    depth = market_depth.market_depth(
        instance_type=offer_of(market["a"]).instance_type, region=Region.objects.get(code="us-east")
    )
    assert [(lv.price_per_hour, lv.available, lv.cumulative, lv.offers) for lv in depth.levels] == [
        (Decimal("0.400000"), 8, 8, 2),
        (Decimal("0.500000"), 4, 12, 1),
    ]
    assert depth.levels[0].offer_id in {offer_of(market["a"]).pk, offer_of(market["c"]).pk}
    assert (depth.total_available, depth.level_count) == (12, 2)


def test_summary_lists_each_type_and_region_with_its_cheapest_price(market):
    rows = {(row.instance_type, row.region): row for row in market_depth.market_summary()}
    assert (rows[(L4, "us-east")].cheapest_per_hour, rows[(L4, "us-east")].available) == (Decimal("0.400000"), 12)
    assert (rows[(L4, "us-west")].cheapest_per_hour, rows[(L4, "us-west")].available) == (Decimal("0.200000"), 4)
    assert market_depth.market_default_selection(list(rows.values())) == (L4, "us-east")
    assert market_depth.market_default_selection(list(rows.values()), region="us-west") == (L4, "us-west")


def test_recent_fills_show_price_pricing_and_count_but_no_buyer(market, api_client):
    response = api_client.get("/api/v1/market/depth/", {"instance_type": L4, "region": "us-east"})
    assert response.status_code == 200
    body = response.json()
    assert [(f["pricing"], f["price_per_hour"], f["count"]) for f in body["recent_fills"]] == [
        ("on_demand", "0.450000", 4)
    ]
    assert set(body["recent_fills"][0]) == {"at", "pricing", "price_per_hour", "count"}
    assert "secret-renter" not in response.content.decode()
    page = api_client.get(reverse("market_depth"), {"instance_type": L4, "region": "us-east"}).content.decode()
    assert "secret-renter" not in page and "0.4500" in page


def test_api_shape(market, api_client):
    body = api_client.get("/api/v1/market/depth/", {"instance_type": L4, "region": "us-east"}).json()
    assert set(body) == {
        "instance_type",
        "region",
        "currency",
        "as_of",
        "total_available",
        "level_count",
        "levels",
        "fills_since",
        "recent_fills",
        "spot",
    }
    assert (body["instance_type"], body["region"], body["currency"]) == (L4, "us-east", "USD")
    assert [(lv["price_per_hour"], lv["available"], lv["cumulative"]) for lv in body["levels"]] == [
        ("0.400000", 8, 8),
        ("0.500000", 4, 12),
    ]
    # Spot: every host's room is free, so the cheapest floor (half of $0.40) clears.
    assert body["spot"]["clearing_bid_per_hour"] == body["spot"]["floor_per_hour"] == "0.200000"
    assert body["spot"]["free_at_floor"] == 12 and body["spot"]["running"] == 0
    assert body["spot"]["fills"] == {"count": 0, "min_per_hour": None, "median_per_hour": None, "max_per_hour": None}


@pytest.mark.parametrize(
    ("query", "status", "code", "field"),
    [
        ({"instance_type": "h999.1x", "region": "us-east"}, 404, "unknown_instance_type", "instance_type"),
        ({"instance_type": L4, "region": "mars-1"}, 404, "unknown_region", "region"),
        ({"instance_type": "", "region": "us-east"}, 404, "unknown_instance_type", "instance_type"),
        ({"instance_type": "l4\x00", "region": "us-east"}, 404, "unknown_instance_type", "instance_type"),
        ({"instance_type": L4, "region": "us\u202eeast"}, 404, "unknown_region", "region"),
        ({"region": "us-east"}, 400, "invalid", "instance_type"),
        ({"instance_type": L4, "region": "us-east", "price": "1"}, 400, "unknown_parameter", "price"),
    ],
)
def test_api_bad_parameters_are_a_4xx_with_a_code(api_client, query, status, code, field):
    response = api_client.get("/api/v1/market/depth/", query)
    assert response.status_code == status
    assert response.json()["code"] == code and field in response.json()["fields"]


def test_spot_clearing_with_running_spot_bids(supplier_org, buyer):
    host = l4(supplier_org, "0.40", region="eu-central")  # floor: half the price, $0.20
    region = Region.objects.get(code="eu-central")
    instance_type = offer_of(host).instance_type
    spot = market_depth.spot_clearing(
        instance_type=instance_type, region=region, since=timezone.now() - dt.timedelta(hours=1)
    )
    assert (spot.clearing_bid_per_hour, spot.floor_per_hour, spot.free_at_floor) == (
        Decimal("0.200000"),
        Decimal("0.200000"),
        4,
    )

    # given the host full of spot at bids of $0.30 and $0.25
    order(buyer, pricing="spot", max_price_per_hour=Decimal("0.30"), count=2, region="eu-central")
    order(buyer, pricing="spot", max_price_per_hour=Decimal("0.25"), count=2, region="eu-central")
    spot = market_depth.spot_clearing(
        instance_type=instance_type, region=region, since=timezone.now() - dt.timedelta(hours=1)
    )
    # then one step above the lowest running bid takes an instance (it preempts a $0.25 one)
    assert spot.clearing_bid_per_hour == Decimal("0.250001")
    assert (spot.floor_per_hour, spot.free_at_floor) == (Decimal("0.200000"), 0)
    assert (spot.lowest_running_bid_per_hour, spot.running) == (Decimal("0.250000"), 4)
    assert spot.fills == market_depth.SpotFills(
        count=4,
        min_per_hour=Decimal("0.250000"),
        median_per_hour=Decimal("0.275000"),
        max_per_hour=Decimal("0.300000"),
    )
    # and the clearing bid is what the placement rules accept: one step less is refused
    spec, holdings = _host_maths(host)
    shape = instance_type_shape(instance_type)
    assert capacity.plan_placement(spec, holdings, [shape], spot_bid=Decimal("0.250001")) is not None
    assert capacity.plan_placement(spec, holdings, [shape], spot_bid=Decimal("0.250000")) is None

    # given on-demand demand that preempts the spot and takes the whole host
    order(buyer, count=4, region="eu-central")
    spot = market_depth.spot_clearing(
        instance_type=instance_type, region=region, since=timezone.now() - dt.timedelta(hours=1)
    )
    assert spot.clearing_bid_per_hour is None  # no bid can get one: the committed capacity is full
    assert (spot.floor_per_hour, spot.free_at_floor, spot.running) == (Decimal("0.200000"), 0, 0)


def _host_maths(host):
    return host_capacity_spec(host), active_holdings([host.pk])[host.pk]


def test_weighted_median_and_lowest_winning_bid_edges():
    assert market_depth.weighted_median([(Decimal("1"), 1)]) == Decimal("1.000000")
    assert market_depth.weighted_median([(Decimal("1"), 1), (Decimal("3"), 1)]) == Decimal("2.000000")
    assert market_depth.weighted_median([(Decimal("1"), 2), (Decimal("5"), 1)]) == Decimal("1.000000")
    spec = capacity.HostSpec(
        capacity=capacity.Resources.of(vcpus=4), policy=capacity.SlicingPolicy.FINE, primary="vcpus"
    )
    shape = capacity.Shape(name="one", resources=capacity.Resources.of(vcpus=1))
    spot = [
        capacity.Holding(key=i, claim=capacity.Resources.of(vcpus=1), spot_bid=Decimal(bid))
        for i, bid in enumerate(["0.5", "0.3", "0.3", "0.9"])
    ]
    assert market_depth.lowest_winning_bid(spec, spot, shape, floor=Decimal("0.1")) == Decimal("0.300001")
    assert market_depth.lowest_winning_bid(spec, spot, shape, floor=Decimal("0.6")) == Decimal("0.600000")
    assert market_depth.lowest_winning_bid(spec, spot[:3], shape, floor=Decimal("0.1")) == Decimal("0.1")
    on_demand = [capacity.Holding(key=i, claim=capacity.Resources.of(vcpus=1)) for i in range(4)]
    assert market_depth.lowest_winning_bid(spec, on_demand, shape, floor=Decimal("0.1")) is None


def test_anonymous_visitors_see_the_page_defaulting_to_the_most_listed_type(market, client):
    response = client.get(reverse("market_depth"))
    assert response.status_code == 200
    depth = response.context["depth"]
    assert (depth.instance_type.name, depth.region.code) == (L4, "us-east")
    page = response.content.decode()
    assert f'<option value="{L4}" selected>' in page and '<option value="us-east" selected>' in page
    assert 'id="depth-levels"' in page and 'id="depth-fills"' in page and "chart.umd.min.js" in page
    # every price level links to the search for its offers at that price or cheaper, and to one to rent
    search = f"{reverse('offers')}?instance_type={L4}&amp;region=us-east&amp;max_price_per_hour=0.400000"
    assert search in page
    assert reverse("offer_detail", args=[depth.levels[0].offer_id]) in page
    # the summary links each type x region into its depth
    assert f"{reverse('market_depth')}?instance_type={L4}&amp;region=us-west" in page
    # and nav has the link
    assert f'href="{reverse("market_depth")}"' in page


def test_a_level_link_finds_the_offers_at_that_price(market, client):
    listed = client.get(
        reverse("offers"),
        {"instance_type": L4, "region": "us-east", "max_price_per_hour": "0.400000", "ordering": "price_per_hour"},
    )
    assert {offer.pk for offer in listed.context["page"]} == {offer_of(market["a"]).pk, offer_of(market["c"]).pk}


def test_page_refuses_a_choice_outside_the_catalog(market, client):
    response = client.get(reverse("market_depth"), {"instance_type": "h999.1x", "region": "us-east"})
    assert response.status_code == 400
    assert response.context["depth"] is None and "instance_type" in response.context["form"].errors
    control = client.get(reverse("market_depth"), {"instance_type": L4, "region": "us\x00east"})
    assert control.status_code == 400


def test_page_with_nothing_listed_shows_an_empty_market(client):
    response = client.get(reverse("market_depth"))
    assert response.status_code == 200 and response.context["depth"] is None
    chosen = client.get(reverse("market_depth"), {"instance_type": L4, "region": "us-east"})
    assert chosen.status_code == 200 and chosen.context["depth"].levels == []
    type_only = client.get(reverse("market_depth"), {"instance_type": L4})
    assert type_only.status_code == 200 and type_only.context["depth"] is None
    assert "Nothing is listed for this choice" in type_only.content.decode()


def _page_queries(client, query: dict) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("market_depth"), query)
    assert response.status_code == 200
    return len(captured)


def test_page_and_api_queries_do_not_grow_with_hosts(
    supplier_org, buyer, client, api_client, django_assert_max_num_queries
):
    query = {"instance_type": L4, "region": "us-east"}
    for price in ("0.40", "0.41"):
        l4(supplier_org, price)
    order(buyer, pricing="spot", max_price_per_hour=Decimal("0.30"))
    few = _page_queries(client, query)
    for n in range(12):
        host = l4(OrganizationFactory(), f"0.{42 + n}")
        if n % 3 == 0:
            order(buyer, instance_type=None, offer=offer_of(host).pk, count=2)
    order(buyer, pricing="spot", max_price_per_hour=Decimal("0.31"), count=3)
    many = _page_queries(client, query)
    assert many == few
    response = client.get(reverse("market_depth"), query)
    assert len(response.context["depth"].levels) == 14
    # names and codes to choose from, the summary, the two names, the levels and their totals, the
    # fills, the spot hosts with their holdings, running spot bids and spot fills
    with django_assert_max_num_queries(12):
        client.get(reverse("market_depth"), query)
    with django_assert_max_num_queries(9):
        assert api_client.get("/api/v1/market/depth/", query).status_code == 200


def test_market_overview_is_for_staff_only(client, buyer, staff):
    url = reverse("market_overview")
    anonymous = client.get(url)
    assert anonymous.status_code == 302 and reverse("accounts:login") in anonymous["Location"]
    client.force_login(buyer)
    assert client.get(url).status_code == 403
    client.force_login(staff)
    assert client.get(url).status_code == 200
    assert f'href="{url}"' in client.get(reverse("market_depth")).content.decode()  # staff nav


def test_market_overview_numbers_follow_the_ledger(client, staff, buyer, supplier_org):
    l4(supplier_org, "0.40")  # us-east: the first instance goes here, the cheapest
    dearer = l4(supplier_org, "0.50", region="us-west")
    first = order(buyer).instances.get()
    second = order(buyer, instance_type=None, offer=offer_of(dearer).pk).instances.get()
    with freeze_time(timezone.now() - dt.timedelta(days=10)):
        old = usage_paid(first, 7200)  # $0.80, settled ten days ago
    usage_paid(first, 3600)  # $0.40, fee $0.06
    usage_paid(second, 1800)  # $0.25, fee $0.0375
    Instance.objects.filter(pk=second.pk).update(status="failed")

    overview = market_depth.market_overview()
    windows = {w.key: (w.gross, w.take) for w in overview.windows}
    assert windows["24h"] == windows["7d"] == (Decimal("0.650000"), Decimal("0.097500"))
    assert windows["30d"] == (Decimal("1.450000"), Decimal("0.217500"))
    # the take is what settlement posted to platform revenue
    assert windows["30d"][1] == account_balance(platform_account(LedgerAccount.Kind.PLATFORM_REVENUE))
    assert overview.days[-1].gross == Decimal("0.650000") and len(overview.days) == 30
    old_day = old.settled_by.created_at.astimezone(dt.UTC).date()
    assert next(d for d in overview.days if d.day == old_day).gross == Decimal("0.800000")
    rows = {(row.instance_type, row.region): row for row in overview.rows}
    east = rows[(L4, "us-east")]
    assert (east.rented, east.free, east.listed, east.fill_rate) == (1, 3, 4, Decimal("0.2500"))
    assert (east.placed_30d, east.failed_30d, east.gross_30d, east.take_30d) == (
        1,
        0,
        Decimal("1.200000"),
        Decimal("0.180000"),
    )
    west = rows[(L4, "us-west")]
    assert (west.rented, west.placed_30d, west.failed_30d, west.gross_30d) == (0, 1, 1, Decimal("0.250000"))

    client.force_login(staff)
    page = client.get(reverse("market_overview")).content.decode()
    assert 'id="market-volume"' in page and "$1.45" in page and "25.0%" in page
