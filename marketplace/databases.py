"""Which database a read goes to: the primary, or a read replica for reads that may lag.

With DATABASE_REPLICA_URL set, settings add the alias "replica" (a streaming replica of the primary).
Searches and market pages read there (`read_alias`); everything else, every write, and any read made
inside a transaction (which must see that transaction's own writes and the rows it locked) stays on
the primary. A replica lags by its replication delay: an offer listed a moment ago may show a moment
later, and an order is always decided on the primary under its locks, so nothing is sold twice.
"""

from __future__ import annotations

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

REPLICA = "replica"


def read_alias() -> str:
    """The replica when one is configured and no transaction is open on the primary, else the primary."""
    if REPLICA in settings.DATABASES and not connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return REPLICA
    return DEFAULT_DB_ALIAS
