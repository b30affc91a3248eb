from celery import shared_task

from marketplace.tasks import walk_step
from orders.agent import hosts_mark_offline, hosts_release_lost
from orders.reliability import hosts_reliability_refresh

from .maintenance import maintenance_refresh


@shared_task(bind=True, name="suppliers.tasks.hosts_mark_offline_task", time_limit=120, soft_time_limit=100)
def hosts_mark_offline_task(self, after: int = 0, batch_size: int = 200) -> int:
    """Beat: hosts whose heartbeats stopped go offline (their renters stop paying), walking every host."""
    return walk_step(self, hosts_mark_offline, after=after, batch_size=batch_size)


@shared_task(bind=True, name="suppliers.tasks.hosts_release_lost_task", time_limit=300, soft_time_limit=280)
def hosts_release_lost_task(self, after: int = 0, batch_size: int = 100) -> int:
    """Beat: hosts silent past HOST_LOST_AFTER_SECONDS release their instances (SLA credit granted)."""
    return walk_step(self, hosts_release_lost, after=after, batch_size=batch_size)


@shared_task(bind=True, name="suppliers.tasks.hosts_reliability_refresh_task", time_limit=600, soft_time_limit=580)
def hosts_reliability_refresh_task(self, after: int = 0, batch_size: int = 500) -> int:
    """Beat: recompute 30-day uptime scores (and deverify unreliable hosts), walking every host."""
    return walk_step(self, hosts_reliability_refresh, after=after, batch_size=batch_size)


@shared_task(name="suppliers.tasks.maintenance_refresh_task", time_limit=120, soft_time_limit=100)
def maintenance_refresh_task() -> int:
    """Beat: hosts entering or leaving maintenance get their offers recomputed."""
    return maintenance_refresh()
