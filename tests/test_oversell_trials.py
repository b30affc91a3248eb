"""The oversell trials' short form (bench/oversell.py): buyers race over HTTP, against gunicorn and
PostgreSQL, for the last slots of a host; exactly K win every trial and the capacity identities
hold. The long form (10,000 trials) is `make oversell ARGS="--trials 10000"`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def test_exactly_k_of_the_racing_buyers_win_every_trial():
    if connection.vendor != "postgresql":
        pytest.skip("the trials run gunicorn on PostgreSQL")
    params = connection.settings_dict
    user, host, port = params.get("USER") or "postgres", params.get("HOST") or "127.0.0.1", params.get("PORT") or 5432
    server = f"postgres://{user}@{host}:{port}/postgres"
    result = subprocess.run(
        [
            sys.executable,
            "bench/oversell.py",
            "--trials",
            "3",
            "--buyers",
            "30",
            "--slots",
            "2",
            "--workers",
            "2",
            "--database",
            f"oversell_ci_{os.getpid()}",
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": server},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "exactly 2 won every trial" in result.stdout
