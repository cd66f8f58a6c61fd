"""The engine profile asked of the suite's own servers: Apache Kafka grants idempotent producers and the
services produce idempotently on it; the development broker (Tansu) does not, and the services produce
there without; the development store (SecantusDB) reads whole index ranges before it limits. With servers
from the environment, what they are is not known here, so only the services' agreement with the profile
is checked."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.kafka import make_consumer, make_producer
from setaccounts.profile import detect_broker, detect_store
from setaccounts.settings import Settings
from setaccounts_api.rest.readers import WindowedReader, read_indexed
from setaccounts_dev.engines import Engines

pytestmark = pytest.mark.integration


def broker_is(servers: Engines, name: str) -> bool:
    return servers.kind != "environment" and servers.description.startswith(name)


async def test_apache_kafka_grants_idempotent_producers_and_the_records_land(
    servers: Engines, settings: Settings
) -> None:
    profile = await detect_broker(settings)
    if broker_is(servers, "Tansu"):
        assert profile.idempotent_producer is False, profile
        pytest.skip("the suite's broker is Tansu, which grants no producer id")
    if broker_is(servers, "Apache Kafka"):
        assert profile.idempotent_producer is True, profile
    if not profile.idempotent_producer:
        pytest.skip(f"the configured broker grants no producer id: {profile.why}")

    topic, key = settings.topics.results, uuid.uuid4().hex.encode()
    producer = make_producer(settings, idempotent=True)
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(topic, f"{n}".encode(), key=key)
        producer_id = producer._txn_manager.producer_id if producer._txn_manager else -1
    finally:
        await producer.stop()
    assert producer_id >= 0, "the broker gave the producer an id (its batches carry it and a sequence)"

    consumer = make_consumer(settings, f"profile-{uuid.uuid4().hex[:6]}", topic)
    await consumer.start()
    try:
        got: list[bytes] = []
        while len(got) < 3:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, "the records sent were not read back"
            got += [r.value for records in batch.values() for r in records if r.key == key and r.value]
    finally:
        await consumer.stop()
    assert got == [b"0", b"1", b"2"]


async def test_the_api_produces_and_searches_as_the_profile_says(
    servers: Engines, settings: Settings, app: FastAPI, db: AsyncDatabase[dict[str, Any]]
) -> None:
    broker, store = await detect_broker(settings), await detect_store(db, settings)
    assert (app.state.producer._txn_manager is not None) is broker.idempotent_producer
    reader = app.state.stores.reader
    assert reader is read_indexed if store.limit_pushdown else isinstance(reader, WindowedReader)
    if servers.kind != "environment":  # the development store, SecantusDB
        assert store.limit_pushdown is False and isinstance(reader, WindowedReader)


async def test_settings_override_what_the_servers_say(settings: Settings, db: AsyncDatabase[Any]) -> None:
    forced = settings.model_copy(update={"store_limit_pushdown": True, "kafka_idempotence": False})
    assert (await detect_store(db, forced)).limit_pushdown is True
    assert (await detect_broker(forced)).idempotent_producer is False
