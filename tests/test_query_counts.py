"""No N+1: every list endpoint and list page answers in the same number of SQL queries whether it
lists 2 rows or 20.

Each test makes rows of the kind the page lists (owned by, or visible to, the requesting user),
counts the queries of one request, makes more, counts again, and checks both responses really
list the rows it made (so a test that lists nothing cannot pass by accident).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from freezegun import freeze_time
from rest_framework.test import APIClient

from accounts.services import api_key_issue, notify
from billing.adjustments import credit_note_issue
from billing.ledger import credit_grant
from billing.models import Payout, TopUp, UsageRecord
from billing.selectors import revenue_by_host
from billing.settlement import settle_usage
from marketplace.models import AcceleratorModel, AuditEntry, InstanceType, Offer, Region, Zone
from orders.disputes import report_create
from orders.models import Instance
from suppliers.agent_services import agent_register, host_registration_token_issue
from suppliers.documents import organization_document_upload
from suppliers.models import Host, MaintenanceWindow, Organization
from tests.conftest import bearer_client
from tests.factories import HostFactory, OrganizationFactory, UserFactory, dsa_model, l4_host_data
from tests.orders.conftest import order

pytestmark = pytest.mark.django_db

SMALL, LARGE = 2, 20
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
_serial = itertools.count(1)


# --- the shared check -----------------------------------------------------------------------------


def _missing(response, keys: list, listed: Callable[[Any], Any]) -> list:
    shown = listed(response)
    if isinstance(shown, str):
        return [key for key in keys if str(key) not in shown]
    shown = set(shown)
    return [key for key in keys if key not in shown]


def _sql(context: CaptureQueriesContext) -> str:
    return "\n".join(f"  {query['sql'][:300]}" for query in context.captured_queries)


def assert_constant_queries(
    fetch: Callable[[], Any],
    make: Callable[[int], Iterable],
    listed: Callable[[Any], Any],
    *,
    small: int = SMALL,
    large: int = LARGE,
) -> int:
    """`make(n)` creates n more rows and returns a key for each; `listed(response)` returns the
    keys the response shows (a collection), or its body (a str, searched for each key).

    Makes `small` rows and counts one request's queries, then `large` rows in all and counts
    again: the counts must be equal, and each response must list every row made so far."""
    keys = list(make(small))
    warm = fetch()  # first-request work (ledger accounts, key last-use stamps) is not per row
    assert warm.status_code == 200, warm.status_code
    with CaptureQueriesContext(connection) as few:
        response = fetch()
    assert response.status_code == 200
    missing = _missing(response, keys, listed)
    assert not missing, f"the response does not list {missing}"
    keys += list(make(large - small))
    with CaptureQueriesContext(connection) as many:
        response = fetch()
    assert response.status_code == 200
    missing = _missing(response, keys, listed)
    assert not missing, f"the response does not list {missing}"
    assert len(many) == len(few), (
        f"{len(few)} queries for {small} rows, {len(many)} for {large}:\n"
        f"--- {small} rows:\n{_sql(few)}\n--- {large} rows:\n{_sql(many)}"
    )
    print(f"{len(few)} queries")  # shown with -s
    return len(few)


def results(response) -> list[dict]:
    body = response.json()
    return body["results"] if isinstance(body, dict) else body


def ids(response) -> list:
    return [row["id"] for row in results(response)]


def body(response) -> str:
    return response.content.decode()


# --- rows -----------------------------------------------------------------------------------------


def new_organization(**fields) -> Organization:
    return OrganizationFactory(name=f"QC Supplier {next(_serial):04d}", **fields)


def h100_hosts(count: int, *, organization: Organization | None = None) -> list[Host]:
    """H100 hosts (each offers one h100-80g.8x), in their own organizations unless one is given."""
    return [
        HostFactory(organization=organization or new_organization(), name=f"qc-h100-{next(_serial):04d}")
        for _ in range(count)
    ]


class Fleet:
    """On-demand l4-24g.1x instances for a buyer: another supplier with a 4 x L4 host when full."""

    def __init__(self, buyer):
        self.buyer = buyer
        self.free = 0

    def instances(self, count: int) -> list[Instance]:
        made = []
        for _ in range(count):
            if not self.free:
                HostFactory(organization=new_organization(), name=f"qc-l4-{next(_serial):04d}", **l4_host_data())
                self.free = 4
            made.append(order(self.buyer).instances.get())
            self.free -= 1
        return made


def usage_record(instance: Instance, **fields) -> UsageRecord:
    """A compute record of the instance, an hour long, in a window of its own."""
    start = timezone.now() - dt.timedelta(days=60) + dt.timedelta(minutes=next(_serial))
    fields.setdefault("seconds", 1000 + next(_serial))
    fields.setdefault("rate_per_hour", instance.price_per_hour)
    fields.setdefault("kind", UsageRecord.Kind.COMPUTE)
    return UsageRecord.objects.create(
        instance=instance,
        buyer=instance.buyer,
        organization=instance.host.organization,
        window_start=start,
        window_end=start + dt.timedelta(hours=1),
        **fields,
    )


def credits(user, count: int) -> list[str]:
    reasons = [f"qc-credit-{next(_serial):04d}" for _ in range(count)]
    for reason in reasons:
        credit_grant(user=user, amount=Decimal("1.25"), reason=reason, key=f"qc:{reason}")
    return reasons


@pytest.fixture
def staff(db):
    return UserFactory(is_staff=True, credit=0)


@pytest.fixture
def fleet(buyer):
    return Fleet(buyer)


@pytest.fixture
def buyer_api(buyer):
    return bearer_client(buyer)


# --- catalog API ----------------------------------------------------------------------------------


def test_api_offers(buyer_api):
    def make(n):
        return [Offer.objects.get(host=h, instance_type__name="h100-80g.8x").pk for h in h100_hosts(n)]

    assert_constant_queries(lambda: buyer_api.get("/api/v1/offers/?instance_type=h100-80g.8x"), make, ids)


@pytest.fixture
def qc_accelerator(db):
    return AcceleratorModel.objects.create(
        vendor="QC",
        name="QC Accelerator",
        slug="qc-accel",
        kind="gpu",
        memory_gb=48,
        bf16_tflops=Decimal("100.0"),
        fp32_tflops=Decimal("50.0"),
        tdp_watts=300,
        vcpus_per_unit=8,
        ram_gb_per_unit=64,
        disk_gb_per_unit=500,
    )


def instance_types(model: AcceleratorModel, count: int) -> list[str]:
    made = []
    for _ in range(count):
        n = next(_serial)
        made.append(
            InstanceType.objects.create(
                name=f"qc-accel.{n}x", accelerator_model=model, accelerator_count=n, vcpus=8, ram_gb=64, disk_gb=500
            ).name
        )
    return made


def test_api_instance_types(buyer_api, qc_accelerator):
    assert_constant_queries(
        lambda: buyer_api.get("/api/v1/instance-types/?accelerator_model=qc-accel"),
        lambda n: instance_types(qc_accelerator, n),
        lambda r: [row["name"] for row in results(r)],
    )


def test_api_accelerator_models(buyer_api):
    def make(n):
        made = []
        for _ in range(n):
            k = next(_serial)
            made.append(dsa_model(slug=f"qc-part-{k}", name=f"QC Part {k}").slug)
        return made

    assert_constant_queries(
        lambda: buyer_api.get("/api/v1/accelerator-models/?page_size=200"),
        make,
        lambda r: [row["slug"] for row in results(r)],
    )


def test_api_regions(buyer_api):
    def make(n):
        made = []
        for _ in range(n):
            k = next(_serial)
            region = Region.objects.create(
                code=f"qc-{k}", name=f"QC {k}", tier="cloud", country="US", latitude=1, longitude=2
            )
            for zone in "ab":
                Zone.objects.create(region=region, code=f"qc-{k}-{zone}", name=f"QC {k} {zone}")
            made.append(region.code)
        return made

    assert_constant_queries(
        lambda: buyer_api.get("/api/v1/regions/?page_size=200"), make, lambda r: [row["code"] for row in results(r)]
    )


# --- supplier API ---------------------------------------------------------------------------------


def test_api_hosts(supplier_client, supplier_org):
    assert_constant_queries(
        lambda: supplier_client.get("/api/v1/hosts/"),
        lambda n: [h.pk for h in h100_hosts(n, organization=supplier_org)],
        ids,
    )


def test_api_hosts_for_staff(staff):
    """Staff see every organization's hosts."""
    client = bearer_client(staff)
    assert_constant_queries(
        lambda: client.get("/api/v1/hosts/?page_size=200"),
        lambda n: [h.pk for h in h100_hosts(n)],
        ids,
    )


def test_api_host_maintenance(supplier_client, approved_host):
    def make(n):
        made = []
        for _ in range(n):
            starts = timezone.now() + dt.timedelta(days=next(_serial))
            window = MaintenanceWindow.objects.create(
                host=approved_host, starts_at=starts, ends_at=starts + dt.timedelta(hours=1), reason="qc"
            )
            made.append(window.pk)
        return made

    assert_constant_queries(lambda: supplier_client.get(f"/api/v1/hosts/{approved_host.pk}/maintenance/"), make, ids)


def test_api_payouts(supplier_client, supplier_org):
    def make(n):
        return [
            Payout.objects.create(
                organization=supplier_org, amount=Decimal("1.00"), status="paid", stripe_account_id="acct_qc"
            ).pk
            for _ in range(n)
        ]

    assert_constant_queries(lambda: supplier_client.get("/api/v1/billing/payouts/"), make, ids)


def test_api_agent_heartbeat_commands(buyer, supplier_org):
    """A heartbeat answers with the host's pending commands (a start per instance placed)."""
    host = h100_hosts(1, organization=supplier_org)[0]
    _, credential = agent_register(token=host_registration_token_issue(host=host, user=None))
    agent = APIClient()
    agent.credentials(HTTP_AUTHORIZATION=f"Bearer {credential}")

    def make(n):
        instances = [order(buyer, instance_type="h100-80g.1x").instances.get() for _ in range(n)]
        assert {i.host_id for i in instances} == {host.pk}
        return [i.pk for i in instances]

    assert_constant_queries(
        lambda: agent.post("/api/v1/agent/heartbeat/", {"instances": []}, format="json"),
        make,
        lambda r: [c["instance_id"] for c in r.json()["commands"]],
        large=8,  # the host's eight GPUs
    )


# --- buyer API ------------------------------------------------------------------------------------


def test_api_api_keys(buyer, buyer_api):
    assert_constant_queries(
        lambda: buyer_api.get("/api/v1/api-keys/"),
        lambda n: [api_key_issue(user=buyer, name=f"qc-{i}").api_key.pk for i in range(n)],
        ids,
    )


def test_api_orders(buyer_api, fleet):
    assert_constant_queries(
        lambda: buyer_api.get("/api/v1/orders/"), lambda n: [i.order_id for i in fleet.instances(n)], ids
    )


def test_api_instances(buyer_api, fleet):
    assert_constant_queries(
        lambda: buyer_api.get("/api/v1/instances/"), lambda n: [i.pk for i in fleet.instances(n)], ids
    )


def test_api_problem_reports(buyer, buyer_api, fleet):
    def make(n):
        return [
            report_create(buyer=buyer, instance=i, category="performance", description="slow").pk
            for i in fleet.instances(n)
        ]

    assert_constant_queries(lambda: buyer_api.get("/api/v1/problem-reports/"), make, ids)


def test_api_problem_reports_for_supplier(buyer, supplier_client, supplier_org):
    """A supplier sees the reports on its hosts."""
    h100_hosts(3, organization=supplier_org)  # 24 x h100-80g.1x

    def make(n):
        instances = [order(buyer, instance_type="h100-80g.1x").instances.get() for _ in range(n)]
        assert {i.host.organization_id for i in instances} == {supplier_org.pk}
        return [report_create(buyer=buyer, instance=i, category="other", description="?").pk for i in instances]

    assert_constant_queries(lambda: supplier_client.get("/api/v1/problem-reports/"), make, ids)


def test_api_usage(buyer_api, fleet):
    def make(n):
        return [usage_record(i).pk for i in fleet.instances(n)]

    assert_constant_queries(lambda: buyer_api.get("/api/v1/billing/usage/"), make, ids)


def test_api_ledger(buyer, buyer_api):
    assert_constant_queries(
        lambda: buyer_api.get("/api/v1/billing/ledger/"),
        lambda n: credits(buyer, n),
        lambda r: [row["description"] for row in results(r)],
    )


def test_api_top_ups(buyer, buyer_api):
    def make(n):
        return [TopUp.objects.create(user=buyer, amount=Decimal("10.00")).pk for _ in range(n)]

    assert_constant_queries(lambda: buyer_api.get("/api/v1/billing/top-ups/"), make, ids)


def _past_months(user, count: int, made: list) -> list[str]:
    """Wallet activity in `count` more months before the current one."""
    months = []
    today = timezone.now().date().replace(day=15)
    for _ in range(count):
        back = len(made) + len(months) + 1
        year, month = divmod(today.year * 12 + today.month - 1 - back, 12)
        when = dt.datetime(year, month + 1, 15, 12, tzinfo=dt.UTC)
        with freeze_time(when):
            credits(user, 1)
        months.append(f"{when:%Y-%m}")
    made += months
    return months


def test_api_statements(buyer, buyer_api):
    made: list[str] = []
    assert_constant_queries(
        lambda: buyer_api.get("/api/v1/billing/statements/"),
        lambda n: _past_months(buyer, n, made),
        lambda r: [row["month"] for row in results(r)],
    )


def test_api_statement_lines(buyer, buyer_api):
    month = f"{timezone.now():%Y-%m}"
    assert_constant_queries(
        lambda: buyer_api.get(f"/api/v1/billing/statements/{month}/"),
        lambda n: credits(buyer, n),
        lambda r: [line["description"] for line in r.json()["lines"]],
    )


def _earning_hosts(buyer, organization: Organization, count: int) -> list[str]:
    """Hosts of `organization` with settled compute earnings (an l4 instance each, one record)."""
    names = []
    for _ in range(count):
        host = HostFactory(organization=organization, name=f"qc-earn-{next(_serial):04d}", **l4_host_data())
        offer = Offer.objects.get(host=host, instance_type__name="l4-24g.1x")
        instance = order(buyer, instance_type=None, offer=offer.pk).instances.get()
        usage_record(instance)
        names.append(host.name)
    settle_usage()
    return names


def test_api_earnings(buyer, supplier, supplier_client, supplier_org):
    assert_constant_queries(
        lambda: supplier_client.get("/api/v1/billing/earnings/"),
        lambda n: _earning_hosts(buyer, supplier_org, n),
        lambda r: [row["name"] for row in r.json()["revenue_by_host"]],
    )


# --- pages ----------------------------------------------------------------------------------------


def _offer_links(hosts: list[Host]) -> list[str]:
    offers = Offer.objects.filter(host__in=hosts, instance_type__name="h100-80g.8x")
    assert len(offers) == len(hosts)
    return [f'href="{reverse("offer_detail", args=[offer.pk])}"' for offer in offers]


def test_page_offer_search(client, buyer):
    client.force_login(buyer)
    assert_constant_queries(
        lambda: client.get(reverse("offers"), {"instance_type": "h100-80g.8x"}),
        lambda n: _offer_links(h100_hosts(n)),
        body,
    )


def test_page_offer_search_anonymous(client):
    assert_constant_queries(
        lambda: client.get(reverse("offers"), {"instance_type": "h100-80g.8x"}),
        lambda n: _offer_links(h100_hosts(n)),
        body,
    )


def test_page_instance_types(client, qc_accelerator):
    assert_constant_queries(
        lambda: client.get(reverse("instance_types"), {"accelerator_model": "qc-accel"}),
        lambda n: [f">{name}</a>" for name in instance_types(qc_accelerator, n)],
        body,
    )


def test_page_instance_type_detail(client):
    assert_constant_queries(
        lambda: client.get(reverse("instance_type_detail", args=["h100-80g.8x"])),
        lambda n: _offer_links(h100_hosts(n)),
        body,
    )


def test_page_offer_detail_similar_offers(client):
    """An offer page lists up to 10 similar offers (same instance type, cheapest first)."""
    shown = h100_hosts(1)[0]
    offer = Offer.objects.get(host=shown, instance_type__name="h100-80g.8x")
    assert_constant_queries(
        lambda: client.get(reverse("offer_detail", args=[offer.pk])),
        lambda n: _offer_links(h100_hosts(n)),
        body,
        large=10,
    )


def test_page_my_instances(client, buyer, fleet):
    client.force_login(buyer)
    assert_constant_queries(
        lambda: client.get(reverse("orders:instances")),
        lambda n: [f">i-{i.pk}</a>" for i in fleet.instances(n)],
        body,
    )


def test_page_my_instances_live_rows(client, buyer, fleet):
    """The htmx poll of the same table."""
    client.force_login(buyer)
    assert_constant_queries(
        lambda: client.get(reverse("orders:instances"), {"show": "all"}, headers={"HX-Request": "true"}),
        lambda n: [f">i-{i.pk}</a>" for i in fleet.instances(n)],
        body,
    )


def test_page_supplier_dashboard(client, supplier, supplier_org):
    client.force_login(supplier)
    assert_constant_queries(
        lambda: client.get(reverse("suppliers:dashboard")),
        lambda n: [f">{h.name}</a>" for h in h100_hosts(n, organization=supplier_org)],
        body,
    )


def test_page_supplier_documents(client, supplier):
    def make(n):
        names = [f"qc-doc-{next(_serial):04d}.pdf" for _ in range(n)]
        for name in names:
            organization_document_upload(user=supplier, kind="registration", upload=SimpleUploadedFile(name, PDF))
        return names

    client.force_login(supplier)
    assert_constant_queries(lambda: client.get(reverse("suppliers:documents")), make, body)


def test_page_billing_usage(client, buyer, fleet):
    def make(n):
        records = [usage_record(i) for i in fleet.instances(n)]
        settle_usage()
        return [f'<td class="num">{r.seconds}</td>' for r in records]

    client.force_login(buyer)
    assert_constant_queries(lambda: client.get(reverse("billing:buyer")), make, body)


def test_page_billing_ledger(client, buyer):
    client.force_login(buyer)
    assert_constant_queries(lambda: client.get(reverse("billing:buyer")), lambda n: credits(buyer, n), body)


def test_page_billing_top_ups_and_months(client, buyer):
    """The billing page's short lists: the last 10 top-ups and the last 12 statement months."""
    made: list[str] = []

    def make(n):
        top_ups = [TopUp.objects.create(user=buyer, amount=Decimal(f"{next(_serial)}.25")) for _ in range(n)]
        months = _past_months(buyer, n, made)
        return [f"${t.amount}<" for t in top_ups] + [f'href="{reverse("billing:statement", args=[m])}"' for m in months]

    client.force_login(buyer)
    assert_constant_queries(lambda: client.get(reverse("billing:buyer")), make, body, large=10)


def test_page_statement(client, buyer):
    client.force_login(buyer)
    month = f"{timezone.now():%Y-%m}"
    assert_constant_queries(
        lambda: client.get(reverse("billing:statement", args=[month])), lambda n: credits(buyer, n), body
    )


def test_page_earnings_by_host(client, buyer, supplier, supplier_org):
    client.force_login(supplier)
    assert_constant_queries(
        lambda: client.get(reverse("billing:earnings")),
        lambda n: [f">{name}</a>" for name in _earning_hosts(buyer, supplier_org, n)],
        body,
    )


def test_page_earnings_payouts(client, supplier, supplier_org):
    def make(n):
        made = []
        for _ in range(n):
            transfer = f"tr_qc_{next(_serial):04d}"
            Payout.objects.create(
                organization=supplier_org,
                amount=Decimal("1.00"),
                status="paid",
                stripe_account_id="acct_qc",
                stripe_transfer_id=transfer,
            )
            made.append(transfer)
        return made

    client.force_login(supplier)
    assert_constant_queries(lambda: client.get(reverse("billing:earnings")), make, body)


def test_page_staff_adjustments(client, staff, buyer):
    def make(n):
        reasons = [f"qc-adjustment-{next(_serial):04d}" for _ in range(n)]
        for reason in reasons:
            credit_note_issue(user=buyer, amount=Decimal("1.00"), reason=reason, staff=staff)
        return reasons

    client.force_login(staff)
    assert_constant_queries(lambda: client.get(reverse("billing:staff_adjustments")), make, body)


def test_page_notifications(client, buyer):
    def make(n):
        titles = [f"qc-note-{next(_serial):04d}" for _ in range(n)]
        for title in titles:
            notify(user=buyer, kind="qc", title=title)
        return titles

    client.force_login(buyer)
    assert_constant_queries(lambda: client.get(reverse("accounts:notifications")), make, body)


def test_page_api_keys(client, buyer):
    def make(n):
        names = [f"qc-key-{next(_serial):04d}" for _ in range(n)]
        for name in names:
            api_key_issue(user=buyer, name=name)
        return names

    client.force_login(buyer)
    assert_constant_queries(lambda: client.get(reverse("accounts:api_keys")), make, body)


# --- the staff moderation dashboard, one table at a time -------------------------------------------


def _pending_suppliers(count: int) -> list[str]:
    """Organizations waiting for review, with two documents each."""
    links = []
    for _ in range(count):
        organization = new_organization(status="pending")
        owner = organization.memberships.get().user
        for kind in ("registration", "other"):
            document = organization_document_upload(
                user=owner, kind=kind, upload=SimpleUploadedFile(f"qc-{kind}.pdf", PDF)
            )
            links.append(f'href="{reverse("suppliers:document_download", args=[document.pk])}"')
    return links


def _mismatched_hosts(count: int) -> list[str]:
    made = []
    for host in [HostFactory(organization=new_organization(), approved=False) for _ in range(count)]:
        Host.objects.filter(pk=host.pk).update(
            inventory_mismatch=[{"field": "vcpus", "declared": host.vcpus, "reported": 8}]
        )
        made.append(f"{host.pk} · {host.name}")
    return made


def _audit_entries(staff, count: int) -> list[str]:
    return [
        f">{e.object_type}:{e.object_id}<"
        for e in (
            AuditEntry.objects.create(actor=staff, action="qc", object_type="qc", object_id=str(next(_serial)))
            for _ in range(count)
        )
    ]


@pytest.mark.parametrize("table", ["pending_suppliers", "problem_hosts", "audit", "open_reports"])
def test_page_moderation(client, staff, buyer, fleet, table):
    makers = {
        "pending_suppliers": _pending_suppliers,
        "problem_hosts": _mismatched_hosts,
        "audit": lambda n: _audit_entries(staff, n),
        "open_reports": lambda n: [
            f">#{report_create(buyer=buyer, instance=i, category='performance', description='slow').pk}</a>"
            for i in fleet.instances(n)
        ],
    }
    client.force_login(staff)
    assert_constant_queries(lambda: client.get(reverse("moderation")), makers[table], body)


# --- supplier earnings per host: exact, in one query ----------------------------------------------


def _python_rule(records: list[UsageRecord]) -> dict[int, tuple[Decimal, int]]:
    """billing/rating.py's rule, written out: per record charge and fee each rounded half-up to
    $0.000001; the supplier share is the charge less the fee; backfill compute is skipped."""
    take = Decimal(settings.PLATFORM_TAKE_RATE)
    quantum = Decimal("0.000001")
    totals: dict[int, tuple[Decimal, int]] = {}
    for record in records:
        if record.kind == UsageRecord.Kind.COMPUTE and record.instance.backfills_id:
            continue
        charge = (Decimal(record.seconds) * record.rate_per_hour / Decimal(3600)).quantize(quantum, ROUND_HALF_UP)
        fee = (charge * take).quantize(quantum, ROUND_HALF_UP)
        earned, seconds = totals.get(record.instance.host_id, (Decimal(0), 0))
        totals[record.instance.host_id] = (earned + charge - fee, seconds + record.seconds)
    return totals


def test_revenue_by_host_is_exact_on_awkward_values(buyer, supplier_org, fleet):
    """Values whose charge or fee lands exactly on a half micro-dollar (where half-up and banker's
    rounding differ), repeating thirds, tiny and large records, storage and backfill records."""
    hosts = [
        HostFactory(organization=supplier_org, name=f"qc-exact-{n}", **l4_host_data(price_per_unit_hour=price))
        for n, price in enumerate([Decimal("0.40"), Decimal("0.333333")])
    ]
    instances = []
    for host in hosts:
        offer = Offer.objects.get(host=host, instance_type__name="l4-24g.1x")
        instances += [order(buyer, instance_type=None, offer=offer.pk).instances.get() for _ in range(2)]
    awkward = [
        # (seconds, rate): charge = seconds x rate / 3600
        (1, Decimal("0.0018")),  # 0.0000005: exactly half a micro-dollar -> 0.000001
        (3, Decimal("0.0018")),  # 0.0000015 -> 0.000002 (banker's would give 0.000002 too)
        (5, Decimal("0.0018")),  # 0.0000025 -> 0.000003 (banker's: 0.000002)
        (7, Decimal("0.333333")),  # 0.000648148...
        (3599, Decimal("0.999999")),
        (1, Decimal("0.000001")),  # rounds to zero
        (86399, Decimal("12.345679")),
        (10, Decimal("0.000333")),  # charge 0.000000925 -> 0.000001, fee 0.00000015 -> 0
        (37, Decimal("1.234567")),
        (108, Decimal("0.001")),  # charge 0.000030, fee exactly 0.0000045 -> 0.000005 (banker's: 0.000004)
        (54, Decimal("0.01")),  # charge 0.000150 -> fee 0.0000225 -> 0.000023 (banker's: 0.000022)
        (1, Decimal("0.0333")),  # charge 0.00000925 -> 0.000009; fee 0.00000135 -> 0.000001
        (13, Decimal("0.01")),  # charge 0.0000361 -> 0.000036; fee 0.0000054 -> 0.000005
    ]
    records = []
    for n, (seconds, rate) in enumerate(awkward):
        instance = instances[n % len(instances)]
        records.append(usage_record(instance, seconds=seconds, rate_per_hour=rate))
        records.append(usage_record(instance, seconds=seconds, rate_per_hour=rate, kind=UsageRecord.Kind.STORAGE))
    # A backfill: spot compute on another buyer's reserved capacity earns the reserving buyer.
    backfill = instances[-1]
    Instance.objects.filter(pk=backfill.pk).update(backfills=instances[0])
    records.append(usage_record(backfill, seconds=7200, rate_per_hour=Decimal("0.777777")))
    settle_usage()
    settled = list(
        UsageRecord.objects.filter(organization=supplier_org, settled_by__isnull=False).select_related("instance")
    )
    assert len(settled) > len(awkward)  # the rounds-to-nothing ones stay unsettled
    expected = _python_rule(settled)

    with CaptureQueriesContext(connection) as queries:
        rows = revenue_by_host(organization=supplier_org)
    assert len(queries) == 1
    assert {row["host"]: (row["earned"], row["seconds"]) for row in rows} == expected
    for row in rows:
        assert isinstance(row["earned"], Decimal) and row["earned"].as_tuple().exponent == -6
        assert row["name"] == Host.objects.get(pk=row["host"]).name
    assert [row["earned"] for row in rows] == sorted((e for e, _ in expected.values()), reverse=True)


def test_revenue_by_host_since_and_ties(buyer, supplier_org):
    """`since` keeps later windows only; equal earnings keep the order of the latest record first."""
    hosts = [HostFactory(organization=supplier_org, name=name, **l4_host_data()) for name in ("qc-tie-a", "qc-tie-b")]
    instances = [
        order(
            buyer, instance_type=None, offer=Offer.objects.get(host=h, instance_type__name="l4-24g.1x").pk
        ).instances.get()
        for h in hosts
    ]
    old = usage_record(instances[0], seconds=3600)
    newer = usage_record(instances[1], seconds=3600)
    settle_usage()
    assert [row["name"] for row in revenue_by_host(organization=supplier_org)] == ["qc-tie-b", "qc-tie-a"]
    assert [row["name"] for row in revenue_by_host(organization=supplier_org, since=newer.window_start)] == ["qc-tie-b"]
    assert revenue_by_host(organization=supplier_org, since=old.window_start + dt.timedelta(days=365)) == []
