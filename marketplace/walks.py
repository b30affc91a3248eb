"""Walking a whole table in bounded batches (keyset pagination), so that a beat task reaches every
row whatever their number.

A batched service function takes `after` (the last key of the previous batch; 0 to start) and
`batch_size`, handles the rows with a key above `after` in key order (at most `batch_size`), and
returns a `Walk`: what it did and where the walk goes on (`next_after`), or None once it reached the
end. Its task runs one batch per execution and enqueues the next (`marketplace.tasks.walk_on`), so
no execution is long, a killed worker loses one batch (redone: acks late), and a table ten times
larger takes ten times as many short tasks instead of being cut off at the first batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple


class Walk(NamedTuple):
    done: int  # rows acted on in this batch (what the task reports)
    next_after: int | None  # the key to continue after; None: the walk is finished


def walk_from(keys: Sequence[int], *, batch_size: int, done: int) -> Walk:
    """The Walk for a batch whose keys (in order) were `keys`: a full batch may have more after it."""
    return Walk(done=done, next_after=keys[-1] if len(keys) >= batch_size and keys else None)


def walk_to_end(service: Callable[..., Walk], **kwargs: Any) -> int:
    """Run a batched service from the start to the end in this process (what its re-enqueued task
    does over many executions); returns the sum of `done`."""
    done, after = 0, 0
    while True:
        walk = service(after=after, **kwargs)
        done += walk.done
        if walk.next_after is None:
            return done
        after = walk.next_after
