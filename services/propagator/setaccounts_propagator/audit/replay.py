"""Read topics from the beginning without a consumer group, and watch the results topic for an answer.

No group id means no committed offsets and no rebalance: the audit never disturbs the propagator's groups
and never writes to Kafka while reading. A read stops at the end offsets captured when it started, so
it always terminates, even while the propagator keeps producing.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from setaccounts.events import CommandFinished, EventError, SetAccountsCommand, decode
from setaccounts.events.base import COMMAND_ID_PATTERN
from setaccounts.settings import Settings
from setaccounts_propagator.audit.history import History, Rejected

Record: TypeAlias = Any  # an aiokafka ConsumerRecord[bytes, bytes]; aiokafka ships no type information
WaitForFinish = Callable[[str, float], Awaitable[CommandFinished]]
PROGRESS_THRESHOLD = 20_000  # records: below this a read is quick and a bar would only flicker
STALL_SECONDS = 60.0
COMMAND_ID = re.compile(COMMAND_ID_PATTERN)


class ReplayStalled(RuntimeError):
    """The broker stopped returning records before the end offsets were reached; retriable."""

    retriable = True


def _consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        client_id=f"setaccounts-audit-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )


async def partitions_of(settings: Settings, topic: str) -> list[TopicPartition]:
    """The topic's partitions; none if it does not exist (a metadata request for it could create it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            return []
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    numbers = sorted(p["partition"] for t in described if t["topic"] == topic for p in t["partitions"])
    return [TopicPartition(topic, n) for n in numbers]


async def read_topic(
    settings: Settings, topic: str, *, progress: bool | None = None
) -> AsyncIterator[Record]:
    """Every record of `topic` from the beginning up to the end offsets seen at start, partition by batch."""
    tps = await partitions_of(settings, topic)
    if not tps:
        return
    consumer = _consumer(settings)
    await consumer.start()
    try:
        consumer.assign(tps)
        start = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > start[tp]}
        if not remaining:
            return
        await consumer.seek_to_beginning(*remaining)
        total = sum(end[tp] - start[tp] for tp in remaining)
        show = sys.stderr.isatty() if progress is None else progress
        with _bar(topic, total, show and total >= PROGRESS_THRESHOLD) as advance:
            last_progress = time.monotonic()
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=500)
                for tp, records in batches.items():
                    kept = [r for r in records if r.offset < end[tp]]
                    advance(len(kept))
                    for record in kept:
                        yield record
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
                if batches:
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > STALL_SECONDS:
                    raise ReplayStalled(f"no records from {topic} for {STALL_SECONDS:.0f}s before its end")
    finally:
        await consumer.stop()


@contextmanager
def _bar(topic: str, total: int, show: bool) -> Iterator[Callable[[int], None]]:
    """A transient progress bar on stderr for long reads; a no-op otherwise (pipes, tests)."""
    if not show:
        yield lambda _n: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task(f"reading {topic}", total=total)
        yield lambda n: progress.advance(task, n)


@dataclass
class Loaded:
    """The folded history plus what could not be read, so the log can say how complete it is."""

    history: History = field(default_factory=History)
    undecodable: int = 0


async def load_history(settings: Settings, *, progress: bool | None = None) -> Loaded:
    """Replay the commands and results topics into a History (read-only)."""
    loaded = Loaded()
    async for record in read_topic(settings, settings.topics.commands, progress=progress):
        try:
            command = decode("commands", record.value)
        except EventError:
            rejected = rejected_command(record)
            if rejected is None:
                loaded.undecodable += 1  # dead-lettered by the planner: never executed, never answered
            else:
                loaded.history.add_rejected(rejected)
            continue
        if isinstance(command, SetAccountsCommand):
            loaded.history.add_command(command, (record.partition, record.offset))
    async for record in read_topic(settings, settings.topics.results, progress=progress):
        if _header(record, "event-type") in {"BatchApplied", "PartitionDone"}:
            continue  # the bulk of the topic, and nothing the log shows: skip parsing it
        try:
            loaded.history.add_result(decode("results", record.value))
        except EventError:
            loaded.undecodable += 1
    return loaded


def rejected_command(record: Record) -> Rejected | None:
    """An invalid command that still names a valid command id (the planner answers those with a failure)."""
    try:
        envelope = json.loads(record.value or b"")
    except ValueError:
        return None
    command_id = envelope.get("command_id") if isinstance(envelope, dict) else None
    if not isinstance(command_id, str) or not COMMAND_ID.match(command_id):
        return None
    target, by = envelope.get("target"), envelope.get("requested_by")
    return Rejected(
        command_id=command_id,
        target=target if isinstance(target, str) else None,
        requested_at=_event_time(envelope.get("requested_at"))
        or datetime.fromtimestamp(record.timestamp / 1000, UTC),
        requested_by=by if isinstance(by, str) else None,
        position=(record.partition, record.offset),
    )


def _event_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _header(record: Record, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode(errors="replace")
    return None


@asynccontextmanager
async def watch_results(settings: Settings) -> AsyncIterator[WaitForFinish]:
    """Yields `wait(command_id, seconds)`; offsets are taken on entry, so publish inside the block."""
    tps = await partitions_of(settings, settings.topics.results)
    consumer = _consumer(settings)
    await consumer.start()
    try:
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, end[tp])

        async def wait(command_id: str, within: float) -> CommandFinished:
            deadline, key = time.monotonic() + within, command_id.encode()
            while time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        if record.key == key and _header(record, "event-type") == "CommandFinished":
                            return CommandFinished.model_validate_json(record.value or b"")
            raise TimeoutError(
                f"no CommandFinished for {command_id} within {within:.0f}s; "
                f"the propagator may be down or busy: check `audit log` later"
            )

        yield wait
    finally:
        await consumer.stop()
