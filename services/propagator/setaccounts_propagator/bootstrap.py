"""Wires the propagator in one place: settings → clients → stores and publisher → handlers → one consume
loop per role.

Each role is its own consumer group, so each scales by partitions on its own; a process runs any subset.
The clients, the stores over them (`build_stores`) and the publisher are built once per process in `run`;
every handler receives only the stores it uses (`ports.py`), so unit tests hand it in-memory fakes instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaProducer
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import COMMANDS, RESULTS, UPDATES, Channel
from setaccounts.failures import is_outage
from setaccounts.jobs import JobStore
from setaccounts.kafka import make_consumer, make_producer
from setaccounts.mongo import ensure_indexes, make_client
from setaccounts.profile import StoreProfile, detect_broker, detect_store
from setaccounts.recovery import TopicRecovery
from setaccounts.settings import Settings
from setaccounts.store.propagation import Propagation
from setaccounts.store.resources import ResourceStore
from setaccounts.telemetry import OFF, Tracing
from setaccounts_propagator.aggregator import Aggregator
from setaccounts_propagator.applier import Applier
from setaccounts_propagator.consumer import ConsumerLoop
from setaccounts_propagator.pacing import BatchSizer
from setaccounts_propagator.planner import Planner
from setaccounts_propagator.ports import Jobs, KafkaPublisher, Propagates, Publisher, Resources
from setaccounts_propagator.role import RoleHandler

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Stores:
    """The stores every role of a process shares (`build_stores`: over its one database; unit tests: the
    in-memory fakes of `tests/helpers/fakes.py`)."""

    jobs: Jobs
    resources: Resources
    propagation: Propagates
    ping: Callable[[], Awaitable[object]]  # raises unless the store answers


def build_stores(db: AsyncDatabase[dict[str, Any]], profile: StoreProfile) -> Stores:
    """The one place the stores are constructed, sized by the store's profile."""
    resources = ResourceStore(db, profile.read_chunk)
    return Stores(
        jobs=JobStore(db),
        resources=resources,
        propagation=Propagation(resources, profile.write_chunk),
        ping=lambda: db.command("ping"),
    )


def planner(settings: Settings, stores: Stores, publisher: Publisher) -> Planner:
    return Planner(
        stores.jobs,
        stores.resources,
        stores.propagation,
        publisher,
        page_size=settings.plan_page_size,
        lead_seconds=settings.plan_lead_seconds,
        least_lead=settings.plan_least_lead,
        most_lead=4 * settings.apply_batch_size,
    )


def applier(settings: Settings, stores: Stores, publisher: Publisher) -> Applier:
    return Applier(stores.jobs, stores.propagation, publisher)


def aggregator(settings: Settings, stores: Stores, publisher: Publisher) -> Aggregator:
    return Aggregator(stores.jobs, publisher)


@dataclass(frozen=True)
class Role:
    """A consumer group: the channel it reads and how its handler is built (what it sends is in
    channels.py)."""

    reads: Channel
    handler: Callable[[Settings, Stores, Publisher], RoleHandler]
    batch: Callable[[Settings], int]
    concurrency: Callable[[Settings], int] = lambda s: 0  # records in flight at once (0: whole batches)
    batch_seconds: Callable[[Settings], float | None] = lambda s: None  # batches sized by time, if set


ROLES: dict[str, Role] = {
    # A command's fan-out lasts as long as its job: several run at once, one per target, so the loop
    # keeps polling (and the group keeps the member) while they run.
    "planner": Role(COMMANDS, planner, lambda s: 20, concurrency=lambda s: s.plan_concurrency),
    # Each command's updates in order, commands side by side (members never reordered): up to eight
    # batches' worth in flight, more than the fan-outs keep queued (`pacing.Lead.most`), so a new command's
    # updates are taken as soon as they land.
    "applier": Role(
        UPDATES,
        applier,
        lambda s: s.apply_batch_size,
        concurrency=lambda s: 8 * s.apply_batch_size,
        batch_seconds=lambda s: s.apply_batch_seconds,
    ),
    "aggregator": Role(RESULTS, aggregator, lambda s: 2000),
}


def build_loop(
    name: str,
    settings: Settings,
    stores: Stores,
    publisher: KafkaPublisher,
    losses: Callable[[], int] = lambda: 0,
    tracing: Tracing = OFF,
) -> ConsumerLoop:
    """One role's consume loop, with its own consumer and a handler over the process's stores and publisher
    (the dead-letter path sends the raw records through the publisher's producer)."""
    role = ROLES[name]
    seconds = role.batch_seconds(settings)
    return ConsumerLoop(
        role=name,
        channel=role.reads,
        consumer=make_consumer(
            settings,
            name,
            settings.topics.of(role.reads),
            max_records=role.batch(settings),
        ),
        producer=publisher.producer,
        deadletter_topic=settings.topics.deadletter,
        handler=role.handler(settings, stores, publisher),
        ping=stores.ping,
        max_retries=settings.max_retries,
        losses=losses,
        concurrency=role.concurrency(settings),
        sizer=None if seconds is None else BatchSizer(seconds, most=role.batch(settings)),
        tracer=tracing.tracer(f"setaccounts.{name}"),
    )


async def until_up(dependency: str, step: Callable[[], Awaitable[T]], stop: asyncio.Event) -> T:
    """Start-up waits for a dependency that is down (an outage), however long; other errors stop it."""
    delay = 0.5
    while True:
        try:
            return await step()
        except Exception as exc:
            if not is_outage(exc) or stop.is_set():
                raise
            log.warning("waiting for a dependency to start", dependency=dependency, error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)


StoresFactory = Callable[[AsyncDatabase[dict[str, Any]], StoreProfile], Stores]


async def run(
    settings: Settings,
    roles: list[str],
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    stores_for: StoresFactory = build_stores,
    tracing: Tracing = OFF,
) -> None:
    """Run the given roles until `stop` is set; clients are started here and always stopped here.
    `stores_for` builds the stores over the database (the ceiling benchmark hands in stand-ins);
    `tracing` is the process's (`telemetry.tracing_from_env`; off by default)."""
    client = make_client(settings, tracing)
    producer: AIOKafkaProducer | None = None
    try:
        db = client[settings.mongodb_database]
        await until_up("store", lambda: ensure_indexes(db), stop)
        store = await until_up("store", lambda: detect_store(db, settings), stop)
        broker = await until_up("broker", lambda: detect_broker(settings), stop)
        producer = make_producer(settings, idempotent=broker.idempotent_producer)
        await until_up("broker", producer.start, stop)
        recovery = TopicRecovery(settings, db, producer, "propagator")
        await until_up("broker", recovery.recreate, stop)
        stores, publisher = stores_for(db, store), KafkaPublisher(producer, settings.topics)
        loops = [
            build_loop(name, settings, stores, publisher, lambda: recovery.losses, tracing) for name in roles
        ]
        tasks = [asyncio.create_task(loop.run(stop), name=loop.role) for loop in loops]
        watch = asyncio.create_task(recovery.watch(stop), name="topics")
        if ready is not None:
            ready.set()
        log.info("propagator running", roles=roles, group_prefix=settings.group_prefix)
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        stop.set()
        for task in [*tasks, watch]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in done:
            if task.exception():
                raise task.exception()  # type: ignore[misc]
    finally:
        if producer is not None:
            await producer.stop()
        await client.close()
