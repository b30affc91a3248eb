from celery import shared_task

from .services import offers_delist_expired


@shared_task(name="marketplace.tasks.offers_delist_expired_task", time_limit=120, soft_time_limit=100)
def offers_delist_expired_task(batch_size: int = 500) -> int:
    """Beat: drop offers past their host's end date, one bounded batch per tick."""
    return offers_delist_expired(batch_size=batch_size)
