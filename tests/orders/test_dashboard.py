"""The buyer dashboard: live instances with cost and actions, money (balance, burn, runway, spend),
spend per day, recent events and problem reports; only the buyer's own, only what the role reads
and changes, and a fixed number of queries whatever the number of instances."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from freezegun import freeze_time

from accounts.models import TeamMembership
from accounts.roles import Role
from accounts.teams import team_create
from billing.ledger import credit_grant
from orders import buyer_dashboard
from orders.agent import instance_agent_report
from orders.buyer_dashboard import RunwayState
from orders.disputes import report_create
from orders.lifecycle import instance_stop
from orders.models import InstanceStatus
from tests.factories import HostFactory, UserFactory, l4_host_data

from .conftest import order, usage_paid

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("orders:dashboard")


@pytest.fixture(autouse=True)
def clock():
    """Mid-month, still: the month's and the day's totals do not depend on when the suite runs."""
    with freeze_time("2026-05-20 12:00:00") as frozen:
        yield frozen


def running_instance(buyer):
    instance = order(buyer).instances.get()
    return instance_agent_report(instance=instance, status="running")


def stopped_instance(buyer):
    instance = instance_stop(instance=running_instance(buyer), actor_user=buyer)
    return instance_agent_report(instance=instance, status="stopped")


def action_url(instance, action):
    return reverse("orders:instance_action", args=[instance.pk, action])


def test_the_money_and_each_instance_cost_for_running_and_stopped_instances(client, buyer, l4_host, clock):
    running = running_instance(buyer)
    stopped = stopped_instance(buyer)
    usage_paid(running, 3600)  # an hour at $0.40
    usage_paid(stopped, 1800)  # half an hour at $0.40
    clock.tick(timedelta(minutes=90))
    client.force_login(buyer)

    page = client.get(DASHBOARD)

    assert page.status_code == 200
    funds = page.context["funds"]
    assert funds.balance == Decimal("999.400000")
    assert funds.burn_per_hour == Decimal("0.400000")  # the stopped one burns no compute
    assert funds.live_per_hour == Decimal("0.400000") and funds.spend_limit_per_hour == Decimal("100.00")
    assert funds.runway_state == RunwayState.LASTS
    assert funds.runway_hours == Decimal("2498.50") and funds.runway_days == Decimal("104.1")
    assert funds.spent_this_month == Decimal("0.600000") and funds.spent_all_time == Decimal("0.600000")
    rows = {row.instance.pk: row for row in page.context["live"].rows}
    assert rows[running.pk].cost_so_far == Decimal("0.400000")
    assert rows[stopped.pk].cost_so_far == Decimal("0.200000")
    assert rows[running.pk].running_for == timedelta(minutes=90)
    assert rows[stopped.pk].running_for is None
    body = page.content.decode()
    assert "$999.40" in body and "2498.50 h" in body and "$0.400/h" in body


def test_runway_with_nothing_running_and_with_the_balance_used_up(client, buyer, l4_host):
    client.force_login(buyer)
    idle = client.get(DASHBOARD)
    assert idle.context["funds"].runway_state == RunwayState.NOTHING_RUNNING
    assert "Nothing running" in idle.content.decode()

    running = running_instance(buyer)
    usage_paid(running, 2500 * 3600)  # $1000 at $0.40/h: all of the credit
    used_up = client.get(DASHBOARD)
    assert used_up.context["funds"].balance == Decimal("0.000000")
    assert used_up.context["funds"].runway_state == RunwayState.USED_UP
    assert "Balance used up" in used_up.content.decode()


def test_another_buyers_instances_events_and_reports_are_never_shown(client, buyer, l4_host):
    mine = running_instance(buyer)
    report_create(buyer=buyer, instance=mine, category="performance", description="Slow.")
    stranger = UserFactory(email="stranger@example.com")
    theirs = running_instance(stranger)
    their_report = report_create(buyer=stranger, instance=theirs, category="hardware", description="Not an L4.")
    usage_paid(theirs, 3600)
    client.force_login(buyer)

    page = client.get(DASHBOARD)

    assert [row.instance.pk for row in page.context["live"].rows] == [mine.pk]
    assert {event.instance_id for event in page.context["events"]} == {mine.pk}
    assert [report.instance_id for report in page.context["reports"]] == [mine.pk]
    assert page.context["funds"].spent_all_time == Decimal(0)
    body = page.content.decode()
    assert reverse("orders:instance_detail", args=[theirs.pk]) not in body
    assert reverse("orders:report_detail", args=[their_report.pk]) not in body
    assert reverse("orders:instance_detail", args=[mine.pk]) in body


def test_events_and_reports_link_to_their_pages(client, buyer, l4_host):
    instance = running_instance(buyer)
    report = report_create(buyer=buyer, instance=instance, category="wont_start", description="It hangs.")
    client.force_login(buyer)

    page = client.get(DASHBOARD)

    events = list(page.context["events"])
    newest_first = [(e.from_status, e.to_status) for e in events][:2]
    assert newest_first == [("provisioning", "running"), ("requested", "provisioning")]
    body = page.content.decode()
    assert f'href="{reverse("orders:report_detail", args=[report.pk])}">#{report.pk}</a>' in body
    assert "Open" in body and "Does not start" in body


def test_stop_and_terminate_from_the_dashboard_come_back_to_it(client, buyer, l4_host):
    to_stop, to_terminate = running_instance(buyer), running_instance(buyer)
    client.force_login(buyer)
    body = client.get(DASHBOARD).content.decode()
    assert f'action="{action_url(to_stop, "stop")}"' in body
    assert f'action="{action_url(to_terminate, "terminate")}"' in body
    assert f'action="{action_url(to_stop, "start")}"' not in body  # running: nothing to start

    stopped = client.post(action_url(to_stop, "stop"), {"next": DASHBOARD})
    terminated = client.post(action_url(to_terminate, "terminate"), {"next": DASHBOARD}, follow=True)

    assert stopped.status_code == 302 and stopped["Location"] == DASHBOARD
    assert terminated.redirect_chain == [(DASHBOARD, 302)]
    assert "Terminate requested." in terminated.content.decode()
    to_stop.refresh_from_db()
    to_terminate.refresh_from_db()
    assert to_stop.status == InstanceStatus.STOPPING
    assert to_terminate.status == InstanceStatus.TERMINATING
    rows = {row.instance.pk: row.actions for row in terminated.context["live"].rows}
    assert not rows[to_terminate.pk].any  # terminating: no button left


def test_a_stopped_instance_offers_start_and_terminate_not_stop(client, buyer, l4_host):
    stopped = stopped_instance(buyer)
    client.force_login(buyer)
    body = client.get(DASHBOARD).content.decode()
    assert f'action="{action_url(stopped, "start")}"' in body
    assert f'action="{action_url(stopped, "terminate")}"' in body
    assert f'action="{action_url(stopped, "stop")}"' not in body


@pytest.mark.parametrize(
    "next_url", ["https://evil.example.com/dashboard/", "//evil.example.com/", "javascript:alert(1)", ""]
)
def test_next_pointing_elsewhere_is_not_followed(client, buyer, l4_host, next_url):
    instance = running_instance(buyer)
    client.force_login(buyer)

    response = client.post(action_url(instance, "stop"), {"next": next_url})

    assert response.status_code == 302
    assert response["Location"] == reverse("orders:instance_detail", args=[instance.pk])
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.STOPPING


def test_anonymous_is_sent_to_log_in(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))


@pytest.fixture
def team():
    owner = UserFactory(email="owner@team.example.com")
    team = team_create(owner=owner, name="Vision research")
    for role in (Role.MEMBER, Role.BILLING, Role.READ_ONLY):
        TeamMembership.objects.create(team=team, user=UserFactory(email=f"{role}@team.example.com"), role=role)
    credit_grant(user=team.account, amount=Decimal("200"), reason="Team credit", key=f"team-credit:{team.pk}")
    return team


def acting_for(team, role) -> Client:
    client = Client()
    client.force_login(team.memberships.get(role=role).user)
    assert client.post("/accounts/act/", {"team": team.pk}).status_code == 302
    return client


def test_a_read_only_team_member_sees_no_action_and_a_post_is_refused(team, l4_host):
    instance = running_instance(team.account)
    reader = acting_for(team, Role.READ_ONLY)

    page = reader.get(DASHBOARD)

    body = page.content.decode()
    assert page.status_code == 200 and "Dashboard of Vision research" in body
    assert [row.instance.pk for row in page.context["live"].rows] == [instance.pk]
    assert page.context["funds"].balance == Decimal("200.000000")
    assert "View only" in body and action_url(instance, "stop") not in body
    refused = reader.post(action_url(instance, "stop"), {"next": DASHBOARD})
    assert refused.status_code == 403
    instance.refresh_from_db()
    assert instance.status == InstanceStatus.RUNNING


def test_each_team_role_sees_only_the_parts_it_may_read(team, l4_host):
    instance = running_instance(team.account)

    member = acting_for(team, Role.MEMBER).get(DASHBOARD)
    payer = acting_for(team, Role.BILLING).get(DASHBOARD)

    assert "funds" not in member.context and "spend_chart" not in member.context  # no money for members
    assert action_url(instance, "stop") in member.content.decode()
    assert payer.context["funds"].balance == Decimal("200.000000")
    assert payer.context["live"] is None and "events" not in payer.context  # no instances for billing
    assert reverse("orders:instance_detail", args=[instance.pk]) not in payer.content.decode()
    rows = acting_for(team, Role.BILLING).get(DASHBOARD, HTTP_HX_REQUEST="true")
    assert "i-" not in rows.content.decode()


def test_the_spend_chart_has_thirty_days_with_each_days_charges(client, buyer, l4_host, clock):
    instance = running_instance(buyer)
    clock.move_to("2026-04-10 09:00:00")  # 40 days ago: before the chart and the month
    usage_paid(instance, 9000)  # $1.00
    clock.move_to("2026-05-17 23:30:00")  # three days ago
    usage_paid(instance, 3600)  # $0.40
    clock.move_to("2026-05-20 08:00:00")  # today, twice
    usage_paid(instance, 1800)  # $0.20
    usage_paid(instance, 900)  # $0.10
    clock.move_to("2026-05-20 12:00:00")
    client.force_login(buyer)

    page = client.get(DASHBOARD)

    chart = page.context["spend_chart"]
    assert chart["kind"] == "bar" and chart["format"] == "money"
    assert chart["x_title"] and chart["y_title"]
    assert len(chart["labels"]) == 30 and chart["labels"][0] == "Apr 21" and chart["labels"][-1] == "May 20"
    amounts = [Decimal(value) for value in chart["datasets"][0]["data"]]
    expected = [Decimal(0)] * 30
    expected[26], expected[29] = Decimal("0.40"), Decimal("0.30")
    assert amounts == expected
    assert chart["datasets"][0]["text"][29] == "$0.30"
    funds = page.context["funds"]
    assert funds.spent_this_month == Decimal("0.700000") and funds.spent_all_time == Decimal("1.700000")
    body = page.content.decode()
    assert 'data-chart="dashboard-spend-data"' in body and "chartjs/chart.umd.min.js" in body
    billing = client.get(reverse("billing:buyer"))  # the billing page draws the same selector, 14 days
    assert len(billing.context["spend_chart"]["labels"]) == 14
    assert billing.context["spend_chart"]["datasets"][0]["text"][-1] == "$0.30"
    assert 'data-chart="spend-per-day-data"' in billing.content.decode()


def test_the_live_list_is_polled_as_rows(client, buyer, l4_host):
    instance = running_instance(buyer)
    client.force_login(buyer)

    rows = client.get(DASHBOARD, HTTP_HX_REQUEST="true").content.decode()

    assert "<html" not in rows and reverse("orders:instance_detail", args=[instance.pk]) in rows
    assert "Running" in rows


def place_instances(buyer, count, organization):
    """`count` running l4 instances on new hosts; a settled hour and a problem report on three."""
    for _ in range((count + 3) // 4):
        HostFactory(organization=organization, **l4_host_data())
    instances = []
    while len(instances) < count:
        placed = order(buyer, count=min(4, count - len(instances)))
        instances += [instance_agent_report(instance=i, status="running") for i in placed.instances.all()]
    for instance in instances[:3]:
        usage_paid(instance, 3600)
        report_create(buyer=buyer, instance=instance, category="other", description="Check.")
    return instances


def dashboard_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(DASHBOARD).status_code == 200
    return len(queries)


def test_queries_do_not_grow_with_instances(client, supplier_org, django_assert_max_num_queries):
    few, many = UserFactory(email="few@example.com"), UserFactory(email="many@example.com")
    place_instances(few, 3, supplier_org)
    place_instances(many, 30, supplier_org)
    client.force_login(few)
    few_queries = dashboard_queries(client)
    client.force_login(many)

    with django_assert_max_num_queries(few_queries):
        page = client.get(DASHBOARD)

    assert len(page.context["live"].rows) == 30 and len(page.context["reports"]) == 3
    assert page.context["funds"].burn_per_hour == Decimal("12.000000")
    assert few_queries <= 30


def test_the_live_list_is_capped_with_a_link_to_all_instances(client, buyer, supplier_org, monkeypatch):
    monkeypatch.setattr(buyer_dashboard, "LIVE_INSTANCES_SHOWN", 4)
    instances = place_instances(buyer, 6, supplier_org)
    client.force_login(buyer)

    page = client.get(DASHBOARD)

    live = page.context["live"]
    assert len(live.rows) == 4 and live.total == 6 and live.more == 2
    newest = sorted(instances, key=lambda i: (i.created_at, i.pk), reverse=True)[:4]
    assert [row.instance.pk for row in live.rows] == [i.pk for i in newest]
    body = page.content.decode()
    assert "The newest 4 of 6 are shown." in body and f'href="{reverse("orders:instances")}"' in body
