from celery import shared_task

from . import services


@shared_task(name="billing.tasks.meter_usage_task", time_limit=300, soft_time_limit=280)
def meter_usage_task(batch_size: int = 500) -> int:
    """Beat: record usage of every accruing instance up to now."""
    return services.meter_usage(batch_size=batch_size)


@shared_task(name="billing.tasks.settle_usage_task", time_limit=300, soft_time_limit=280)
def settle_usage_task(batch_size: int = 500) -> int:
    """Beat: turn unsettled usage into ledger transactions, exactly once."""
    return services.settle_usage(batch_size=batch_size)


@shared_task(name="billing.tasks.low_balance_check_task", time_limit=300, soft_time_limit=280)
def low_balance_check_task(batch_size: int = 200) -> dict:
    """Beat: warn on low runway, stop instances at zero balance."""
    return services.low_balance_check(batch_size=batch_size)
