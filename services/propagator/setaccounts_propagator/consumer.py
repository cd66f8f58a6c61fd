"""The one consume loop every role runs: decode, handle, dead-letter what cannot succeed, then commit.

Offsets are committed only after the handler's writes succeeded, so a crash redelivers; every handler is
idempotent, so redelivery changes nothing. One bad record never stops the loop.

Failures come in three kinds: a `PermanentFailure` (the input is wrong) is dead-lettered at once; an outage
(the store or the broker does not answer, see `is_outage`) is waited out without limit, the batch held and
its partitions paused but still polled, so the group keeps the member; anything else is retried a few
times, then the batch is split to find the poison record, which is dead-lettered only if the dependencies
answer meanwhile (otherwise it, too, is an outage).

Two ways to take records (`concurrency`): a role whose records are small runs each poll's batch whole and
commits after it (the applier, the aggregator: one store round per batch). A role whose records can take
long, the planner (a command's fan-out runs as long as its job), runs up to `concurrency` records at once,
one at a time per record key (per target: that target's commands keep their order), and commits each
partition up to its first unfinished record (`offsets.InFlight`), so a command never waits behind another
target's fan-out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from opentelemetry.trace import Tracer

from setaccounts.events import Channel, EventError
from setaccounts.failures import PermanentFailure, is_outage
from setaccounts.kafka import dead_letter
from setaccounts.metrics import BATCH_SECONDS, OUTAGE, RECORDS
from setaccounts.telemetry import Traced, consuming
from setaccounts_propagator.offsets import InFlight
from setaccounts_propagator.pacing import BatchSizer
from setaccounts_propagator.role import Item, Record, RoleHandler

log = structlog.get_logger(__name__)
T = TypeVar("T")
COMMIT_TIMEOUT_SECONDS = 30
POLL_MS = 500  # longest wait for records before the loop looks at stop, losses and positions again
REWIND_CHECK_SECONDS = 2.0  # how often an idle loop asks whether a partition now ends before its position


@dataclass
class ConsumerLoop:
    role: str
    channel: Channel  # the contract of the topic it reads
    consumer: AIOKafkaConsumer
    producer: AIOKafkaProducer
    deadletter_topic: str
    handler: RoleHandler
    ping: Callable[[], Awaitable[object]]
    """Raises unless the store answers: asked before a record is taken for poison."""
    max_retries: int = 5
    retry_backoff: float = 0.2
    outage_backoff_cap: float = 10.0
    losses: Callable[[], int] = lambda: 0
    """How many losses of the broker's topics this process knows of (`TopicRecovery.losses`)."""
    concurrency: int = 0
    """0: each poll's batch is handled whole, then committed. N: up to N records in flight, in tasks per
    the handler's `order_key`, a key's tasks one after another."""
    sizer: BatchSizer | None = None
    """Sizes each poll so a batch takes about so long (`pacing.BatchSizer`); None: as many as polled."""
    tracer: Tracer | None = None
    """Makes each handled batch's spans in its commands' traces (`telemetry.consuming`); None: off."""
    _losses_seen: int = 0
    _rewind_checked: float = 0.0
    _in_flight: InFlight[TopicPartition] = field(default_factory=InFlight)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _last_of_key: dict[Hashable, asyncio.Task[None]] = field(default_factory=dict)
    _holders: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # member → last task with it
    _finished: asyncio.Event = field(default_factory=asyncio.Event)
    _failure: BaseException | None = None

    async def run(self, stop: asyncio.Event) -> None:
        if self.concurrency:
            topics = sorted(self.consumer.subscription())
            self.consumer.subscribe(topics=topics, listener=_Revocations(self))
        await self.consumer.start()
        log.info("consumer ready", role=self.role, topics=sorted(self.consumer.subscription()))
        try:
            self._losses_seen = self.losses()
            while not stop.is_set():
                await self._restart_after_loss()
                if self.concurrency:
                    await self._take_some()
                else:
                    await self._take_batch()
        finally:
            if self.concurrency:
                commits = self._in_flight.commits()
                if commits:
                    await self._commit(commits)
                await self._drop_all()
            await self.consumer.stop()

    async def _take_batch(self) -> None:
        """One poll's records, handled in order, then committed."""
        batches = await self.consumer.getmany(
            timeout_ms=POLL_MS, max_records=self.sizer.size() if self.sizer else None
        )
        if not batches:
            await self._rewind_past_end()
            return
        records = [r for tp in sorted(batches, key=lambda t: t.partition) for r in batches[tp]]
        started = time.perf_counter()
        await self.process(records)
        took = time.perf_counter() - started
        BATCH_SECONDS.labels(self.role).observe(took)
        if self.sizer is not None:
            self.sizer.observe(len(records), took)
        await self._commit({tp: recs[-1].offset + 1 for tp, recs in batches.items()})

    async def _take_some(self) -> None:
        """Start a task for each key's records in a poll while fewer than `concurrency` records run (it
        waits for the key's task before it, and for any running task that holds one of its members), then
        commit the partitions whose finished front moved."""
        if self._failure is not None:
            raise self._failure
        room = self.concurrency - len(self._in_flight)
        if room <= 0:  # full: wait for a task to finish, still polling (paused) so the group keeps us
            self._finished.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), POLL_MS / 1000)
            assigned = list(self.consumer.assignment())
            self.consumer.pause(*assigned)
            try:
                await self.consumer.getmany(timeout_ms=0)
            finally:
                self.consumer.resume(*[tp for tp in assigned if tp in self.consumer.assignment()])
        else:
            size = min(room, self.sizer.size()) if self.sizer else room
            batches = await self.consumer.getmany(timeout_ms=POLL_MS, max_records=size)
            if not batches:
                await self._rewind_past_end()
            records = [r for tp in sorted(batches, key=lambda t: t.partition) for r in batches[tp]]
            for key, chunk in self._chunks(records).items():
                self._start(key, chunk)
        commits = self._in_flight.commits()
        if commits:
            await self._commit(commits)

    def _chunks(self, records: Sequence[Record]) -> dict[Hashable, list[Item | _Refused]]:
        """A poll's records by the handler's ordering key, each in offset order; a record that does not
        decode goes under its record key, to be refused in turn."""
        chunks: dict[Hashable, list[Item | _Refused]] = {}
        for record in records:
            entry: Item | _Refused
            try:
                entry = Item(record, self.channel.decode(record.value))
                key = self.handler.order_key(entry)
            except EventError as exc:
                entry, key = _Refused(record, exc), ("undecodable", record.key)
            chunks.setdefault(key, []).append(entry)
        return chunks

    def _start(self, key: Hashable, chunk: list[Item | _Refused]) -> None:
        records = [c.record for c in chunk]
        touches = {m for c in chunk if isinstance(c, Item) for m in self.handler.touches(c)}
        before = {t for t in (self._last_of_key.get(key), *map(self._holders.get, touches)) if t is not None}
        partitions = [TopicPartition(r.topic, r.partition) for r in records]
        taken = [
            (tp, r.offset, self._in_flight.take(tp, r.offset))
            for tp, r in zip(partitions, records, strict=True)
        ]
        task = asyncio.create_task(
            self._run_chunk(key, chunk, taken, touches, before), name=f"{self.role}:{key}"
        )
        self._last_of_key[key] = task
        for member in touches:
            self._holders[member] = task
        self._tasks.add(task)

    async def _run_chunk(
        self,
        key: Hashable,
        chunk: list[Item | _Refused],
        taken: list[tuple[TopicPartition, int, int]],
        touches: set[str],
        before: set[asyncio.Task[None]],
    ) -> None:
        try:
            if before:
                await asyncio.wait(before)  # the tasks this one must follow, however they ended
            started = time.perf_counter()
            items = [c for c in chunk if isinstance(c, Item)]
            for refused in [c for c in chunk if isinstance(c, _Refused)]:
                await self._refuse(refused.record, refused.error)
            await self._handle(items)
            took = time.perf_counter() - started
            BATCH_SECONDS.labels(self.role).observe(took)
            if self.sizer is not None and items:
                self.sizer.observe(len(items), took)
            for tp, offset, epoch in taken:
                self._in_flight.finish(tp, offset, epoch)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handled failures never get here: a bug, so stop the loop
            log.exception("record task failed", role=self.role, key=str(key))
            self._failure = exc
        finally:
            task = asyncio.current_task()
            self._tasks.discard(task)
            if self._last_of_key.get(key) is task:
                del self._last_of_key[key]
            for member in touches:
                if self._holders.get(member) is task:
                    del self._holders[member]
            self._finished.set()

    async def _drop_all(self) -> None:
        """Stop every running task and forget every offset taken: whoever reads the partitions next (this
        loop after a rebalance, or another member) reads the unfinished records again from the last commit
        (a cancelled fan-out resumes from its checkpoint; a re-applied update is absorbed by its mark)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._tasks.clear()
        self._last_of_key.clear()
        self._holders.clear()
        self._in_flight.forget(self._in_flight.partitions())

    async def _revoked(self, revoked: Sequence[TopicPartition]) -> None:
        """Before a rebalance moves partitions (aiokafka revokes all of them, then assigns afresh): commit
        what finished, stop the rest; positions restart from the commits."""
        commits = self._in_flight.commits()
        if commits:
            await self._commit(commits)
        await self._drop_all()

    async def _restart_after_loss(self) -> None:
        """After the broker lost the topics, read them from the start: a position left from the lost topic
        may lie inside the fresh one and would skip its first records. What was processed already is
        absorbed (marks, watermarks)."""
        losses = self.losses()
        if losses == self._losses_seen:
            return
        self._losses_seen = losses
        assigned = list(self.consumer.assignment())
        log.warning("the broker lost its topics: reading them from the start", role=self.role)
        if assigned:
            await self._drop_all()  # what runs belongs to the lost topics
            await self.consumer.seek_to_beginning(*assigned)

    async def _rewind_past_end(self) -> None:
        """A partition whose log now ends before our position was recreated (a broker that lost its data, a
        topic deleted and created again), and a commit from before may have put us there. Kafka answers such
        a fetch with an out-of-range error and the client resets to the earliest offset; a broker that
        answers with no records instead (the memory-only development broker does) would leave the consumer
        waiting there for ever: rewind as that reset would. Asked at most
        every `REWIND_CHECK_SECONDS`: each question costs a round of position lookups, and an idle loop
        would otherwise ask several times a second."""
        now = time.monotonic()
        if now - self._rewind_checked < REWIND_CHECK_SECONDS:
            return
        self._rewind_checked = now
        for tp in self.consumer.assignment():
            if tp not in self.consumer.assignment():
                continue  # revoked by a rebalance while an earlier partition's position was awaited
            highwater = self.consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await asyncio.wait_for(self.consumer.position(tp), 1)
            except (IllegalStateError, TimeoutError):
                continue  # reassigned or being reset meanwhile
            if position > highwater:
                log.warning(
                    "partition ends before the position: reading it from its start",
                    role=self.role,
                    partition=str(tp),
                    position=position,
                    end=highwater,
                )
                self._in_flight.forget([tp])
                await self.consumer.seek_to_beginning(tp)

    async def process(self, records: Sequence[Record]) -> None:
        """Handle the records in their order: an invalid one is answered (or dead-lettered) only after the
        valid ones before it, so a rejection never overtakes the command it might concern."""
        items: list[Item] = []
        for record in records:
            try:
                items.append(Item(record, self.channel.decode(record.value)))
            except EventError as exc:
                await self._handle(items)
                items = []
                await self._refuse(record, exc)
        await self._handle(items)

    async def _refuse(self, record: Record, error: EventError) -> None:
        if not await self._through_outages(lambda: self.handler.on_invalid(record, error), 1):
            await self._dead_letter(record, str(error))

    async def _handle(self, items: Sequence[Item]) -> None:
        if items:
            with consuming(self.tracer, self.role, _traced(items) if self.tracer else ()):
                await self._handle_with_retries(items)
            RECORDS.labels(self.role, "handled").inc(len(items))

    async def _handle_with_retries(self, items: Sequence[Item]) -> None:
        while True:
            error = await self._attempts(items)
            if error is None:
                return
            if isinstance(error, PermanentFailure) or await self._dependencies_answer():
                break  # a fault of the input: isolate it
            # not poison: the store went away meanwhile, so the failures say nothing about the records
        if len(items) == 1:
            await self._dead_letter(items[0].record, f"gave up: {error!r}")
            try:
                await self._through_outages(lambda: self.handler.give_up(items[0], error), 1)
            except Exception:  # the record is parked already; keep consuming
                log.exception("give-up failed", role=self.role, **_where_fields(items[0].record))
            return
        for item in items:  # isolate the poison record: the others still go through
            await self._handle_with_retries([item])

    async def _attempts(self, items: Sequence[Item]) -> Exception | None:
        """Handle the batch, retrying a few times (outages are waited out inside); the last error, if any."""
        for attempt in range(1, self.max_retries + 2):
            try:
                await self._through_outages(lambda: self.handler(items), len(items))
                return None
            except PermanentFailure as exc:
                log.warning("batch refused", role=self.role, size=len(items), error=repr(exc))
                return exc
            except Exception as exc:
                log.warning(
                    "batch failed",
                    role=self.role,
                    attempt=attempt,
                    size=len(items),
                    error=repr(exc),
                    first=_where(items[0].record),
                )
                if attempt > self.max_retries:
                    return exc
                await asyncio.sleep(min(self.retry_backoff * 2 ** (attempt - 1), 5.0))
        raise AssertionError("unreachable")

    async def _through_outages(self, step: Callable[[], Awaitable[T]], size: int) -> T:
        """Run `step`, waiting out any outage of a dependency for as long as it lasts."""
        outages = 0
        try:
            while True:
                try:
                    return await step()
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    outages += 1
                    OUTAGE.labels(self.role).set(1)
                    log.warning(
                        "dependency down; waiting", role=self.role, size=size, tries=outages, error=repr(exc)
                    )
                    await self._hold(min(self.retry_backoff * 2 ** min(outages, 16), self.outage_backoff_cap))
        finally:
            if outages:
                OUTAGE.labels(self.role).set(0)
                log.info("dependency back or gave way", role=self.role, waited_tries=outages)

    async def _hold(self, seconds: float) -> None:
        """Wait with the assigned partitions paused but polled, so the group keeps this member (and its
        heartbeat) while nothing new is taken; anything fetched meanwhile is put back. With records in
        flight the main loop keeps polling, and a record's task only sleeps."""
        if self.concurrency:
            await asyncio.sleep(seconds * random.uniform(0.5, 1.0))
            return
        assigned = list(self.consumer.assignment())
        self.consumer.pause(*assigned)
        try:
            fetched = await self.consumer.getmany(timeout_ms=int(seconds * random.uniform(500, 1000)))
        except Exception as exc:  # the broker may be the dependency that is down
            log.info("poll while waiting failed", role=self.role, error=repr(exc))
            fetched = {}
        finally:
            self.consumer.resume(*[tp for tp in assigned if tp in self.consumer.assignment()])
        for tp, records in fetched.items():  # newly assigned after a rebalance: read them again later
            self.consumer.seek(tp, records[0].offset)

    async def _dependencies_answer(self) -> bool:
        try:
            await self.ping()
        except Exception as exc:
            log.warning("dependency does not answer", role=self.role, error=repr(exc))
            return False
        return True

    async def _dead_letter(self, record: Record, reason: str) -> None:
        log.error("dead-lettered", role=self.role, reason=reason, **_where_fields(record))
        RECORDS.labels(self.role, "dead-lettered").inc()
        await self._through_outages(
            lambda: dead_letter(self.producer, self.deadletter_topic, record, reason, self.role), 1
        )

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit, or skip: an uncommitted batch is redelivered, and handlers are idempotent. Bounded in
        time, since the client retries some errors (a topic gone from a restarted broker) without end."""
        try:
            await asyncio.wait_for(self.consumer.commit(offsets), COMMIT_TIMEOUT_SECONDS)
        except (CommitFailedError, IllegalStateError, KafkaError, TimeoutError) as exc:
            log.warning("commit skipped", role=self.role, error=repr(exc))


@dataclass(frozen=True)
class _Refused:
    """A record that did not decode, taken in its turn."""

    record: Record
    error: EventError


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumerLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.loop._revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        pass


def _traced(items: Sequence[Item]) -> Iterator[Traced]:
    return ((getattr(item.event, "command_id", None), item.record.headers) for item in items)


def _where_fields(record: Record) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def _where(record: Record) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"
