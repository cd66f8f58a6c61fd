"""The engines speak the real protocols: aiokafka produces and consumes, PyMongo's async client writes."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events.wire import Encoded
from setaccounts.kafka import make_consumer, make_producer, security, send_encoded
from setaccounts.settings import Settings
from setaccounts_audit.replay import partitions_of

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


async def test_produce_then_consume_with_committed_offsets(settings: Settings) -> None:
    topic = settings.topics.commands
    producer = make_producer(settings)
    await producer.start()
    try:
        for i in range(30):
            await producer.send(topic, f"v{i}".encode(), key=f"k{i % 4}".encode(), headers=[("h", b"1")])
        await producer.flush()
    finally:
        await producer.stop()

    consumer = make_consumer(settings, "roundtrip", topic)
    await consumer.start()
    try:
        seen = await _drain(consumer, 30)
        await consumer.commit()
        committed = {tp.partition: await consumer.committed(tp) for tp in consumer.assignment()}
    finally:
        await consumer.stop()
    assert sorted(seen) == sorted(f"v{i}" for i in range(30))
    assert sum(v or 0 for v in committed.values()) == 30

    again = make_consumer(settings, "roundtrip", topic)  # same group: resumes after the commit
    await again.start()
    try:
        batches = await again.getmany(timeout_ms=1500)
        assert sum(len(v) for v in batches.values()) == 0
    finally:
        await again.stop()


async def test_records_sent_in_batches_arrive_whole_and_in_order_per_partition(settings: Settings) -> None:
    """A fan-out's records name their partitions and go in batches built per partition: several batches
    for a partition (2 KB values, over the 256 KiB batch), and one record larger than a batch in the
    middle, all arrive with their keys and headers, in the order sent, each once."""
    topic = settings.topics.updates
    partitions = len(await partitions_of(settings.kafka_bootstrap_servers, topic, secured=security(settings)))
    value = b"x" * 2_000
    records = [
        Encoded(f"k{i}".encode(), f"{i:06d}".encode() + value, [("n", str(i).encode())], i % partitions)
        for i in range(200 * partitions)
    ]
    records.insert(7 * partitions, Encoded(b"big", b"B" * 300_000, [("n", b"big")], 0))
    producer = make_producer(settings)
    await producer.start()
    try:
        await send_encoded(producer, topic, records)
    finally:
        await producer.stop()

    consumer = make_consumer(settings, "batched", topic)
    await consumer.start()
    try:
        got: dict[int, list[tuple[bytes, bytes, list[tuple[str, bytes]]]]] = {}
        for _ in range(100):
            batches: dict[TopicPartition, list[Any]] = await consumer.getmany(timeout_ms=500)
            for tp, rows in batches.items():
                got.setdefault(tp.partition, []).extend((r.key, r.value, list(r.headers)) for r in rows)
            if sum(map(len, got.values())) >= len(records):
                break
    finally:
        await consumer.stop()
    for partition in range(partitions):
        sent = [(r.key, r.value, r.headers) for r in records if r.partition == partition]
        assert got.get(partition) == sent, f"partition {partition}"


async def _drain(consumer: AIOKafkaConsumer, count: int) -> list[str]:
    seen: list[str] = []
    for _ in range(50):
        batches: dict[TopicPartition, list[Any]] = await consumer.getmany(timeout_ms=500)
        seen += [r.value.decode() for records in batches.values() for r in records]
        if len(seen) >= count:
            break
    return seen


async def test_async_mongo_write_then_read(db: AsyncDatabase[dict[str, Any]]) -> None:
    await db.things.insert_many([{"_id": i, "n": i * i} for i in range(100)])
    found = await db.things.find({"n": {"$gte": 81 * 81}}).sort("_id").to_list()
    assert [d["_id"] for d in found] == list(range(81, 100))
    assert type(db.client).__module__.startswith("pymongo.asynchronous")
