"""Reading a test's topics back whole."""

from __future__ import annotations

from aiokafka import ConsumerRecord

from setaccounts.kafka import security
from setaccounts.settings import Settings
from setaccounts_audit.replay import read_from_start


async def read_topic(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """All of `read_from_start` as a list, connected as `settings` say (small topics)."""
    servers = settings.kafka_bootstrap_servers
    return [record async for record in read_from_start(servers, topic, secured=security(settings))]
