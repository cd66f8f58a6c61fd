"""A store that goes away mid-job and comes back loses nothing: no dead letters, true counts, one new
version per member. Done to a real SecantusDB process of the test's own (kill -9, restart on its data;
SIGSTOP, SIGCONT), or, when the suite is given a MongoDB (`MONGODB_URI`), to the link to that server, which
the test cannot kill: a relay it resets and refuses (the server gone) or freezes (the server hung)
(`tests/helpers/store_link.py`). Whether a killed server keeps what it acknowledged is then the server's
own journal's business, not the services': that test runs on the test's own store only."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from setaccounts.events import SetAccountsCommand
from setaccounts.mongo import make_client
from setaccounts.settings import Settings
from setaccounts_api.app import create_app
from setaccounts_dev.engines import Engines
from setaccounts_dev.engines.secantus import start_secantus
from tests.helpers.auth import Issuer, bearer
from tests.helpers.faults import assert_nothing_lost, wait_marked
from tests.helpers.jobs import wait_final
from tests.helpers.parameters import parameters
from tests.helpers.processes import propagator_process
from tests.helpers.publishing import send_command
from tests.helpers.resources import patient_with_members, store_resources
from tests.helpers.roles import roles
from tests.helpers.store_link import StoreLink
from tests.helpers.topics import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MEMBERS = 1500
OUTAGE_SECONDS = 35  # outlasts the old loop: every retry of a batch, then of its first record alone
PAUSE_SECONDS = 30


async def fault_while(fault: Awaitable[None], action: Awaitable[None]) -> None:
    """Start the fault, then act while it lasts."""
    running = asyncio.ensure_future(fault)
    await asyncio.sleep(0.5)
    await action
    await running


class Store:
    """A SecantusDB of the test's own, on a fixed port and data directory: killed and restarted at will."""

    owned = True

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc, self.uri = start_secantus(workdir)
        self.port = int(self.uri.split(":")[2].split("/")[0])

    def kill(self) -> None:
        self.proc.process.kill()
        self.proc.process.wait(10)

    def restart(self) -> None:
        self.proc, _ = start_secantus(self.workdir, self.port)

    def pause(self) -> None:
        os.kill(self.proc.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.proc.stop()


class LinkedStore(StoreLink):
    """The suite's configured MongoDB behind a relay the test cuts and freezes."""

    owned = False


@pytest.fixture
def store(servers: Engines, tmp_path: Path) -> Iterator[Store | LinkedStore]:
    own = LinkedStore(servers.mongodb_uri) if servers.kind == "environment" else Store(tmp_path)
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture
async def on_store(settings: Settings, store: Store | LinkedStore) -> AsyncIterator[tuple[Settings, Any]]:
    """The test's settings pointed at its own store, and a database handle there."""
    moved = settings.model_copy(update={"mongodb_uri": store.uri})
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(store.uri, tz_aware=True, journal=True)
    try:
        yield moved, client[moved.mongodb_database]
    finally:
        await client.close()


async def kill_and_restart(store: Store | LinkedStore) -> None:
    store.kill()
    await asyncio.sleep(OUTAGE_SECONDS)
    await asyncio.to_thread(store.restart)


async def pause_and_resume(store: Store | LinkedStore) -> None:
    store.pause()
    try:
        await asyncio.sleep(PAUSE_SECONDS)
    finally:
        store.resume()


@pytest.mark.parametrize(
    ("wait_for", "fault"),
    [("marked", kill_and_restart), ("marked", pause_and_resume), ("planning", kill_and_restart)],
    ids=["killed-mid-apply", "paused-mid-apply", "killed-while-planning"],
)
async def test_a_store_outage_mid_job_loses_nothing(
    on_store: tuple[Settings, Any],
    store: Store | LinkedStore,
    wait_for: str,
    fault: Callable[[Store | LinkedStore], Awaitable[None]],
) -> None:
    settings, db = on_store
    await store_resources(db, *patient_with_members("p1", MEMBERS))
    command = SetAccountsCommand(
        command_id=str(uuid.uuid4()), target="Patient/p1", accounts=["Organization/a"], propagate=True
    )
    async with roles(settings, "planner", "applier", "aggregator"):
        if wait_for == "planning":  # the store is gone before the planner takes the command
            await fault_while(fault(store), send_command(settings, command))
        else:
            await send_command(settings, command)
            await wait_marked(db, command.command_id, 200)
            await fault(store)
        job = await wait_final(db, command.command_id)

    await assert_nothing_lost(db, settings, job, MEMBERS)


async def test_api_answers_503_while_the_store_is_down_and_publishes_nothing(
    on_store: tuple[Settings, Any], store: Store | LinkedStore, issuer: Issuer
) -> None:
    settings, db = on_store
    await store_resources(db, *patient_with_members("p2", MEMBERS))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver/fhir/R4", headers=bearer(issuer.admin_token())
        ) as api:
            store.kill()
            try:
                started = time.monotonic()
                response = await api.post(
                    "/Patient/p2/$set-accounts", json=parameters("Organization/a", propagate=True)
                )
                elapsed = time.monotonic() - started
            finally:
                await asyncio.to_thread(store.restart)
    assert response.status_code == 503
    body = response.json()
    assert body["issue"][0]["code"] == "transient"
    assert response.headers["Retry-After"].isdigit()
    text = response.text.lower()
    for leak in ("serverselection", "127.0.0.1", str(store.port), "pymongo", "topology"):
        assert leak not in text
    assert elapsed < 30
    assert await read_topic(settings, settings.topics.commands) == []


async def test_the_propagator_waits_for_a_store_that_is_down_at_start(
    on_store: tuple[Settings, Any], store: Store | LinkedStore
) -> None:
    settings, db = on_store
    await store_resources(db, *patient_with_members("p3", 20))
    store.kill()
    with propagator_process(settings) as proc:
        await asyncio.sleep(12)  # more than the driver's server selection time-out, twice
        assert proc.poll() is None, "the propagator gave up on a store that is only down"
        await asyncio.to_thread(store.restart)
        command = SetAccountsCommand(
            command_id=str(uuid.uuid4()), target="Patient/p3", accounts=["Organization/a"], propagate=True
        )
        await send_command(settings, command)
        job = await wait_final(db, command.command_id, timeout=120)
    assert (job["status"], job["resources_updated"]) == ("completed", 21)


async def test_what_the_services_write_survives_a_kill_9_of_the_store(
    on_store: tuple[Settings, Any], store: Store | LinkedStore
) -> None:
    if not store.owned:
        pytest.skip("the configured MongoDB is not the test's to kill; its durability is its journal's")
    settings, _db = on_store
    client = make_client(settings)
    try:
        jobs = client[settings.mongodb_database].jobs
        await jobs.insert_many([{"_id": f"job-{i}", "status": "accepted"} for i in range(200)])
        await jobs.update_one({"_id": "job-7"}, {"$set": {"status": "planning"}})
        store.kill()
    finally:
        await client.close()
    await asyncio.to_thread(store.restart)
    client = make_client(settings)
    try:
        jobs = client[settings.mongodb_database].jobs
        assert await jobs.count_documents({}) == 200
        assert (await jobs.find_one({"_id": "job-7"}) or {}).get("status") == "planning"
    finally:
        await client.close()
