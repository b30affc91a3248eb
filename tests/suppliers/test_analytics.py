"""Supplier analytics: utilization, idle rate, sold accelerator-hours and earnings against metered and
settled usage; price hints against known rentals; why listed offers are not rented; who sees what."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from freezegun import freeze_time

from accounts.roles import Role
from billing.ledger import supplier_payable
from billing.models import LedgerPosting, LedgerTransaction, UsageRecord
from billing.selectors import account_balance, money_sum
from billing.settlement import settle_usage
from marketplace.models import InstanceType, Region, Zone
from orders import supplier_analytics
from orders.agent import instance_agent_report
from orders.lifecycle import instance_terminate
from orders.metering import meter_usage
from orders.models import Instance, Order
from suppliers.hosts import host_set_reliability
from suppliers.models import Membership
from tests.factories import HostFactory, UserFactory, l4_host_data
from tests.orders.conftest import order

pytestmark = pytest.mark.django_db

LISTED_AT = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 3, 12, 12, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
ANALYTICS = reverse("suppliers:analytics")


def rent(buyer, host, type_name: str, *, start: dt.datetime, hours: int) -> Instance:
    """A real rental: ordered and started at `start`, metered every hour, terminated after `hours`."""
    offer = host.offers.get(instance_type__name=type_name)
    with freeze_time(start):
        instance = order(buyer, offer=offer.pk, instance_type=None).instances.get()
        instance_agent_report(instance=instance, status="running")
    for hour in range(1, hours + 1):
        with freeze_time(start + hour * HOUR):
            meter_usage()
    with freeze_time(start + hours * HOUR):
        instance_terminate(instance=instance)
    return instance


def fill(buyer, host, price: str, *, type_name: str = "l4-24g.1x", pricing: str = "on_demand", created_at=None):
    """A past rental at a known price (market data for the price hint; nothing to meter)."""
    instance_type = InstanceType.objects.get(name=type_name)
    placed = Order.objects.create(
        buyer=buyer,
        instance_type=instance_type,
        count=1,
        pricing=pricing,
        image="pytorch/pytorch:2.5.1",
        total_price_per_hour=Decimal(price),
        term_hours=168 if pricing == "reserved" else None,
    )
    return Instance.objects.create(
        order=placed,
        buyer=buyer,
        host=host,
        instance_type=instance_type,
        pricing=pricing,
        price_per_hour=Decimal(price),
        image=placed.image,
        disk_gb=instance_type.disk_gb,
        status="terminated",
        created_at=created_at or NOW - dt.timedelta(days=1),
    )


def page(user, path=ANALYTICS, **params):
    """A page as `user` sees it at NOW."""
    client = Client()
    with freeze_time(NOW):
        client.force_login(user)
        return client.get(path, params)


@pytest.fixture
def history(supplier_org, other_supplier_org, buyer):
    """Alpha's 4 x L4 host, listed from LISTED_AT, rented 3 h on 03-10 (one L4) and 2 h on 03-11
    (two L4s); Bravo's L4 host rented too (never Alpha's). Everything settled at NOW."""
    with freeze_time(LISTED_AT):
        host = HostFactory(organization=supplier_org, name="alpha-l4", **l4_host_data())
        rival = HostFactory(organization=other_supplier_org, name="bravo-l4", **l4_host_data())
    rent(buyer, host, "l4-24g.1x", start=LISTED_AT + 1 * HOUR, hours=3)
    rent(buyer, host, "l4-24g.2x", start=LISTED_AT + 44 * HOUR, hours=2)  # 03-11 20:00-22:00
    rent(buyer, rival, "l4-24g.4x", start=LISTED_AT + 30 * HOUR, hours=5)
    with freeze_time(NOW):
        settle_usage()
    assert not UsageRecord.objects.filter(settled_by__isnull=True).exists()
    return host


def test_utilization_idle_sold_hours_and_earnings_follow_metered_and_settled_usage(history, supplier_org):
    # when
    analytics = supplier_analytics.supplier_analytics(
        organization_id=supplier_org.pk, range_=supplier_analytics.RANGES["7d"], now=NOW
    )
    # then: 3 L4-hours on 03-10, 2 x 2 on 03-11, of 4 L4s listed for 60 hours
    assert [point.start.date().isoformat() for point in analytics.points][-3:] == [
        "2026-03-10",
        "2026-03-11",
        "2026-03-12",
    ]
    days = {point.start.date().isoformat(): point.usage for point in analytics.points}
    assert days["2026-03-09"].listed_unit_hours == 0 and days["2026-03-09"].utilization is None
    assert days["2026-03-10"].sold_unit_hours == Decimal(3) and days["2026-03-10"].listed_unit_hours == Decimal(96)
    assert days["2026-03-11"].sold_unit_hours == Decimal(4)
    assert days["2026-03-12"].listed_unit_hours == Decimal(48)
    total = analytics.total
    assert total.sold_unit_hours == Decimal(7) and total.listed_unit_hours == Decimal(240)
    assert total.utilization == Decimal("0.0292")  # 7 / 240
    assert total.idle == Decimal("0.9708")
    # The supplier's 85%: $0.40 x 3 h and $0.80 x 2 h, as posted to the payable.
    assert days["2026-03-10"].earned == Decimal("1.020000") and days["2026-03-11"].earned == Decimal("1.360000")
    assert total.earned == Decimal("2.380000")
    payable = supplier_payable(supplier_org)
    usage_postings = LedgerPosting.objects.filter(account=payable, transaction__kind=LedgerTransaction.Kind.USAGE)
    assert total.earned == money_sum(usage_postings) == account_balance(payable)
    assert total.earned_per_unit_hour == Decimal("0.340000")
    assert [host.name for host in analytics.hosts] == ["alpha-l4"]  # Bravo's host and its usage are not Alpha's
    assert analytics.hosts[0].total == total


def test_the_last_24_hours_are_bucketed_by_hour(history, supplier_org):
    analytics = supplier_analytics.supplier_analytics(
        organization_id=supplier_org.pk, range_=supplier_analytics.RANGES["24h"], now=NOW
    )
    assert len(analytics.points) == 24
    assert analytics.points[0].start == NOW - 23 * HOUR
    sold = {
        point.start.hour: point.usage.sold_unit_hours for point in analytics.points if point.usage.sold_unit_seconds
    }
    assert sold == {20: Decimal(2), 21: Decimal(2)}  # two L4s for an hour each
    assert analytics.total.listed_unit_hours == Decimal(92)  # 03-11 13:00 to NOW, 4 L4s
    assert analytics.total.earned == Decimal("1.360000")


def test_the_analytics_page_shows_kpis_charts_and_hosts(history, supplier):
    response = page(supplier, range="7d")
    assert response.status_code == 200
    body = response.content.decode()
    assert response.context["analytics"].total.sold_unit_hours == Decimal(7)
    assert "alpha-l4" in body and "bravo-l4" not in body
    assert "$2.38" in body  # earned, in the platform currency
    assert response.context["utilization_chart"]["format"] == "percent"
    assert response.context["earnings_chart"]["kind"] == "bar"
    assert 'data-chart="supplier-utilization-data"' in body and "vendor/chartjs" in body
    host_page = page(supplier, reverse("suppliers:host_detail", args=[history.pk]))
    assert host_page.status_code == 200
    assert host_page.context["host_analytics"].host_id == history.pk
    assert 'id="analytics"' in host_page.content.decode() and "Live offers" in host_page.content.decode()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"range": "1y"}, "range"),
        ({"range": "24H"}, "range"),
        ({"target": "20"}, "target"),
        ({"target": "96"}, "target"),
        ({"target": "eighty"}, "target"),
        ({"target": "٨٠"}, "target"),  # Arabic-Indic 80: int() would read it
        ({"target": "80.5"}, "target"),
    ],
)
def test_bad_parameters_get_a_400_page_with_a_code(supplier, params, field):
    response = page(supplier, **params)
    assert response.status_code == 400
    assert response.context["error"].code == "invalid_filter" and field in response.context["error"].fields
    assert "invalid_filter" in response.content.decode()


def test_good_parameters_and_defaults(supplier, approved_host):
    assert page(supplier).context["range"].code == "7d"
    assert page(supplier).context["target"] == 80
    day = page(supplier, range="24h", target="95")
    assert day.status_code == 200 and day.context["range"].code == "24h" and day.context["target"] == 95
    assert len(day.context["analytics"].points) == 24
    # The host page falls back to the defaults instead of failing on them.
    host_page = page(supplier, reverse("suppliers:host_detail", args=[approved_host.pk]), range="1y", target="x")
    assert host_page.status_code == 200 and host_page.context["analytics_range"].code == "7d"


def test_fill_price_for_target_is_the_share_of_rentals_at_or_above_it():
    prices = [Decimal(p) for p in ("0.46", "0.30", "0.42", "0.34", "0.38", "0.40", "0.32", "0.44", "0.36", "0.45")]
    assert supplier_analytics.fill_price_for_target(prices, 80) == Decimal("0.34")  # 8 of 10 paid 0.34 or more
    assert supplier_analytics.fill_price_for_target(prices, 50) == Decimal("0.40")
    assert supplier_analytics.fill_price_for_target(prices, 95) == Decimal("0.30")
    assert supplier_analytics.fill_price_for_target(prices[:7], 80) == Decimal("0.32")  # 6 of 7 at or above
    assert supplier_analytics.fill_price_for_target([], 80) is None


def test_the_price_hint_comes_from_recent_fills_of_the_same_model_and_region(supplier_org, other_supplier_org, buyer):
    HostFactory(organization=supplier_org, name="alpha-l4", **l4_host_data())
    rival = HostFactory(
        organization=other_supplier_org, name="bravo-l4", **l4_host_data(price_per_unit_hour=Decimal("0.35"))
    )
    elsewhere = HostFactory(
        organization=other_supplier_org,
        name="bravo-eu",
        region=Region.objects.get(code="eu-central"),
        zone=Zone.objects.get(code="eu-central-a"),
        **l4_host_data(),
    )
    for price in ("0.30", "0.32", "0.34", "0.36", "0.38", "0.40", "0.42", "0.44", "0.46"):
        fill(buyer, rival, price)
    fill(buyer, rival, "0.90", type_name="l4-24g.2x")  # 0.45 per L4-hour
    # Not counted: too old, spot bids, reserved terms, another region, another model.
    fill(buyer, rival, "0.10", created_at=NOW - dt.timedelta(days=8))
    fill(buyer, rival, "0.11", pricing="spot")
    fill(buyer, rival, "0.12", pricing="reserved")
    fill(buyer, elsewhere, "0.13")
    h100 = HostFactory(organization=other_supplier_org, name="bravo-h100")
    fill(buyer, h100, "2.00", type_name="h100-80g.1x")

    analytics = supplier_analytics.supplier_analytics(
        organization_id=supplier_org.pk, range_=supplier_analytics.RANGES["7d"], target_percent=80, now=NOW
    )
    hint = analytics.hosts[0].price_hint
    assert hint.fills == 10 and hint.enough_data
    assert hint.suggested == Decimal("0.340000")
    assert hint.median_fill == Decimal("0.390000") and hint.lowest_fill == Decimal("0.300000")
    assert hint.current == Decimal("0.400000") and hint.change_percent == Decimal(-15)
    assert hint.listed == 1 and hint.median_listed == Decimal("0.350000")  # Bravo's us-east host, not Alpha's own
    response = page(supplier_org.memberships.get(role="owner").user, target="50")
    assert response.context["analytics"].hosts[0].price_hint.suggested == Decimal("0.400000")
    assert "$0.4000" in response.content.decode()


def test_too_few_fills_is_not_enough_data(supplier_org, other_supplier_org, buyer):
    HostFactory(organization=supplier_org, name="alpha-l4", **l4_host_data())
    rival = HostFactory(organization=other_supplier_org, name="bravo-l4", **l4_host_data())
    for price in ("0.30", "0.32", "0.34", "0.36"):
        fill(buyer, rival, price)
    response = page(supplier_org.memberships.get(role="owner").user)
    hint = response.context["analytics"].hosts[0].price_hint
    assert hint.fills == 4 and not hint.enough_data and hint.suggested is None and hint.change_percent is None
    assert "not enough data (4 rentals)" in response.content.decode()


def test_why_not_rented_compares_price_reliability_energy_verification_and_demand(
    supplier_org, other_supplier_org, buyer
):
    # given: Alpha's unverified L4 host at $0.50 with a hot data centre, against three Bravo hosts
    mine = HostFactory(
        organization=supplier_org,
        name="alpha-l4",
        verified=False,
        **l4_host_data(price_per_unit_hour=Decimal("0.50"), pue=Decimal("2.00")),
    )
    host_set_reliability(host=mine, reliability=Decimal("0.95"))
    for name, price in (("bravo-1", "0.30"), ("bravo-2", "0.40"), ("bravo-3", "0.45")):
        rival = HostFactory(
            organization=other_supplier_org, name=name, **l4_host_data(price_per_unit_hour=Decimal(price))
        )
        host_set_reliability(host=rival, reliability=Decimal("0.99"))
    eu = HostFactory(
        organization=other_supplier_org,
        name="bravo-eu",
        region=Region.objects.get(code="eu-central"),
        zone=Zone.objects.get(code="eu-central-a"),
        **l4_host_data(price_per_unit_hour=Decimal("0.20")),
    )
    fill(buyer, eu, "0.20")
    # A host of Alpha's that is fully rented has nothing left to explain.
    full = HostFactory(organization=supplier_org, name="alpha-full", **l4_host_data())
    order(buyer, offer=full.offers.get(instance_type__name="l4-24g.4x").pk, instance_type=None)

    # when
    with freeze_time(NOW):
        standings = supplier_analytics.offer_standings(organization_id=supplier_org.pk)

    # then
    assert standings and {s.host_name for s in standings} == {"alpha-l4"}
    one = next(s for s in standings if s.instance_type_name == "l4-24g.1x")
    assert one.comparables == 3 and one.rank == 4 and one.cheaper_percent == 100
    assert one.cheapest == Decimal("0.300000") and one.median_price == Decimal("0.400000")
    assert one.above_median_percent == 25 and one.above_cheapest_percent == 67
    assert one.median_reliability == Decimal("0.99") and one.reliability == Decimal("0.95")
    assert one.other_regions == 1 and one.other_regions_median_price == Decimal("0.200000")
    assert one.rentals_here == 0 and one.rentals_elsewhere == 1
    assert one.reasons == [
        "Priced 25% above the median of 3 comparable offers.",
        "Not verified: buyers must opt in to unverified hosts.",
        "Reliability below the median (95.0% against 99.0%).",
        "Uses 60% more energy per hour than the median.",
        "No rentals of this type in us-east in the last 7 days (1 in other regions).",
    ]
    response = page(supplier_org.memberships.get(role="owner").user)
    body = response.content.decode()
    assert (
        "Priced 25% above the median of 3 comparable offers." in body
        and "alpha-full" not in body.split("Why not rented")[-1]
    )


def test_the_cheapest_verified_reliable_offer_says_so(supplier_org, other_supplier_org):
    mine = HostFactory(organization=supplier_org, name="alpha-l4", **l4_host_data(price_per_unit_hour=Decimal("0.20")))
    host_set_reliability(host=mine, reliability=Decimal("0.999"))
    rival = HostFactory(organization=other_supplier_org, name="bravo-1", **l4_host_data())
    host_set_reliability(host=rival, reliability=Decimal("0.99"))
    standings = supplier_analytics.offer_standings(organization_id=supplier_org.pk, host_id=mine.pk)
    one = next(s for s in standings if s.instance_type_name == "l4-24g.1x")
    assert one.rank == 1 and one.comparables == 1
    assert one.reasons[0] == "The cheapest of the 2 listed offers of this type here."
    assert not any("verified" in reason or "Reliability" in reason for reason in one.reasons)


def test_other_suppliers_never_see_each_others_hosts(history, supplier, other_supplier):
    # Bravo's analytics hold Bravo's host and usage only.
    response = page(other_supplier, range="7d")
    assert response.status_code == 200
    assert [host.name for host in response.context["analytics"].hosts] == ["bravo-l4"]
    assert "alpha-l4" not in response.content.decode()
    assert all(s.host_name == "bravo-l4" for s in response.context["standings"])
    assert response.context["analytics"].total.sold_unit_hours == Decimal(20)  # 4 L4s x 5 h
    # Alpha's host page (and its analytics section) does not exist for Bravo.
    assert page(other_supplier, reverse("suppliers:host_detail", args=[history.pk])).status_code == 404


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.ADMIN, 200), (Role.MEMBER, 200), (Role.READ_ONLY, 200), (Role.BILLING, 403)],
)
def test_analytics_need_the_hosts_area(supplier_org, approved_host, role, status):
    person = UserFactory(role="supplier")
    Membership.objects.create(organization=supplier_org, user=person, role=role)
    assert page(person).status_code == status


def test_anonymous_visitors_and_people_without_an_organization_are_sent_away(buyer):
    assert Client().get(ANALYTICS).status_code == 302
    assert page(buyer)["Location"] == reverse("suppliers:onboarding")


def test_the_page_is_a_fixed_number_of_queries_whatever_the_number_of_hosts(supplier, supplier_org, buyer):
    def add_hosts(first: int, count: int) -> None:
        for n in range(first, first + count):
            host = HostFactory(organization=supplier_org, name=f"l4-{n}", **l4_host_data())
            rent(buyer, host, "l4-24g.1x", start=NOW - 5 * HOUR, hours=2)
            fill(buyer, host, "0.40")
        with freeze_time(NOW):
            settle_usage()

    def queries() -> int:
        client = Client()
        client.force_login(supplier)
        with freeze_time(NOW), CaptureQueriesContext(connection) as captured:
            response = client.get(ANALYTICS, {"range": "24h"})
        assert response.status_code == 200
        return len(captured)

    add_hosts(0, 2)
    few = queries()
    add_hosts(2, 6)
    assert len(page(supplier).context["analytics"].hosts) == 8
    assert queries() == few
