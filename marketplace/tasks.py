import uuid
from collections.abc import Callable

from celery import Task, shared_task
from django.core.cache import cache

from . import webhooks
from .alerts import availability_alerts_check
from .services import offers_delist_expired
from .walks import Walk

# A walk's guard outlives one batch's time limit, so a walk killed for good frees it soon after.
WALK_GUARD_SECONDS = 330


def walk_step(task: Task, service: Callable[..., Walk], *, after: int, batch_size: int, **kwargs) -> int:
    """Run one batch of `service` (see `marketplace.walks`) and enqueue the next batch of the same
    task on the same queue until the walk is finished. Returns what the batch did.

    A walk starts at `after=0` (beat) only when none of the same task is under way: a second beat
    scheduler, or a tick that comes while the previous walk is still going, adds no duplicate walk
    (the guard is in the cache: Redis, shared by every worker, where configured). The guard holds
    the id of the task running the walk, so the same message delivered again after its worker was
    killed (acks late) carries on instead of finding its own guard and stopping the walk."""
    guard = f"walk:{task.name}"
    task_id = getattr(task.request, "id", None) or uuid.uuid4().hex  # no id: never a redelivery
    if after == 0:
        if not cache.add(guard, task_id, timeout=WALK_GUARD_SECONDS) and cache.get(guard) != task_id:
            return 0
    else:
        cache.set(guard, task_id, timeout=WALK_GUARD_SECONDS)
    walk = service(after=after, batch_size=batch_size, **kwargs)
    if walk.next_after is None:
        cache.delete(guard)
    else:
        queue = (task.request.delivery_info or {}).get("routing_key")
        task.apply_async(kwargs={"after": walk.next_after, "batch_size": batch_size, **kwargs}, queue=queue)
    return walk.done


@shared_task(bind=True, name="marketplace.tasks.offers_delist_expired_task", time_limit=120, soft_time_limit=100)
def offers_delist_expired_task(self, after: int = 0, batch_size: int = 500) -> int:
    """Beat: take offers past their end date off sale, walking every offer in batches."""
    return walk_step(self, offers_delist_expired, after=after, batch_size=batch_size)


@shared_task(bind=True, name="marketplace.tasks.availability_alerts_check_task", time_limit=120, soft_time_limit=100)
def availability_alerts_check_task(self, after: int = 0, batch_size: int = 500) -> int:
    """Beat: tell buyers whose availability alerts' supply appeared, walking every active alert."""
    return walk_step(self, availability_alerts_check, after=after, batch_size=batch_size)


@shared_task(name="marketplace.tasks.webhook_deliver_task", acks_late=True, time_limit=60, soft_time_limit=45)
def webhook_deliver_task(delivery_id: int) -> str | None:
    """Post one webhook delivery if it is due (claimed atomically: a duplicate message does nothing)."""
    return webhooks.delivery_attempt(delivery_id=delivery_id)


@shared_task(name="marketplace.tasks.webhook_deliveries_sweep_task", time_limit=120, soft_time_limit=100)
def webhook_deliveries_sweep_task() -> int:
    """Beat: hand due retries (and deliveries whose worker died) to workers."""
    due = webhooks.deliveries_due()
    for delivery_id in due:
        webhook_deliver_task.delay(delivery_id)
    return len(due)


@shared_task(name="marketplace.tasks.webhook_deliveries_prune_task", time_limit=300, soft_time_limit=280)
def webhook_deliveries_prune_task() -> int:
    """Daily: finished deliveries past their retention, in batches."""
    pruned = 0
    while batch := webhooks.deliveries_prune():
        pruned += batch
    return pruned
