"""Recovery from a broker that lost its topics: a memory-only broker restarted, or an operator
deleted them. Both services watch for it; whichever notices first recreates the topics and ends the jobs
whose events were lost, so nothing waits for records that no longer exist.

A broker that does not answer is an outage (waited out elsewhere), not a loss. A loss is a broker that
answers without our topics, or with a partition that ended further than it ends now (or no longer exists):
a client's metadata request may already have auto-created a lost topic (a memory-only broker always does;
Apache Kafka with `auto.create.topics.enable`), so presence alone does not tell. A broker just resumed or
restarted may answer before it knows its cluster (no brokers in the answer, leaders not elected): that is
no answer (`setaccounts.kafka.topics_metadata`), and a loss is acted on only when a second look, a second
later, sees it too, since ending jobs cannot be undone. Recreating is idempotent
(`create_topics`
leaves existing topics alone) and tried at most once per back-off period; jobs are ended once per loss,
whichever service notices first (`JobStore.fail_lost`).

The consumer groups' committed offsets went with the topics; the consumers reset to the earliest offset of
the fresh topics (`auto_offset_reset="earliest"`, and the consume loop's rewind where the broker does not
answer out-of-range), which is right: nothing older than the recreation exists there.

Ending the lost jobs rather than re-driving them: a job's command, updates, end markers and results may each
be lost, and its record says how far planning got, not which of its events were read. Re-publishing the same
command would resume the fan-out after a checkpoint whose updates are gone (or not re-plan at all), so the
job would hang or count short; a re-drive is a new command (`setaccounts-audit redrive`, or the caller runs
it again), which the error tells the caller to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.cluster import ClusterMetadata
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import CommandFinished
from setaccounts.fhir.outcomes import operation_outcome
from setaccounts.jobs import JobStore
from setaccounts.kafka import publish, security, topics_metadata
from setaccounts.metrics import JOBS_FINISHED, TOPICS_MISSING
from setaccounts.settings import Settings
from setaccounts.topics import create_topics

log = structlog.get_logger(__name__)

LOST = (
    "the broker lost this job's events (it restarted without its data, or its topics were deleted); "
    "re-run the command"
)
LOST_HTTP_STATUS = 503


def emptied(before: Mapping[TopicPartition, int], now: Mapping[TopicPartition, int]) -> list[str]:
    """Topics with a partition that now ends before it ended `before`, or no longer exists: they were
    recreated meanwhile (end offsets never go back otherwise; retention moves only the start)."""
    return sorted({tp.topic for tp, end in before.items() if now.get(tp, -1) < end})


@dataclass
class TopicRecovery:
    """Checks that the topics are whole; recreates missing ones and ends the jobs whose events were lost."""

    settings: Settings
    db: AsyncDatabase[dict[str, Any]]
    producer: AIOKafkaProducer
    service: str
    backoff_seconds: float = 5.0
    confirm_seconds: float = 1.0
    """How long after seeing a loss the broker is asked again, before anything is recreated or ended."""
    _last_attempt: float = field(default=-float("inf"), init=False)
    _last_recreated: bool = field(default=False, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    _ends: dict[TopicPartition, int] = field(default_factory=dict, init=False)
    _whole_at: datetime | None = field(default=None, init=False)
    _offsets: AIOKafkaConsumer | None = field(default=None, init=False)
    _offsets_lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)
    losses: int = field(default=0, init=False)
    """How many losses this process has learnt of, by its own check or from the loss another service
    recorded: consumers read their topics again from the start when it changes (`ConsumerLoop.losses`)."""
    _loss_seen: datetime | None = field(default=None, init=False)
    _loss_read: bool = field(default=False, init=False)

    async def check(self) -> bool:
        """True when every topic exists, after recreating lost ones if the back-off allows (raises when the
        broker does not answer)."""
        await self._learn_of_losses()
        missing, shrunk, ends = await self._look()
        if not missing and not shrunk:
            self._ends, self._whole_at = ends, datetime.now(UTC)
            return True
        async with self._lock:
            if time.monotonic() - self._last_attempt < self.backoff_seconds:
                return self._last_recreated  # another caller just tried (the broker may not list them yet)
            # Ending jobs cannot be undone: a loss is acted on only when a second look confirms it.
            await asyncio.sleep(self.confirm_seconds)
            missing, shrunk, ends = await self._look()
            if not missing and not shrunk:
                log.warning("a loss of topics was not confirmed by a second look: nothing was done")
                self._ends, self._whole_at = ends, datetime.now(UTC)
                return True
            self._last_attempt, self._last_recreated = time.monotonic(), False
            log.warning("the broker lost topics: recreating them", missing=missing, emptied=shrunk)
            try:
                await create_topics(self.settings)
            except Exception as exc:  # refused or the broker went away: report not ready, try again later
                log.warning("could not recreate the topics", error=repr(exc))
                return False
            self._last_recreated = True
            if set(missing + shrunk) - {self.settings.topics.deadletter}:
                await self._end_lost_jobs(self._whole_at or datetime.now(UTC))
            self._ends, self._whole_at = {}, None  # the next check reads the fresh topics
            self.losses += 1
            await self._learn_of_losses(count=False)
            TOPICS_MISSING.labels(self.service).set(0)
            return True

    async def _look(self) -> tuple[list[str], list[str], dict[TopicPartition, int]]:
        """The topics the broker does not have, those it has emptied since the last look, and where every
        partition ends now (raises when the broker does not answer, or cannot tell yet)."""
        metadata = await self.metadata()
        present = metadata.topics()
        missing = [name for name in self.settings.topics.all() if name not in present]
        ends = await self._end_offsets(
            [
                TopicPartition(name, partition)
                for name in self.settings.topics.all()
                if name in present
                for partition in metadata.partitions_for_topic(name) or ()
            ]
        )
        TOPICS_MISSING.labels(self.service).set(len(missing))
        return missing, emptied(self._ends, ends), ends

    async def metadata(self) -> ClusterMetadata:
        """The broker's metadata of the service's topics (raises when the broker does not answer)."""
        return await topics_metadata(self.producer.client, self.settings.topics.all())

    async def _learn_of_losses(self, count: bool = True) -> None:
        """Count a loss another service handled since the last look. Its check may have seen the topics
        emptied before ours did, and a recreated topic can outgrow the ends ours remembers; a consumer
        whose position from the lost topic falls inside the fresh one would skip that topic's first
        records, so every loss, whoever noticed it, sends the consumers back to the start."""
        seen = await JobStore(self.db).last_loss()
        if seen != self._loss_seen and self._loss_read and count:
            log.warning("another service handled a loss of the broker's topics", at=str(seen))
            self.losses += 1
        self._loss_seen, self._loss_read = seen, True

    async def recreate(self) -> list[str]:
        """At start: create the missing topics and, if any but the dead-letter topic was missing, end the
        jobs whose events were on it. Returns the names created."""
        created = await create_topics(self.settings)
        if set(created) - {self.settings.topics.deadletter}:
            await self._end_lost_jobs(datetime.now(UTC))
        return created

    async def _end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Where each partition ends now, asked without a group (nothing is joined or committed)."""
        if not tps:
            return {}
        async with self._offsets_lock:
            if self._offsets is None:
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self.settings.kafka_bootstrap_servers,
                    **security(self.settings),
                    group_id=None,
                    enable_auto_commit=False,
                    request_timeout_ms=10_000,
                )
                await consumer.start()
                self._offsets = consumer
        try:
            ends: dict[TopicPartition, int] = await asyncio.wait_for(self._offsets.end_offsets(tps), 5)
        except BaseException:
            await self.close()  # its metadata may be stale (a topic deleted meanwhile): a new one next time
            raise
        return ends

    async def _end_lost_jobs(self, whole_at: datetime) -> None:
        """Every job created until now had its events on the lost topics: end it with the reason, and answer
        it on the fresh results topic for the services that wait there."""
        outcome = operation_outcome("transient", LOST)
        ended = await JobStore(self.db).fail_lost(whole_at, outcome, LOST_HTTP_STATUS)
        for job in ended:
            JOBS_FINISHED.labels("error").inc()
            finished = CommandFinished(
                command_id=job.id,
                status="error",
                resources_updated=job.resources_updated,
                resources_changed=job.resources_changed,
                outcome=outcome,
            )
            with contextlib.suppress(Exception):  # the job is ended either way; the answer is a courtesy
                await publish(self.producer, self.settings.topics.results, finished)
        if ended:
            log.error("jobs ended: the broker lost their events", jobs=[job.id for job in ended])

    async def watch(self, stop: asyncio.Event, interval_seconds: float = 2.0) -> None:
        """Check every `interval_seconds` until `stop`; a broker that does not answer is left to the
        outage handling (its clients wait), and checked again next time."""
        try:
            while not stop.is_set():
                try:
                    await self.check()
                except Exception as exc:
                    log.debug("topic check failed", error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval_seconds)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._offsets is not None:
            await self._offsets.stop()
            self._offsets = None
