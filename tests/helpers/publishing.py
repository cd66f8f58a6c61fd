"""Publish straight to Kafka, bypassing the API: commands as the API would send them, or raw bytes."""

from __future__ import annotations

from setaccounts.events import SetAccountsCommand
from setaccounts.kafka import make_producer, publish
from setaccounts.settings import Settings


async def send_command(settings: Settings, command: SetAccountsCommand, times: int = 1) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for _ in range(times):
            await publish(producer, settings.topics.commands, command)
    finally:
        await producer.stop()


async def send_raw(settings: Settings, topic: str, value: bytes, key: bytes = b"k") -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
