from celery import shared_task
from django.db import transaction
from stripe import APIConnectionError, APIError, RateLimitError

from marketplace.tasks import walk_step
from orders.enforcement import low_balance_check
from orders.metering import meter_usage

from .ledger import balance_audit
from .payouts import payout_transfer, payouts_create
from .selectors import payouts_pending_ids
from .settlement import settle_usage_batch


@shared_task(bind=True, name="billing.tasks.meter_usage_task", time_limit=300, soft_time_limit=280)
def meter_usage_task(self, batch_size: int = 500) -> int:
    """Beat: record usage of every accruing instance up to now, then have it settled."""
    created = meter_usage(batch_size=batch_size)
    if created:
        # Settle on the same queue, and only once the usage rows are committed. (When a settlement
        # walk is already under way it goes on to these newer records: keys only grow.)
        queue = (self.request.delivery_info or {}).get("routing_key")
        transaction.on_commit(lambda: settle_usage_task.apply_async(queue=queue))
    return created


@shared_task(bind=True, name="billing.tasks.settle_usage_task", time_limit=300, soft_time_limit=280)
def settle_usage_task(self, after: int = 0, batch_size: int = 500) -> int:
    """Beat: turn unsettled usage into ledger transactions, exactly once, walking every record."""
    return walk_step(self, settle_usage_batch, after=after, batch_size=batch_size)


@shared_task(bind=True, name="billing.tasks.low_balance_check_task", time_limit=300, soft_time_limit=280)
def low_balance_check_task(self, after: int = 0, batch_size: int = 200) -> int:
    """Beat: walk every paying buyer: warn on low runway; at zero stop instances, then release kept
    disks after the grace."""
    return walk_step(self, low_balance_check, after=after, batch_size=batch_size)


@shared_task(bind=True, name="billing.tasks.payouts_create_task", time_limit=300, soft_time_limit=280)
def payouts_create_task(self) -> int:
    """Beat: create payouts for payable balances above the minimum, then send every pending payout
    (the new ones and any a killed worker left unsent) on this task's queue."""
    created = payouts_create()
    queue = (self.request.delivery_info or {}).get("routing_key")
    for payout_id in payouts_pending_ids():
        transaction.on_commit(lambda pk=payout_id: payout_transfer_task.apply_async((pk,), queue=queue))
    return len(created)


@shared_task(
    bind=True,
    name="billing.tasks.payout_transfer_task",
    time_limit=120,
    soft_time_limit=100,
    max_retries=8,
)
def payout_transfer_task(self, payout_id: int) -> str:
    """Send one payout; transient Stripe failures retry with exponential backoff (same key)."""
    try:
        return payout_transfer(payout_id=payout_id)
    except (APIConnectionError, RateLimitError, APIError) as error:
        raise self.retry(exc=error, countdown=min(3600, 30 * 2**self.request.retries)) from error


@shared_task(bind=True, name="billing.tasks.balance_audit_task", time_limit=300, soft_time_limit=280)
def balance_audit_task(self, after: int = 0, batch_size: int = 500) -> int:
    """Beat: walk every owner account, checking its stored balance against its postings."""
    return walk_step(self, balance_audit, after=after, batch_size=batch_size)
