"""Topics are created as a cluster needs them (retention per channel, replication settings) and existing
topics that differ from the settings are reported."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from setaccounts.kafka import make_producer, security, topics_metadata
from setaccounts.settings import Settings
from setaccounts.topics import check_topics, create_topics

pytestmark = pytest.mark.integration


async def topic_config(settings: Settings, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **security(settings))
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    [(_code, _message, _type, _name, entries, *_)] = response.resources
    return {entry[0]: entry[1] for entry in entries}


async def test_audit_topics_are_kept_forever_and_internal_ones_expire(settings: Settings) -> None:
    # the `settings` fixture created the topics through create_topics
    topics = settings.topics
    assert (await topic_config(settings, topics.commands))["retention.ms"] == "-1"
    assert (await topic_config(settings, topics.results))["retention.ms"] == "-1"
    assert (await topic_config(settings, topics.updates))["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert (await topic_config(settings, topics.deadletter))["retention.ms"] == str(30 * 24 * 3600 * 1000)
    assert (await topic_config(settings, topics.commands))["min.insync.replicas"] == "1"
    assert await check_topics(settings) == []
    assert await create_topics(settings) == [], "existing topics are left as they are"


async def test_existing_topics_that_differ_from_the_settings_are_reported(settings: Settings) -> None:
    changed = settings.model_copy(update={"partitions": 5, "retention_ms_updates": 1000})
    mismatches = await check_topics(changed)
    assert any("partitions" in line and settings.topics.commands in line for line in mismatches)
    assert any(f"{settings.topics.updates}: retention.ms=" in line for line in mismatches)


def test_settings_refuse_more_in_sync_replicas_than_replicas() -> None:
    with pytest.raises(ValueError, match="min_insync_replicas"):
        Settings(replication_factor=1, min_insync_replicas=2)


async def test_the_topic_check_asks_for_its_topics_only_and_never_creates_one(settings: Settings) -> None:
    """What the services check every 2 s: the metadata of their own topics, a missing one left out and not
    created by the asking (a broker that auto-creates would otherwise hide the loss it is there to find)."""
    missing = f"{settings.topic_prefix}never-created"
    producer = make_producer(settings)
    await producer.start()
    try:
        known = await topics_metadata(producer.client, [settings.topics.commands, missing])
        assert known.topics() == {settings.topics.commands}
        assert len(known.partitions_for_topic(settings.topics.commands) or ()) == settings.partitions
        everything = await producer.client.fetch_all_metadata()
        assert missing not in everything.topics()
    finally:
        await producer.stop()
