"""Reliability: rolling 30-day uptime from heartbeat gaps, with failed instance starts counted
against it. Pure function plus the service that stores it and (de)verifies hosts."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

WINDOW = timedelta(days=30)
FAILED_START_PENALTY = timedelta(minutes=30)
DEVERIFY_BELOW = Decimal("0.90")


def uptime(
    *, now: datetime, observed_since: datetime, outages: list[tuple[datetime, datetime | None]], failed_starts: int
) -> Decimal:
    """Share of the last 30 days (or since the host was first seen) the host was up, in [0, 1]."""
    start = max(now - WINDOW, observed_since)
    window = (now - start).total_seconds()
    if window <= 0:
        return Decimal(1)
    down = 0.0
    for began, ended in outages:
        began, ended = max(began, start), min(ended or now, now)
        if ended > began:
            down += (ended - began).total_seconds()
    down += failed_starts * FAILED_START_PENALTY.total_seconds()
    score = max(0.0, 1 - down / window)
    return Decimal(str(score)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
