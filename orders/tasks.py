from celery import shared_task

from .lifecycle import instances_expire
from .spot import spot_resume


@shared_task(name="orders.tasks.spot_resume_task", time_limit=120, soft_time_limit=100)
def spot_resume_task(batch_size: int = 100) -> int:
    """Beat: resume preempted spot instances where capacity has freed."""
    return spot_resume(batch_size=batch_size)


@shared_task(name="orders.tasks.instances_expire_task", time_limit=120, soft_time_limit=100)
def instances_expire_task(batch_size: int = 200) -> int:
    """Beat: terminate instances past terminate_after_hours or their reserved term."""
    return instances_expire(batch_size=batch_size)
