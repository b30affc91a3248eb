"""Ordering beat tasks, run by a real Celery worker process."""

import pytest
from django.utils import timezone

from orders.models import Instance
from orders.placement import order_place
from orders.requests import OrderRequest
from orders.tasks import instances_expire_task
from tests.factories import HostFactory, OrganizationFactory, UserFactory, l4_host_data
from tests.support.celery_worker import celery_worker, wait_until


@pytest.mark.django_db(transaction=True)
def test_worker_terminates_instances_past_their_time(catalog):
    HostFactory(organization=OrganizationFactory(), name="l4", **l4_host_data())
    buyer = UserFactory()
    order = order_place(
        buyer=buyer, request=OrderRequest(instance_type="l4-24g.1x", count=2, image="img:1", terminate_after_hours=1)
    )
    due, keep = order.instances.order_by("pk")
    Instance.objects.filter(pk=due.pk).update(terminate_at=timezone.now() - timezone.timedelta(seconds=1))

    with celery_worker() as queue:
        instances_expire_task.apply_async(queue=queue)
        done = wait_until(lambda: Instance.objects.get(pk=due.pk).status == "terminating")

    assert done, "the worker did not terminate the expired instance"
    assert Instance.objects.get(pk=keep.pk).status == "provisioning"
    assert Instance.objects.get(pk=due.pk).events.last().reason == "terminate_after_hours reached"
