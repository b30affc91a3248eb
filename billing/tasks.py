from celery import shared_task
from django.db import transaction

from . import services


@shared_task(bind=True, name="billing.tasks.meter_usage_task", time_limit=300, soft_time_limit=280)
def meter_usage_task(self, batch_size: int = 500) -> int:
    """Beat: record usage of every accruing instance up to now, then have it settled."""
    created = services.meter_usage(batch_size=batch_size)
    if created:
        # Settle on the same queue, and only once the usage rows are committed.
        queue = (self.request.delivery_info or {}).get("routing_key")
        transaction.on_commit(lambda: settle_usage_task.apply_async(queue=queue))
    return created


@shared_task(name="billing.tasks.settle_usage_task", time_limit=300, soft_time_limit=280)
def settle_usage_task(batch_size: int = 500) -> int:
    """Beat: turn unsettled usage into ledger transactions, exactly once."""
    return services.settle_usage(batch_size=batch_size)


@shared_task(name="billing.tasks.low_balance_check_task", time_limit=300, soft_time_limit=280)
def low_balance_check_task(batch_size: int = 200) -> dict:
    """Beat: warn on low runway, stop instances at zero balance."""
    return services.low_balance_check(batch_size=batch_size)
