"""The production profile: every task has a queue that some worker consumes, the scripts consume every
queue, and reads that may lag go to the read replica only outside transactions."""

import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction

from marketplace import databases
from marketplace.celery import app
from marketplace.databases import REPLICA, read_alias

ROOT = Path(__file__).resolve().parents[2]


def our_tasks() -> list[str]:
    app.loader.import_default_modules()
    return sorted(
        name
        for name in app.tasks
        if name.split(".")[0] in {"accounts", "marketplace", "suppliers", "billing", "orders"}
    )


def test_every_task_goes_to_a_known_queue():
    queues = {name: app.amqp.router.route({}, name)["queue"].name for name in our_tasks()}
    assert set(queues.values()) <= set(settings.TASK_QUEUE_NAMES)
    assert queues["billing.tasks.settle_usage_task"] == "billing"
    assert queues["billing.tasks.payout_transfer_task"] == "external"
    assert queues["suppliers.tasks.hosts_mark_offline_task"] == "agents"
    assert queues["marketplace.tasks.availability_alerts_check_task"] == "notifications"
    assert queues["marketplace.tasks.offers_delist_expired_task"] == "celery"
    assert queues["marketplace.tasks.webhook_deliver_task"] == "webhooks"


def test_the_scripts_consume_every_queue():
    run = (ROOT / "scripts/run.sh").read_text()
    (development,) = re.findall(r"worker -B .* -Q (\S+)", run)
    assert set(development.split(",")) == set(settings.TASK_QUEUE_NAMES)
    production = (ROOT / "scripts/production.sh").read_text()
    (default_groups,) = re.findall(r"WORKER_QUEUES=\$\{WORKER_QUEUES:-([^}]+)\}", production)
    assert {q for group in default_groups.split(";") for q in group.split(",")} == set(settings.TASK_QUEUE_NAMES)


def test_the_production_profile_refuses_to_start_without_its_services():
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL"}}
    result = subprocess.run(["bash", "scripts/production.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "DATABASE_URL" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_reads_that_may_lag_use_the_replica_only_outside_transactions(monkeypatch):
    assert read_alias() == DEFAULT_DB_ALIAS  # none configured
    with_replica = SimpleNamespace(DATABASES={**settings.DATABASES, REPLICA: settings.DATABASES[DEFAULT_DB_ALIAS]})
    monkeypatch.setattr(databases, "settings", with_replica)
    with transaction.atomic():
        assert read_alias() == DEFAULT_DB_ALIAS  # must see its own writes and locks
    assert read_alias() == REPLICA
