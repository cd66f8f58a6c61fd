"""/readyz follows the engines: ready with both up, 503 naming the one that stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from setaccounts.settings import Settings
from setaccounts_api.app import create_app
from setaccounts_dev.engines import start_embedded_kafka, start_secantus
from tests.helpers.auth import Issuer

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


async def ready(client: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    response = await client.get("/readyz")
    return response.status_code, response.json()


async def test_readiness_turns_false_when_an_engine_stops(tmp_path: Path, issuer: Issuer) -> None:
    kafka, bootstrap, _ = await asyncio.to_thread(start_embedded_kafka, tmp_path)  # the broker in use
    mongo, uri = await asyncio.to_thread(start_secantus, tmp_path)
    try:
        app = create_app(
            Settings(
                kafka_bootstrap_servers=bootstrap,
                mongodb_uri=uri,
                mongodb_database="ready",
                trusted_hosts="testserver",
                **issuer.settings(),
            )
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                assert (await client.get("/healthz")).status_code == 200
                assert await ready(client) == (200, {"status": "ready", "mongodb": "ok", "kafka": "ok"})

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
