"""What the role handlers depend on: the project's own store and publisher APIs, as narrow as the handlers
use them. `bootstrap.py` wires the real ones (`JobStore`, `ResourceStore`, `Propagation`, `KafkaPublisher`);
unit tests wire in-memory fakes (`tests/helpers/fakes.py`) held to the same contracts.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Protocol

from aiokafka import AIOKafkaProducer

from setaccounts.events import Channel, Effect, Event, SetAccountsCommand
from setaccounts.events.wire import Encoded
from setaccounts.jobs import Aggregate, Job
from setaccounts.kafka import publish_many, send_encoded
from setaccounts.settings import Topics
from setaccounts.store.meta import Document
from setaccounts.store.propagation import Application


class Jobs(Protocol):
    """The steps of `setaccounts.jobs.JobStore` the roles take (its table says who writes which field)."""

    async def get(self, command_id: str) -> Job | None: ...

    async def cancelled_among(self, command_ids: list[str]) -> set[str]: ...

    async def ensure(self, command: SetAccountsCommand, trace_id: str | None = None) -> Job: ...

    async def next_seq(self, target: str) -> int: ...

    async def start_plan(
        self, command_id: str, target_seq: int, accounts_before: list[str], members: int
    ) -> Job | None: ...

    async def mark_target_written(self, command_id: str, changed: bool) -> bool: ...

    async def checkpoint(self, command_id: str, cursor: str, emitted: int) -> bool: ...

    async def finish_plan(self, command_id: str, expected: int, partitions: list[int]) -> Job | None: ...

    async def record_failure(self, command_id: str, http_status: int) -> None: ...

    async def reject(self, command_id: str, target: str | None) -> bool: ...

    async def save_aggregate(self, job: Job, aggregate: Aggregate) -> None: ...


class Resources(Protocol):
    """The reads of `setaccounts.store.resources.ResourceStore` the planner makes."""

    async def get(self, ref: str) -> Document | None: ...

    async def count_members(self, owner: str) -> int: ...

    def stream_members(self, owner: str, after: str | None, batch_size: int) -> AsyncGenerator[str, None]: ...


class Propagates(Protocol):
    """`setaccounts.store.propagation.Propagation`: the one guarded, idempotent accounts write."""

    async def apply(self, applications: Sequence[Application]) -> list[Effect]: ...


class Publisher(Protocol):
    """Sends events to channels; each returns once the broker acknowledged every record."""

    async def publish(self, channel: Channel, *events: Event) -> None:
        """Events under their own keys (and pinned partitions), in order per partition."""
        ...

    async def send_encoded(self, channel: Channel, records: Iterable[Encoded]) -> None:
        """Records encoded already, each naming its partition (a fan-out's page)."""
        ...

    async def partitions(self, channel: Channel) -> list[int]:
        """The channel's partitions, sorted."""
        ...


class KafkaPublisher:
    """The `Publisher` over the process's one producer (`kafka.publish_many` is the one way events go)."""

    def __init__(self, producer: AIOKafkaProducer, topics: Topics) -> None:
        self.producer = producer
        self.topics = topics

    async def publish(self, channel: Channel, *events: Event) -> None:
        await publish_many(self.producer, self.topics.of(channel), events)

    async def send_encoded(self, channel: Channel, records: Iterable[Encoded]) -> None:
        await send_encoded(self.producer, self.topics.of(channel), records)

    async def partitions(self, channel: Channel) -> list[int]:
        return sorted(await self.producer.partitions_for(self.topics.of(channel)))
