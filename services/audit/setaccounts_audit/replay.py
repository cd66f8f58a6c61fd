"""Read topics from the beginning without a consumer group, and watch the results topic for an answer.

No group id means no committed offsets and no rebalance: the audit never disturbs the propagator's groups
and never writes to Kafka while reading. A read stops at the end offsets captured when it started, so
it always terminates, even while the propagator keeps producing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from setaccounts.events import (
    COMMANDS,
    RESULTS,
    CommandFinished,
    EventError,
    SetAccountsCommand,
    command_envelope,
)
from setaccounts.kafka import Security, security
from setaccounts.settings import Settings
from setaccounts.telemetry import trace_id_in
from setaccounts_audit.command_log import CommandLog, Rejected

Record: TypeAlias = Any  # an aiokafka ConsumerRecord[bytes, bytes]; aiokafka ships no type information
WaitForFinish = Callable[[str, float], Awaitable[CommandFinished]]
PROGRESS_THRESHOLD = 20_000  # records: below this a read is quick and a bar would only flicker


async def partitions_of(
    bootstrap_servers: str, topic: str, *, secured: Security | None = None
) -> list[TopicPartition]:
    """A topic's partitions; none if it does not exist (asked of the admin API, which never creates it).

    `secured`: the connection options of `security(settings)` (none: plaintext)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **(secured or {}))
    await admin.start()
    try:
        if topic not in set(await admin.list_topics()):
            return []
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    numbers = sorted(p["partition"] for t in described if t["topic"] == topic for p in t["partitions"])
    return [TopicPartition(topic, n) for n in numbers]


class ReplayStalled(RuntimeError):
    """The broker stopped returning records before the end offsets were reached; retriable."""


async def read_from_start(
    bootstrap_servers: str,
    topic: str,
    *,
    on_start: Callable[[int], None] | None = None,
    stall_seconds: float = 60.0,
    secured: Security | None = None,
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record of `topic` from the beginning up to the end offsets seen at start.

    No group id: no committed offsets, no rebalance, so a replay never disturbs the live consumer groups,
    and it always ends even while producers keep writing. `on_start` receives the number of records ahead.
    """
    tps = await partitions_of(bootstrap_servers, topic, secured=secured)
    if not tps:
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        **(secured or {}),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        start, end = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if end[tp] > start[tp]}
        if on_start is not None:
            on_start(sum(end[tp] - start[tp] for tp in remaining))
        if not remaining:
            return
        await consumer.seek_to_beginning(*remaining)
        last_progress = time.monotonic()
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < end[tp]:
                        yield record
            for tp in list(remaining):
                if await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
            if batches:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > stall_seconds:
                raise ReplayStalled(f"no records from {topic} for {stall_seconds:.0f}s before its end")
    finally:
        await consumer.stop()


async def replay_with_progress(
    settings: Settings, topic: str, *, progress: bool | None = None
) -> AsyncIterator[Record]:
    """Every record of `topic` up to the end offsets seen at start, with a progress bar on long reads."""
    show = sys.stderr.isatty() if progress is None else progress
    with _bar(topic, show) as bar:
        async for record in read_from_start(
            settings.kafka_bootstrap_servers, topic, on_start=bar.start, secured=security(settings)
        ):
            bar.advance(1)
            yield record


class _Bar:
    """A transient progress bar on stderr for long reads; a no-op otherwise (pipes, tests, short reads)."""

    def __init__(self, topic: str, show: bool) -> None:
        self.topic, self.show = topic, show
        self.progress: Progress | None = None
        self.task: Any = None

    def start(self, total: int) -> None:
        if self.show and total >= PROGRESS_THRESHOLD:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(f"reading {self.topic}", total=total)

    def advance(self, count: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, count)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@contextmanager
def _bar(topic: str, show: bool) -> Iterator[_Bar]:
    bar = _Bar(topic, show)
    try:
        yield bar
    finally:
        bar.stop()


@dataclass
class Loaded:
    """The folded command log plus what could not be read, so the log can say how complete it is."""

    log: CommandLog = field(default_factory=CommandLog)
    undecodable: int = 0


async def load_log(settings: Settings, *, progress: bool | None = None) -> Loaded:
    """Replay the commands and results topics into a CommandLog (read-only)."""
    loaded = Loaded()
    async for record in replay_with_progress(settings, settings.topics.commands, progress=progress):
        try:
            command = COMMANDS.decode(record.value)
        except EventError:
            rejected = rejected_command(record)
            if rejected is None:
                loaded.undecodable += 1  # dead-lettered by the planner: never executed, never answered
            else:
                loaded.log.add_rejected(rejected)
            continue
        if isinstance(command, SetAccountsCommand):
            loaded.log.add_command(command, (record.partition, record.offset), trace_id_in(record.headers))
    async for record in replay_with_progress(settings, settings.topics.results, progress=progress):
        if _header(record, "event-type") in {"BatchApplied", "PartitionDone"}:
            continue  # the bulk of the topic, and nothing the log shows: skip parsing it
        try:
            loaded.log.add_result(RESULTS.decode(record.value))
        except EventError:
            loaded.undecodable += 1
    return loaded


def rejected_command(record: Record) -> Rejected | None:
    """An invalid command that still names a valid command id (the planner answers those with a failure)."""
    envelope = command_envelope(record.value)
    if envelope is None:
        return None
    command_id: str = envelope["command_id"]
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
    secured = security(settings)
    tps = await partitions_of(settings.kafka_bootstrap_servers, settings.topics.results, secured=secured)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None, enable_auto_commit=False, **secured
    )
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
