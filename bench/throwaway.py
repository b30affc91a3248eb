"""A throwaway test database for the benchmarks: Django set up with the test settings, a fresh
database (SQLite in memory by default; PostgreSQL with DATABASE_URL) with the catalog loaded, and
dropped at the end whatever happens."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings.test")


@contextmanager
def throwaway_database() -> Iterator[Any]:
    """Yields Django's default connection to the new database."""
    # Django is set up here, not at import: the settings module must be chosen first.
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    from marketplace.services import catalog_sync

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        catalog_sync()
        yield connection
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def copy_columns(model, overrides: dict[str, str], *, source: str) -> tuple[str, str]:
    """For `INSERT INTO <model's table> (<names>) SELECT <select> FROM <table> AS <source> ...`:
    every column but the primary key, each copied from `source` unless `overrides` gives its SQL."""
    columns = [f.column for f in model._meta.concrete_fields if not f.primary_key]
    names = ", ".join(f'"{column}"' for column in columns)
    select = ", ".join(overrides.get(column, f'{source}."{column}"') for column in columns)
    return names, select
