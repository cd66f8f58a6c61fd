"""Kafka clients built one way for every service: manual commits, acks=all, and idempotent producers
where the broker grants them (`setaccounts.profile.BrokerProfile`).

An idempotent producer keeps a retried batch from landing twice or out of order on a partition; it is not
what correctness rests on. Every consumer is idempotent, and no transaction is used, so the pipeline is
exactly as correct on a broker without idempotent producers.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import KafkaConnectionError, KafkaError, UnknownTopicOrPartitionError, for_code
from aiokafka.helpers import create_ssl_context
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.protocol.metadata import MetadataRequest

from setaccounts.events import Event, encode, headers_for
from setaccounts.events.wire import Encoded
from setaccounts.settings import Settings
from setaccounts.telemetry import record_headers

Security = Mapping[str, Any]
"""Connection options every Kafka client gets: security protocol, TLS context, SASL credentials."""


def security(settings: Settings) -> Security:
    """The TLS and SASL options of `settings`, for every producer, consumer and admin client."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile or None,
            certfile=settings.kafka_ssl_certfile or None,
            keyfile=settings.kafka_ssl_keyfile or None,
        )
    if settings.kafka_security_protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        }
    return options


def make_producer(settings: Settings, *, idempotent: bool = False) -> AIOKafkaProducer:
    """The producer every service sends with; `idempotent` where the broker grants it (the services pass
    their `BrokerProfile.idempotent_producer`; tools and tests that need no more than acks=all leave it)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        **security(settings),
        acks="all",
        enable_idempotence=idempotent,
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
        **security(settings),
        group_id=settings.group(role),
        client_id=f"{settings.group_prefix}-{role}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        # A third of the session, as Kafka recommends: each heartbeat is a request and a wake-up.
        heartbeat_interval_ms=max(200, settings.kafka_session_timeout_ms // 3),
        rebalance_timeout_ms=30_000,
        # A topic deleted and created again is seen (and assigned) within seconds, not after 5 minutes.
        metadata_max_age_ms=5_000,
        # Kafka's 500 ms by default. Idle, each of a process's three consumers asks this often; a longer wait
        # makes an idle propagator cheaper (2 s: 10 against 16 ms of CPU per second) but delays a record
        # that lands while the consumer's one fetch is in flight for other partitions (2 s: the sync call's
        # p95 went from 640 to 880 ms), so the default keeps latency.
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )


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


def encoded(event: Event) -> Encoded:
    """An event as it goes on the wire, with the trace context of its command's span, if one is current."""
    headers = headers_for(event) + record_headers(getattr(event, "command_id", None))
    return Encoded(event.key.encode(), encode(event), headers, event.pinned_partition)


async def publish(producer: AIOKafkaProducer, topic: str, event: Event) -> None:
    """Send one event under its own key and wait for the broker's acknowledgement."""
    await publish_many(producer, topic, [event])


async def publish_many(producer: AIOKafkaProducer, topic: str, events: Iterable[Event]) -> None:
    """Send events under their own keys (and pinned partitions), batched, then wait for every
    acknowledgement: when this returns, all of them are on the broker."""
    await send_encoded(producer, topic, (encoded(event) for event in events))


async def send_encoded(producer: AIOKafkaProducer, topic: str, records: Iterable[Encoded]) -> None:
    """`publish_many` for events encoded already (a fan-out encodes one template per page).

    Records that all name their partition (a fan-out's) go in batches built here, one per partition at a
    time (`send_batch`): 3.8 against 21 µs of CPU per record through `send`, which awaits, queues and
    answers each record on its own. Order within a partition is kept either way. Records encoded without
    trace context (a fan-out's template) take the current span's, if any."""
    pending = list(records)
    trace = record_headers(None)
    if trace:
        pending = [_traced(r, trace) for r in pending]
    if pending and all(r.partition is not None for r in pending):
        await asyncio.gather(*[ack async for ack in _batched(producer, topic, pending)])
        return
    acks = [
        await producer.send(topic, r.value, key=r.key, partition=r.partition, headers=r.headers)
        for r in pending
    ]
    await asyncio.gather(*acks)


async def _batched(
    producer: AIOKafkaProducer, topic: str, records: list[Encoded]
) -> AsyncIterator[asyncio.Future[Any]]:
    """The acknowledgements of `records` sent in per-partition batches, each sent when full and the rest
    at the end (a record too large for an empty batch goes alone through `send`, after its partition's
    earlier records)."""
    open_batches: dict[int, BatchBuilder] = {}

    async def seal(partition: int) -> asyncio.Future[Any]:
        batch = open_batches.pop(partition)
        batch.close()
        sent: asyncio.Future[Any] = await producer.send_batch(batch, topic, partition=partition)
        return sent

    for record in records:
        partition = record.partition
        assert partition is not None
        batch = open_batches.get(partition)
        if batch is not None and _append(batch, record):
            continue
        if batch is not None:
            yield await seal(partition)
        batch = open_batches[partition] = producer.create_batch()
        if not _append(batch, record):
            del open_batches[partition]
            yield await producer.send(
                topic, record.value, key=record.key, partition=partition, headers=record.headers
            )
    for partition in list(open_batches):
        yield await seal(partition)


def _traced(record: Encoded, trace: list[tuple[str, bytes]]) -> Encoded:
    if any(key == "traceparent" for key, _ in record.headers):
        return record
    return Encoded(record.key, record.value, record.headers + trace, record.partition)


def _append(batch: BatchBuilder, record: Encoded) -> bool:
    added = batch.append(key=record.key, value=record.value, timestamp=None, headers=record.headers)
    return added is not None


async def topics_metadata(client: AIOKafkaClient, topics: Sequence[str]) -> ClusterMetadata:
    """The broker's metadata of `topics` alone (a missing one is left out), asked so that asking never
    creates a topic (brokers honour the request's flag). The client's own refresh asks
    for every topic of the cluster: on a shared cluster, every topic's partitions, which a check made
    every few seconds should not fetch. Each known broker is asked in turn, in random order, until one
    answers, as the client's refresh does; raises the last error when none does.

    Only a topic the broker calls unknown is left out as missing. An answer that names no brokers (a
    broker just resumed or restarted, before it knows its cluster) or that gives one of `topics` another
    error (its leader not elected yet) says nothing about which topics exist: it counts as no answer, so a
    caller never takes a broker that is still waking up for one that lost its topics."""
    request = MetadataRequest(list(topics), allow_auto_topic_creation=False)
    nodes = [broker.nodeId for broker in client.cluster.brokers()]
    random.shuffle(nodes)
    error: Exception = KafkaConnectionError("no broker is known to ask")
    for node in nodes:
        try:
            response = await client.send(node, request)
        except (KafkaError, TimeoutError) as exc:
            error = exc
            continue
        why = unsettled(response)
        if why:
            error = KafkaConnectionError(f"broker {node} cannot tell its topics yet: {why}")
            continue
        metadata = ClusterMetadata()
        metadata.update_metadata(response)
        return metadata
    raise error


def unsettled(response: Any) -> str:
    """Why a metadata answer cannot tell which topics exist, or "" when it can."""
    if not response.brokers:
        return "no brokers in the answer"
    errors = {
        topic: for_code(error_code).__name__
        for error_code, topic, *_ in response.topics
        if error_code not in (0, UnknownTopicOrPartitionError.errno)
    }
    return ", ".join(f"{topic}: {name}" for topic, name in sorted(errors.items()))
