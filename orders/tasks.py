from celery import shared_task

from marketplace.tasks import walk_step

from .lifecycle import instances_expire
from .spot import spot_resume


@shared_task(bind=True, name="orders.tasks.spot_resume_task", time_limit=120, soft_time_limit=100)
def spot_resume_task(self, after: int = 0, batch_size: int = 100) -> int:
    """Beat: resume preempted spot instances where capacity has freed, walking every host."""
    return walk_step(self, spot_resume, after=after, batch_size=batch_size)


@shared_task(bind=True, name="orders.tasks.instances_expire_task", time_limit=120, soft_time_limit=100)
def instances_expire_task(self, after: int = 0, batch_size: int = 200) -> int:
    """Beat: terminate instances past terminate_after_hours or their reserved term, walking them all."""
    return walk_step(self, instances_expire, after=after, batch_size=batch_size)
