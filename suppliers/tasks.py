from celery import shared_task

from .agent_services import hosts_mark_offline


@shared_task(name="suppliers.tasks.hosts_mark_offline_task", time_limit=120, soft_time_limit=100)
def hosts_mark_offline_task(batch_size: int = 200) -> int:
    """Beat: hosts whose heartbeats stopped go offline."""
    return len(hosts_mark_offline(batch_size=batch_size))
