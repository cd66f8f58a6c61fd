"""Wires the propagator in one place: settings → clients → one consume loop per role.

Each role is its own consumer group, so each scales by partitions on its own; a process runs any subset.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.kafka import create_topics, make_consumer, make_producer
from setaccounts.mongo import ensure_indexes, make_client
from setaccounts.settings import Settings
from setaccounts_propagator.aggregator import Aggregator
from setaccounts_propagator.applier import Applier
from setaccounts_propagator.consumer import ConsumerLoop, Handler
from setaccounts_propagator.planner import Planner

log = structlog.get_logger(__name__)
HandlerFactory = Callable[[Settings, AsyncDatabase[dict[str, Any]], AIOKafkaProducer], Handler]


@dataclass(frozen=True)
class Role:
    kind: str  # the contract of its input topic
    topic: Callable[[Settings], str]
    handler: HandlerFactory
    batch: Callable[[Settings], int]
    max_poll_interval_ms: int = 300_000  # longer than any one batch may take, or the group drops the member


ROLES: dict[str, Role] = {
    # One command's fan-out runs inside one poll: allow an hour (tens of millions of members).
    "planner": Role("commands", lambda s: s.topics.commands, Planner, lambda s: 20, 3_600_000),
    "applier": Role("updates", lambda s: s.topics.updates, Applier, lambda s: s.apply_batch_size),
    "aggregator": Role("results", lambda s: s.topics.results, Aggregator, lambda s: 2000),
}


async def run(
    settings: Settings, roles: list[str], stop: asyncio.Event, ready: asyncio.Event | None = None
) -> None:
    """Run the given roles until `stop` is set; clients are started here and always stopped here."""
    client = make_client(settings)
    producer = make_producer(settings)
    try:
        db = client[settings.mongodb_database]
        await ensure_indexes(db)
        await create_topics(settings)
        await producer.start()
        loops = [
            ConsumerLoop(
                role=name,
                kind=ROLES[name].kind,
                consumer=make_consumer(
                    settings,
                    name,
                    ROLES[name].topic(settings),
                    max_records=ROLES[name].batch(settings),
                    max_poll_interval_ms=ROLES[name].max_poll_interval_ms,
                ),
                producer=producer,
                deadletter_topic=settings.topics.deadletter,
                handle=ROLES[name].handler(settings, db, producer),
                max_retries=settings.max_retries,
            )
            for name in roles
        ]
        tasks = [asyncio.create_task(loop.run(stop), name=loop.role) for loop in loops]
        if ready is not None:
            ready.set()
        log.info("propagator running", roles=roles, group_prefix=settings.group_prefix)
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in done:
            if task.exception():
                raise task.exception()  # type: ignore[misc]
    finally:
        await producer.stop()
        await client.close()
