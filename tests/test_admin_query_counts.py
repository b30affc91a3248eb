"""No N+1 on the staff admin's list pages: every registered model's changelist answers in the same
number of SQL queries with a few rows of each kind as with many."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.services import api_key_issue, notify
from accounts.teams import team_create, team_invite
from billing.adjustments import credit_note_issue
from billing.models import Payout, StripeEvent, TopUp, UsageRecord
from billing.settlement import settle_usage
from marketplace.alerts import availability_alert_create
from marketplace.models import IdempotencyRecord, InstanceType, Region, Zone
from orders.agent import agent_heartbeat, instance_agent_report
from orders.disputes import report_create
from orders.launch import launch_template_create
from orders.models import AgentUsageDisagreement
from suppliers.agent_services import agent_register, host_registration_token_issue
from suppliers.documents import organization_document_upload
from suppliers.models import HostOutage, MaintenanceWindow
from suppliers.organizations import organization_invite
from tests.factories import HostFactory, OrganizationFactory, UserFactory, dsa_model, l4_host_data
from tests.orders.conftest import order

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
_serial = itertools.count(1)


def grow(count: int, *, staff, buyer) -> None:
    """`count` more rows of every kind the admin lists, made through the real flows."""
    now = timezone.now()
    for _ in range(count):
        k = next(_serial)
        organization = OrganizationFactory(name=f"QA Supplier {k:04d}")
        owner = organization.memberships.get().user
        host = HostFactory(organization=organization, name=f"qa-l4-{k:04d}", **l4_host_data())
        instance = instance_agent_report(instance=order(buyer).instances.get(), status="running")
        start = now - dt.timedelta(days=30) + dt.timedelta(minutes=k)
        UsageRecord.objects.create(
            instance=instance,
            buyer=buyer,
            organization=instance.host.organization,
            kind=UsageRecord.Kind.COMPUTE,
            window_start=start,
            window_end=start + dt.timedelta(hours=1),
            seconds=3600,
            rate_per_hour=instance.price_per_hour,
        )
        agent_register(token=host_registration_token_issue(host=host, user=owner))
        host_registration_token_issue(host=host, user=owner)
        HostOutage.objects.create(
            host=host, started_at=now - dt.timedelta(hours=2), ended_at=now - dt.timedelta(hours=1)
        )
        MaintenanceWindow.objects.create(
            host=host, starts_at=now + dt.timedelta(days=2), ends_at=now + dt.timedelta(days=2, hours=1), reason="Disks"
        )
        organization_document_upload(
            user=owner, kind="registration", upload=SimpleUploadedFile(f"reg-{k}.pdf", PDF, "application/pdf")
        )
        report_create(buyer=buyer, instance=instance, category="other", description=f"Report {k}")
        agent_heartbeat(host=instance.host, instances=[{"id": instance.pk, "status": "running", "usage": {"k": 1.0}}])
        AgentUsageDisagreement.objects.create(
            instance=instance,
            host=instance.host,
            window_start=start,
            window_end=start + dt.timedelta(hours=1),
            agent_seconds=60,
            platform_seconds=3600,
        )
        notify(user=buyer, kind="qa", title=f"Notice {k}")
        launch_template_create(owner=buyer, data={"name": f"qa-{k}", "image": "ubuntu:24.04", "ports": [22]})
        availability_alert_create(
            user=buyer, instance_type=InstanceType.objects.get(name="l4-24g.1x"), max_price_per_hour=Decimal(k)
        )
        Group.objects.create(name=f"QA group {k}")
        team = team_create(owner=buyer, name=f"QA team {k}")
        team_invite(team_id=team.pk, by=buyer, email=f"qa-invitee-{k}@example.com", role="member")
        organization_invite(by=owner, email=f"qa-supplier-{k}@example.com", role="member")
        api_key_issue(user=buyer, name=f"key {k}")
        credit_note_issue(user=buyer, amount=Decimal("1.00"), reason=f"Goodwill {k}", staff=staff)
        credit_note_issue(user=buyer, amount=Decimal("150.00"), reason=f"Big goodwill {k}", staff=staff)  # a request
        TopUp.objects.create(user=buyer, amount=Decimal("10.00"))
        StripeEvent.objects.create(event_id=f"evt_qa_{k}", type="charge.succeeded", payload={}, handled=False)
        Payout.objects.create(organization=organization, amount=Decimal("1.00"), stripe_account_id=f"acct_qa_{k}")
        IdempotencyRecord.objects.create(
            user=buyer,
            key=f"qa-{k}",
            method="POST",
            path="/api/v1/orders/",
            request_fingerprint="0" * 64,
            status_code=201,
            response_body={},
        )
        region = Region.objects.create(
            code=f"qa-{k}", name=f"QA {k}", tier="cloud", country="US", latitude=Decimal(1), longitude=Decimal(1)
        )
        Zone.objects.create(region=region, code=f"qa-{k}a", name="A")
        model = dsa_model(slug=f"qa-part-{k}", name=f"QA Part {k}")
        InstanceType.objects.create(
            name=f"qa-part-{k}.1x", accelerator_model=model, accelerator_count=1, vcpus=4, ram_gb=16, disk_gb=100
        )
    settle_usage()


def changelists() -> list[str]:
    return [
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for model in sorted(admin.site._registry, key=lambda m: m._meta.label)
    ]


def measure(client, url: str) -> tuple[int, int]:
    """(queries, rows listed) for one changelist request, after a warm-up request."""
    assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries), response.context["cl"].result_count


def test_every_admin_list_page_has_a_fixed_number_of_queries(client, catalog):
    staff = UserFactory(email="qa-admin@example.com", is_staff=True, is_superuser=True, credit=0)
    buyer = UserFactory(email="qa-buyer@example.com", credit=10_000)
    client.force_login(staff)
    grow(2, staff=staff, buyer=buyer)
    few = {url: measure(client, url) for url in changelists()}
    grow(8, staff=staff, buyer=buyer)
    many = {url: measure(client, url) for url in changelists()}
    not_growing = [url for url in few if many[url][1] <= few[url][1]]
    assert not not_growing, f"these pages list no more rows after adding some: {not_growing}"
    growing = {url: (few[url][0], many[url][0]) for url in few if many[url][0] != few[url][0]}
    assert not growing, f"queries grow with rows (few, many): {growing}"
