"""Kafka clients built one way for every service: manual commits, acks=all, no idempotent producer.

Tansu (the embedded broker) rejects idempotent and transactional producers, so correctness comes from
idempotent consumers, never from Kafka transactions.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import BaseModel

from setaccounts.events import encode, headers_for
from setaccounts.settings import Settings

DLQ_HEADERS = ("dlq.reason", "dlq.topic", "dlq.partition", "dlq.offset", "dlq.consumer")


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=8 * 1024 * 1024,
        request_timeout_ms=30_000,
    )


def make_consumer(settings: Settings, role: str, *topics: str, max_records: int = 1000) -> AIOKafkaConsumer:
    """A consumer in the role's own group; offsets are committed by hand after the writes they cover."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=settings.group(role),
        client_id=f"{settings.group_prefix}-{role}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=max(200, settings.kafka_session_timeout_ms // 10),
        rebalance_timeout_ms=30_000,
        max_poll_interval_ms=300_000,
    )


async def create_topics(settings: Settings, names: Sequence[str] | None = None) -> list[str]:
    """Create missing topics with the configured partition count; returns the ones it created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in (names or settings.topics.all()) if n not in existing]
        if not wanted:
            return []
        response = await admin.create_topics(
            [NewTopic(n, num_partitions=settings.partitions, replication_factor=1) for n in wanted]
        )
        for name, code, *_ in response.topic_errors:
            if code not in (0, TopicAlreadyExistsError.errno):
                raise KafkaError(f"creating topic {name} failed with error code {code}")
        return wanted
    finally:
        await admin.close()


async def dead_letter(
    producer: AIOKafkaProducer, topic: str, record: ConsumerRecord[bytes, bytes], reason: str, consumer: str
) -> None:
    """Park one record on the dead-letter topic with where it came from and why, then carry on."""
    headers = [
        *(record.headers or ()),
        ("dlq.reason", reason[:4000].encode()),
        ("dlq.topic", record.topic.encode()),
        ("dlq.partition", str(record.partition).encode()),
        ("dlq.offset", str(record.offset).encode()),
        ("dlq.consumer", consumer.encode()),
    ]
    await producer.send_and_wait(topic, record.value, key=record.key, headers=headers)


async def publish(producer: AIOKafkaProducer, topic: str, key: str, event: BaseModel) -> None:
    """Send one event and wait for the broker's acknowledgement."""
    await producer.send_and_wait(topic, encode(event), key=key.encode(), headers=headers_for(event))


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """A topic's partition ids, fetching metadata first (a fresh consumer has none)."""
    await consumer.topics()
    return consumer.partitions_for_topic(topic) or set()


async def read_topic(
    bootstrap_servers: str, topic: str, idle_ms: int = 500
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of a topic up to the end offsets seen at start, with no consumer group (read-only)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await partitions_of(consumer, topic))]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batches = await consumer.getmany(timeout_ms=idle_ms)
            records += [r for tp in partitions for r in batches.get(tp, []) if r.offset < ends[tp]]
        return records
    finally:
        await consumer.stop()
