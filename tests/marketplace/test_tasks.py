"""The offer-expiry beat task, run by a real Celery worker process."""

from decimal import Decimal

import pytest
from django.utils import timezone

from marketplace.models import Offer
from marketplace.tasks import offers_delist_expired_task
from suppliers.models import Host
from tests.factories import HostFactory, OrganizationFactory
from tests.support.celery_worker import celery_worker, wait_until


@pytest.mark.django_db(transaction=True)
def test_worker_takes_expired_offers_off_sale_and_keeps_live_ones(catalog):
    organization = OrganizationFactory()
    expiring = HostFactory(organization=organization, name="expiring")
    live = HostFactory(organization=organization, name="live", price_per_unit_hour=Decimal("2.00"))
    live_offers = live.offers.count()
    # The supplier's end date passes (set directly: declarations only accept future dates).
    past = timezone.now() - timezone.timedelta(minutes=1)
    Host.objects.filter(pk=expiring.pk).update(offer_ends_at=past)
    Offer.objects.filter(host=expiring).update(listed_until=past)
    assert Offer.objects.filter(host=expiring).exists()

    with celery_worker() as queue:
        offers_delist_expired_task.apply_async(queue=queue)
        gone = wait_until(lambda: not Offer.objects.filter(host=expiring, available_count__gt=0).exists())

    assert gone, "the worker did not take the expired offers off sale"
    assert Offer.objects.listed().filter(host=live).count() == live_offers


def test_task_is_idempotent_in_process(db, supplier_org):
    host = HostFactory(organization=supplier_org)
    Offer.objects.filter(host=host).update(listed_until=timezone.now() - timezone.timedelta(seconds=1))
    first = offers_delist_expired_task.apply().get()
    second = offers_delist_expired_task.apply().get()
    assert first > 0
    assert second == 0
