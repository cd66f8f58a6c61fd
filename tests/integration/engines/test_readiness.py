"""/readyz follows the engines: ready with both up, 503 naming the one that stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from setaccounts.settings import Settings
from setaccounts_api.app import create_app
from setaccounts_api.routes.health import CHECK_TIMEOUT
from setaccounts_dev.engines import PLAINTEXT
from setaccounts_dev.engines.embedded import start_embedded_kafka
from setaccounts_dev.engines.processes import EmbeddedProcess
from setaccounts_dev.engines.secantus import start_secantus
from setaccounts_dev.engines.tansu import start_tansu
from tests.helpers.auth import Issuer

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


async def ready(client: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    response = await client.get("/readyz")
    return response.status_code, response.json()


async def test_readiness_turns_false_when_an_engine_stops(tmp_path: Path, issuer: Issuer) -> None:
    kafka, bootstrap, secured, _ = await asyncio.to_thread(start_embedded_kafka, tmp_path)  # the one in use
    mongo, uri = await asyncio.to_thread(start_secantus, tmp_path)
    try:
        app = create_app(
            Settings(
                kafka_bootstrap_servers=bootstrap,
                **secured.settings(),
                mongodb_uri=uri,
                mongodb_database="ready",
                replication_factor=1,
                min_insync_replicas=1,
                trusted_hosts="testserver",
                **issuer.settings(),
            )
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                assert (await client.get("/healthz")).status_code == 200
                assert await ready(client) == (
                    200,
                    {"status": "ready", "mongodb": "ok", "kafka": "ok", "topics": "ok"},
                )

                await asyncio.to_thread(kafka.stop)
                status, body = await ready(client)
                assert status == 503 and body["kafka"].startswith("unavailable") and body["mongodb"] == "ok"

                await asyncio.to_thread(mongo.stop)
                status, body = await ready(client)
                assert status == 503 and body["mongodb"].startswith("unavailable")
                assert (await client.get("/healthz")).status_code == 200  # the process itself is fine
    finally:
        kafka.stop()
        mongo.stop()


async def test_readiness_is_a_quick_503_when_the_store_stops_answering(
    settings: Settings, tmp_path: Path
) -> None:
    """A store that hangs (SIGSTOP: the socket stays open, nothing answers) must not hang /readyz."""
    mongo, uri = await asyncio.to_thread(start_secantus, tmp_path)
    try:
        await check_hang(settings.model_copy(update={"mongodb_uri": uri}), mongo, "mongodb")
    finally:
        await asyncio.to_thread(mongo.stop)


async def test_readiness_is_a_quick_503_when_the_broker_stops_answering(
    settings: Settings, tmp_path: Path
) -> None:
    kafka, bootstrap = await asyncio.to_thread(start_tansu, tmp_path)
    try:
        moved = settings.model_copy(update={"kafka_bootstrap_servers": bootstrap, **PLAINTEXT.settings()})
        await check_hang(moved, kafka, "kafka")
    finally:
        await asyncio.to_thread(kafka.stop)


def wait_stopped(pid: int, timeout: float = 5) -> None:
    """Until every thread of `pid` is stopped: SIGSTOP takes effect on each thread asynchronously, and a
    broker thread still running could answer one more request."""
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread may exit meanwhile
                states.append((task / "stat").read_text().rpartition(")")[2].split()[0])
        if states and all(state in ("T", "t") for state in states):
            return
        assert time.monotonic() < deadline, f"process {pid} not stopped {timeout}s after SIGSTOP: {states}"
        time.sleep(0.01)


async def check_hang(settings: Settings, engine: EmbeddedProcess, name: str) -> None:
    """Readiness with `engine` stopped by SIGSTOP: 503 naming it within the check's timeout, every time;
    ready again once it answers."""
    other = "kafka" if name == "mongodb" else "mongodb"
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert (await ready(client))[0] == 200
            os.kill(engine.process.pid, signal.SIGSTOP)
            wait_stopped(engine.process.pid)
            try:
                for _ in range(3):  # the first check and the ones after it, with connections held open
                    started = time.monotonic()
                    status, body = await ready(client)
                    elapsed = time.monotonic() - started
                    assert status == 503, body
                    assert body[name].startswith("unavailable") and body[other] == "ok", body
                    assert elapsed < CHECK_TIMEOUT + 1.5, f"/readyz took {elapsed:.2f}s"
                assert (await client.get("/healthz")).status_code == 200
            finally:
                os.kill(engine.process.pid, signal.SIGCONT)
            for _ in range(100):  # answering again: ready again
                if (await ready(client))[0] == 200:
                    break
                await asyncio.sleep(0.2)
            else:
                pytest.fail(f"/readyz did not come back after {name} answered again")
