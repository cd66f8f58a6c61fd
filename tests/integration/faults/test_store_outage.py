"""A store that goes away mid-job and comes back loses nothing: no dead letters, true counts, one new
version per member. Done to a real SecantusDB process of the test's own (kill -9, restart on its data)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from setaccounts.events import SetAccountsCommand
from setaccounts.kafka import read_topic
from setaccounts.settings import Settings
from setaccounts_api.app import create_app
from setaccounts_dev.engines import start_secantus
from tests.helpers.auth import Issuer, bearer
from tests.helpers.parameters import parameters
from tests.helpers.publishing import send_command
from tests.helpers.resources import patient_with_members, store_resources
from tests.helpers.roles import roles

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MEMBERS = 1500
OUTAGE_SECONDS = 35  # outlasts the old loop: every retry of a batch, then of its first record alone


class Store:
    """A SecantusDB of the test's own, on a fixed port and data directory: killed and restarted at will."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc, self.uri = start_secantus(workdir, durable=True)
        self.port = int(self.uri.split(":")[2].split("/")[0])

    def kill(self) -> None:
        self.proc.process.kill()
        self.proc.process.wait(10)

    def restart(self) -> None:
        self.proc, _ = start_secantus(self.workdir, self.port, durable=True)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    own = Store(tmp_path)
    try:
        yield own
    finally:
        own.proc.stop()


@pytest.fixture
async def on_store(settings: Settings, store: Store) -> AsyncIterator[tuple[Settings, Any]]:
    """The test's settings pointed at its own store, and a database handle there."""
    moved = settings.model_copy(update={"mongodb_uri": store.uri})
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(store.uri, tz_aware=True)
    try:
        yield moved, client[moved.mongodb_database]
    finally:
        await client.close()


async def wait_marked(db: Any, command_id: str, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while await db.resources.count_documents({"marks.command_id": command_id}) < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} members applied in {timeout}s"
        await asyncio.sleep(0.1)


async def wait_final(db: Any, command_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = await db.jobs.find_one({"_id": command_id})
        if job is not None and job["status"] in ("completed", "error", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job not finished in {timeout}s: {job and job['status']}"
        await asyncio.sleep(0.2)


async def test_store_killed_and_restarted_mid_apply_loses_nothing(
    on_store: tuple[Settings, Any], store: Store
) -> None:
    settings, db = on_store
    await store_resources(db, *patient_with_members("p1", MEMBERS))
    command = SetAccountsCommand(
        command_id=str(uuid.uuid4()), target="Patient/p1", accounts=["Organization/a"], propagate=True
    )
    async with roles(settings, "planner", "applier", "aggregator"):
        await send_command(settings, command)
        await wait_marked(db, command.command_id, 200)
        store.kill()
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(store.restart)
        job = await wait_final(db, command.command_id)

    assert job["status"] == "completed"
    assert (job["resources_updated"], job["resources_changed"]) == (MEMBERS + 1, MEMBERS + 1)
    versions = [
        d["version"] async for d in db.resources.find({"_id": {"$regex": "^Observation/"}}, {"version": 1})
    ]
    assert versions == [2] * MEMBERS, "every member has exactly one new version"
    assert await db.resources.count_documents({"compartments": "Organization/a"}) == MEMBERS + 1
    assert await read_topic(settings.kafka_bootstrap_servers, settings.topics.deadletter) == []


async def test_api_answers_503_while_the_store_is_down_and_publishes_nothing(
    on_store: tuple[Settings, Any], store: Store, issuer: Issuer
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
    assert await read_topic(settings.kafka_bootstrap_servers, settings.topics.commands) == []
