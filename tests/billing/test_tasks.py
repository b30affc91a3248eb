"""Billing beat tasks end to end in a real Celery worker (Redis broker in CI)."""

from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from billing.models import LedgerTransaction, UsageRecord
from billing.selectors import ledger_total, wallet_balance
from billing.tasks import meter_usage_task, settle_usage_task
from orders.agent import instance_agent_report
from orders.models import Instance
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data
from tests.orders.conftest import order
from tests.support.celery_worker import celery_worker, wait_until


@pytest.mark.django_db(transaction=True)
def test_worker_meters_then_settles_on_commit(catalog):
    HostFactory(organization=OrganizationFactory(), name="l4", **l4_host_data())
    buyer = UserFactory()
    instance = instance_agent_report(instance=order(buyer).instances.get(), status="running")
    # An hour of running, as if the beat had been away.
    Instance.objects.filter(pk=instance.pk).update(metered_until=timezone.now() - timezone.timedelta(hours=1))
    before = wallet_balance(buyer)

    with celery_worker() as queue:
        meter_usage_task.apply_async(queue=queue)
        settled = wait_until(lambda: LedgerTransaction.objects.filter(key__startswith="usage:").exists())

    assert settled, "metering did not lead to settlement"
    record = UsageRecord.objects.get(instance=instance)
    assert 3600 <= record.seconds <= 3700 and record.settled_by is not None
    assert before - wallet_balance(buyer) >= Decimal("0.40")
    assert ledger_total() == 0


@pytest.mark.django_db(transaction=True)
def test_settlement_is_enqueued_only_on_commit(catalog, monkeypatch):
    sent = []
    monkeypatch.setattr(settle_usage_task, "apply_async", lambda **kwargs: sent.append(kwargs))
    HostFactory(organization=OrganizationFactory(), name="l4", **l4_host_data())
    instance = instance_agent_report(instance=order(UserFactory()).instances.get(), status="running")
    Instance.objects.filter(pk=instance.pk).update(metered_until=timezone.now() - timezone.timedelta(minutes=5))
    with transaction.atomic():
        meter_usage_task.apply()
        assert sent == []  # not while the usage rows are uncommitted
    assert len(sent) == 1
