"""A broker that stops answering mid-job, or crashes and comes back on its data, loses nothing: true counts,
one new version per member, no dead letters, no job left running. Done to a broker process of the test's
own (SIGSTOP/SIGCONT; kill -9, then a start on the same data directory and port) while a real propagator
process works through a 3,000-member fan-out."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import COMMANDS, RESULTS, UPDATES, SetAccountsCommand
from setaccounts.kafka import security
from setaccounts.settings import Settings
from setaccounts.topics import create_topics
from setaccounts_audit.replay import partitions_of
from setaccounts_dev.engines import PLAINTEXT
from setaccounts_dev.engines.apache_kafka import start_apache_kafka
from setaccounts_dev.engines.embedded import embedded_kafka_choice
from setaccounts_dev.engines.tansu import start_tansu
from tests.helpers.faults import assert_nothing_lost, wait_marked
from tests.helpers.jobs import wait_final
from tests.helpers.processes import propagator_process
from tests.helpers.publishing import send_command
from tests.helpers.resources import patient_with_members, store_resources

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MEMBERS = 3000
PAUSE_SECONDS = 30
DOWN_SECONDS = 10


class Broker:
    """A broker of the test's own, the kind `make run` would start here: paused, killed, restarted at will."""

    def __init__(self, workdir: Path) -> None:
        self.kind, _ = embedded_kafka_choice()
        self.data_dir = workdir / "kafka"
        if self.kind == "apache":
            self.proc, self.bootstrap, self.security = start_apache_kafka(self.data_dir)
        else:
            (self.proc, self.bootstrap), self.security = start_tansu(workdir), PLAINTEXT
        self.port = int(self.bootstrap.rpartition(":")[2])

    def pause(self) -> None:
        os.killpg(self.proc.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.proc.process.pid, signal.SIGCONT)

    def kill(self) -> None:
        self.proc.kill()

    def restart(self) -> None:
        self.proc, _, _ = start_apache_kafka(self.data_dir, self.port)  # the same credentials

    def stop(self) -> None:
        self.resume()
        self.proc.stop()


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    own = await asyncio.to_thread(Broker, tmp_path)
    try:
        yield own
    finally:
        await asyncio.to_thread(own.stop)


@pytest.fixture
async def on_broker(settings: Settings, broker: Broker) -> Settings:
    """The test's settings pointed at its own broker, with the topics made there."""
    moved = settings.model_copy(
        update={"kafka_bootstrap_servers": broker.bootstrap, **broker.security.settings()}
    )
    await create_topics(moved)
    return moved


async def lag(settings: Settings) -> dict[str, int]:
    """Per role, the records of its topic beyond its group's committed offsets (asked as a consumer of the
    group would: Tansu answers the admin client's offset fetch in a form aiokafka cannot read)."""
    found = {}
    for role, channel in (("planner", COMMANDS), ("applier", UPDATES), ("aggregator", RESULTS)):
        tps = await partitions_of(
            settings.kafka_bootstrap_servers, settings.topics.of(channel), secured=security(settings)
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            **security(settings),
            group_id=settings.group(role),
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            ends = await consumer.end_offsets(tps)
            found[role] = 0
            for tp in tps:
                found[role] += ends[tp] - (await consumer.committed(tp) or 0)
        finally:
            await consumer.stop()
    return found


async def wait_committed(settings: Settings, timeout: float = 30) -> None:
    """Every group commits up to the end of its topic: the commits work again after the fault."""
    deadline = time.monotonic() + timeout
    while any((left := await lag(settings)).values()):
        assert time.monotonic() < deadline, f"uncommitted records {timeout}s after the job: {left}"
        await asyncio.sleep(0.5)


async def pause_and_resume(broker: Broker) -> None:
    broker.pause()
    try:
        await asyncio.sleep(PAUSE_SECONDS)
    finally:
        broker.resume()


async def kill_and_restart(broker: Broker) -> None:
    broker.kill()
    await asyncio.sleep(DOWN_SECONDS)
    await asyncio.to_thread(broker.restart)


@pytest.mark.parametrize(
    "fault", [pause_and_resume, kill_and_restart], ids=["paused-30s", "killed-and-restarted"]
)
async def test_a_broker_outage_mid_job_loses_nothing(
    on_broker: Settings,
    broker: Broker,
    db: AsyncDatabase[dict[str, Any]],
    fault: Callable[[Broker], Awaitable[None]],
) -> None:
    settings = on_broker
    if fault is kill_and_restart and broker.kind != "apache":
        pytest.skip("Tansu keeps topics in memory only, so a restarted Tansu has none: needs Apache Kafka")
    await store_resources(db, *patient_with_members("p1", MEMBERS))
    command = SetAccountsCommand(
        command_id=str(uuid.uuid4()), target="Patient/p1", accounts=["Organization/a"], propagate=True
    )
    with propagator_process(settings) as proc:
        await send_command(settings, command)
        await wait_marked(db, command.command_id, 300)
        marked = await db.resources.count_documents({"marks.command_id": command.command_id})
        print(f"{marked} of {MEMBERS + 1} marked when the fault began")
        running = await db.jobs.find_one({"_id": command.command_id}, {"status": 1})
        assert running is not None and running["status"] not in ("completed", "error"), (
            "done before the fault"
        )
        started = time.monotonic()
        await fault(broker)
        assert proc.poll() is None, "the propagator gave up on a broker that was only down"
        job = await wait_final(db, command.command_id, timeout=180)
        print(f"job finished {time.monotonic() - started:.1f}s after the fault began")
        await wait_committed(settings)

    await assert_nothing_lost(db, settings, job, MEMBERS)
    assert await db.jobs.count_documents({"status": {"$nin": ["completed"]}}) == 0, "a job is left running"
