"""Database roles (docs/database-roles.md): the app connects as a role that owns no table, the owner migrates.

With DATABASE_OWNER_URL set, settings add a second alias, "owner", for the same database, used only by
`manage.py migrate --database owner`. This router keeps every query of the running app on "default" (the
app role), even for an object that was loaded through "owner", so the owner's connection is never reached
from application code.

It deliberately does not turn migrations off on "default": Django records a migration as applied even
when a router skips all of its operations, so `manage.py migrate` on "default" would mark migrations
applied without running them. Run as the app role, it fails instead (the app role can create nothing and
owns nothing).
"""

from __future__ import annotations

from typing import Any

APP = "default"
OWNER = "owner"


class OwnerMigrationsRouter:
    def db_for_read(self, model: type, **hints: Any) -> str:
        return APP

    def db_for_write(self, model: type, **hints: Any) -> str:
        return APP

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # both aliases are the same database

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        return None  # migrate runs wherever it is pointed: --database owner (or DATABASE_URL of the owner)
