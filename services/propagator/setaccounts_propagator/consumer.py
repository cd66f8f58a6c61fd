"""The one consume loop every role runs: decode, handle, dead-letter what cannot succeed, then commit.

Offsets are committed only after the handler's writes succeeded, so a crash redelivers; every handler is
idempotent, so redelivery changes nothing. One bad record never stops the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from setaccounts.events import Channel, EventError
from setaccounts.failures import PermanentFailure
from setaccounts.kafka import dead_letter
from setaccounts.metrics import BATCH_SECONDS, RECORDS
from setaccounts_propagator.role import Item, Record, RoleHandler

log = structlog.get_logger(__name__)


@dataclass
class ConsumerLoop:
    role: str
    channel: Channel  # the contract of the topic it reads
    consumer: AIOKafkaConsumer
    producer: AIOKafkaProducer
    deadletter_topic: str
    handler: RoleHandler
    max_retries: int = 5
    retry_backoff: float = 0.2

    async def run(self, stop: asyncio.Event) -> None:
        await self.consumer.start()
        log.info("consumer ready", role=self.role, topics=sorted(self.consumer.subscription()))
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=200)
                if not batches:
                    continue
                records = [r for tp in sorted(batches, key=lambda t: t.partition) for r in batches[tp]]
                with BATCH_SECONDS.labels(self.role).time():
                    await self.process(records)
                await self._commit({tp: recs[-1].offset + 1 for tp, recs in batches.items()})
        finally:
            await self.consumer.stop()

    async def process(self, records: Sequence[Record]) -> None:
        items: list[Item] = []
        for record in records:
            try:
                items.append(Item(record, self.channel.decode(record.value)))
            except EventError as exc:
                if not await self.handler.reject(record, exc):
                    await self._dead_letter(record, str(exc))
        if items:
            await self._handle_with_retries(items)
        RECORDS.labels(self.role, "handled").inc(len(items))

    async def _handle_with_retries(self, items: Sequence[Item]) -> None:
        error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            try:
                await self.handler(items)
                return
            except Exception as exc:
                error = exc
                if isinstance(exc, PermanentFailure):
                    log.warning("batch refused", role=self.role, size=len(items), error=repr(exc))
                    break
                log.warning(
                    "batch failed",
                    role=self.role,
                    attempt=attempt + 1,
                    size=len(items),
                    error=repr(exc),
                    first=_where(items[0].record),
                )
                await asyncio.sleep(min(self.retry_backoff * 2**attempt, 5.0))
        if len(items) == 1:
            await self._dead_letter(items[0].record, f"gave up: {error!r}")
            try:
                await self.handler.give_up(items[0], error)
            except Exception:  # the record is parked already; keep consuming
                log.exception("give-up failed", role=self.role, **_where_fields(items[0].record))
            return
        for item in items:  # isolate the poison record: the others still go through
            await self._handle_with_retries([item])

    async def _dead_letter(self, record: Record, reason: str) -> None:
        log.error("dead-lettered", role=self.role, reason=reason, **_where_fields(record))
        RECORDS.labels(self.role, "dead-lettered").inc()
        await dead_letter(self.producer, self.deadletter_topic, record, reason, self.role)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # Partitions moved during the batch: the new owner redelivers, and handlers are idempotent.
            log.warning("commit skipped", role=self.role, error=repr(exc))


def _where_fields(record: Record) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def _where(record: Record) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"
