"""Consumer groups' committed offsets in tests: forget them (a crash between the writes and the commit)
and wait until a group has committed everything (it processed what it was given again)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from setaccounts.kafka import security
from setaccounts.settings import Settings
from setaccounts_audit.replay import partitions_of


async def rewind_group(settings: Settings, role: str, topic: str) -> None:
    """Forget a group's committed offsets: what a crash between the writes and the commit leaves behind."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        **security(settings),
        group_id=settings.group(role),
        enable_auto_commit=False,
        session_timeout_ms=settings.kafka_session_timeout_ms,
    )
    await consumer.start()
    try:
        while not consumer.assignment():  # join the group: the broker takes commits from members only
            await consumer.getmany(timeout_ms=200, max_records=1)
        await consumer.commit({tp: 0 for tp in consumer.assignment()})
    finally:
        await consumer.stop()


async def caught_up(settings: Settings, role: str, topic: str, timeout: float = 60) -> None:
    """Wait until a group has committed every record of the topic (it re-processed what was rewound)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        **security(settings),
        group_id=settings.group(role),
        enable_auto_commit=False,
    )
    await consumer.start()  # never subscribes: it only reads the group's committed offsets
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            ends = await consumer.end_offsets(
                await partitions_of(settings.kafka_bootstrap_servers, topic, secured=security(settings))
            )
            behind = [tp for tp, end in ends.items() if (await consumer.committed(tp) or 0) < end]
            if not behind:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{role} did not catch up on {topic}")
    finally:
        await consumer.stop()
