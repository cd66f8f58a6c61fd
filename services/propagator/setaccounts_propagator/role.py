"""What every role's handler is: called by the consume loop with each batch, built in bootstrap.py from
the stores and the publisher it uses (`ports.py`)."""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka import ConsumerRecord

from setaccounts.events import EventError

Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass(frozen=True)
class Item:
    """A decoded event with the record it came from."""

    record: Record
    event: Any


class RoleHandler:
    """A role's handler: called with each consumed batch, in partition order.

    Raise `PermanentFailure` for input that can never succeed; anything else is retried.
    """

    async def __call__(self, items: Sequence[Item]) -> None:
        raise NotImplementedError

    def order_key(self, item: Item) -> Hashable:
        """Where the loop runs records concurrently (`ConsumerLoop.concurrency`): records with the same key
        are handled one batch after another, in offset order. By default the record's Kafka key."""
        key: bytes | None = item.record.key
        return key

    def touches(self, item: Item) -> Collection[str]:
        """The resources handling `item` writes: a record waits for any running batch that writes one of
        them, so two keys never reorder their writes to one resource."""
        return ()

    async def on_invalid(self, record: Record, error: EventError) -> bool:
        """Answer a record that is not a valid event; False sends it to the dead-letter topic."""
        return False

    async def give_up(self, item: Item, error: BaseException | None) -> None:
        """Called after a record was dead-lettered for failing again and again."""
