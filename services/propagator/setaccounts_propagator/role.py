"""What every role's handler is built from, and what the consume loop may ask of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka import AIOKafkaProducer, ConsumerRecord
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import EventError
from setaccounts.jobs import JobStore
from setaccounts.settings import Settings
from setaccounts.store.propagation import Propagation
from setaccounts.store.resources import ResourceStore

Record: TypeAlias = ConsumerRecord[bytes, bytes]


@dataclass(frozen=True)
class Item:
    """A decoded event with the record it came from."""

    record: Record
    event: Any


@dataclass
class RoleHandler:
    """A role's handler: called with each consumed batch, in partition order (wired in bootstrap.py).

    Raise `PermanentFailure` for input that can never succeed; anything else is retried.
    """

    settings: Settings
    db: AsyncDatabase[dict[str, Any]]
    producer: AIOKafkaProducer

    def __post_init__(self) -> None:
        self.jobs = JobStore(self.db)
        self.resources = ResourceStore(self.db)
        self.propagation = Propagation(self.resources)

    async def __call__(self, items: Sequence[Item]) -> None:
        raise NotImplementedError

    async def reject(self, record: Record, error: EventError) -> bool:
        """Answer a record that is not a valid event; False sends it to the dead-letter topic."""
        return False

    async def give_up(self, item: Item, error: BaseException | None) -> None:
        """Called after a record was dead-lettered for failing again and again."""

    async def ping(self) -> None:
        """Raise unless the store answers (asked before a record is taken for poison)."""
        await self.db.command("ping")
