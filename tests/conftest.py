"""Real engines for the whole session; each test gets its own topics, consumer groups and database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.settings import Settings
from setaccounts.topics import create_topics
from setaccounts_api.app import create_app
from setaccounts_dev.engines import Engines, engines
from setaccounts_propagator.bootstrap import ROLES, run
from tests.helpers.auth import ClientAs, Issuer, client_of
from tests.helpers.resources import Seed, store_resources


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked `slow` first (in their own order): with several workers (`make test`), the long
    waits of the fault tests start early and overlap, instead of one of them ending the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def servers() -> Iterator[Engines]:
    with engines() as found:
        yield found


@pytest.fixture(scope="session")
def issuer() -> Iterator[Issuer]:
    """A token issuer whose JWKS and discovery document a local HTTP server serves; the API trusts it."""
    with Issuer().serving() as serving:
        yield serving


@pytest.fixture
async def settings(servers: Engines, issuer: Issuer) -> Settings:
    """Settings isolated by a uuid: topic prefix, consumer groups and database name."""
    run = uuid.uuid4().hex[:10]
    built = Settings(
        **servers.settings(),
        mongodb_database=f"t_{run}",
        topic_prefix=f"t{run}.",
        group_prefix=f"g{run}",
        partitions=3,
        replication_factor=1,
        min_insync_replicas=1,
        sync_wait_seconds=20,
        plan_page_size=200,
        apply_batch_size=500,
        max_retries=2,
        kafka_session_timeout_ms=3000,
        trusted_hosts="testserver",
        **issuer.settings(),
    )
    await create_topics(built)
    return built


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, tz_aware=True)
    try:
        yield client[settings.mongodb_database]
        await client.drop_database(settings.mongodb_database)
    finally:
        await client.close()


@pytest.fixture
async def app(settings: Settings, db: AsyncDatabase[dict[str, Any]]) -> AsyncIterator[FastAPI]:
    """The API app in-process (lifespan included) against the real engines."""
    built = create_app(settings)
    async with built.router.lifespan_context(built):
        yield built


@pytest.fixture
async def api(app: FastAPI, issuer: Issuer) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the API with an admin token."""
    async with client_of(app, issuer.admin_token()) as client:
        yield client


@pytest.fixture
def client_as(app: FastAPI) -> ClientAs:
    """`async with client_as(token) as client`: another caller of the same API (None: anonymous)."""
    return lambda token: client_of(app, token)


@pytest.fixture
async def propagator(settings: Settings) -> AsyncIterator[None]:
    """All three propagator roles in-process, on the test's own topics and groups."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, list(ROLES), stop, ready))
    await asyncio.wait([asyncio.ensure_future(ready.wait()), task], return_when=asyncio.FIRST_COMPLETED)
    yield
    stop.set()
    await asyncio.wait_for(task, 30)


@pytest.fixture
def seed(db: AsyncDatabase[dict[str, Any]]) -> Seed:
    """Store resources straight through the write rule (fast); returns their references."""

    async def store(*resources: dict[str, Any]) -> list[str]:
        return await store_resources(db, *resources)

    return store
