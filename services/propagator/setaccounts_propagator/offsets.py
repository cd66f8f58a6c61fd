"""Which offsets a loop that finishes records out of order may commit: per partition, up to the first
record still in flight.

The planner runs several commands at once (one at a time per key, `ConsumerLoop.concurrency`), so a short
command finishes while a long one before it on the same partition still fans out. Kafka keeps one committed
offset per partition, and everything below it counts as done: the commit may pass only what has finished in
an unbroken run from the front. A crash redelivers what was in flight and what finished after it; both are
idempotent (a finished job is not run again).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")  # a topic partition


@dataclass
class InFlight(Generic[P]):
    """Records taken but not yet committed, per partition in the order they were taken."""

    _pending: dict[P, dict[int, bool]] = field(default_factory=dict)  # offset → finished, in offset order
    _epochs: dict[P, int] = field(default_factory=dict)  # moves on each time a partition is forgotten

    def take(self, partition: P, offset: int) -> int:
        """Note a record taken; returns the partition's epoch, which `finish` must name."""
        self._pending.setdefault(partition, {})[offset] = False
        return self._epochs.get(partition, 0)

    def finish(self, partition: P, offset: int, epoch: int) -> None:
        """Mark a record done; one taken before its partition was forgotten is ignored (the same offset
        may have been taken again since, from another position or a recreated log)."""
        pending = self._pending.get(partition)
        if pending is not None and offset in pending and epoch == self._epochs.get(partition, 0):
            pending[offset] = True

    def commits(self) -> dict[P, int]:
        """The offsets to commit now: per partition whose finished front moved, the offset after it."""
        moved: dict[P, int] = {}
        for partition, pending in self._pending.items():
            front = None
            for offset, finished in pending.items():
                if not finished:
                    break
                front = offset
            if front is None:
                continue
            for offset in [o for o in pending if o <= front]:
                del pending[offset]
            moved[partition] = front + 1
        return moved

    def forget(self, partitions: Iterable[P]) -> None:
        """Partitions revoked or read again from another position: nothing of theirs is committed."""
        for partition in partitions:
            self._pending.pop(partition, None)
            self._epochs[partition] = self._epochs.get(partition, 0) + 1

    def partitions(self) -> list[P]:
        return list(self._pending)

    def __len__(self) -> int:
        return sum(1 for pending in self._pending.values() for done in pending.values() if not done)
