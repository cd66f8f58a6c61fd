"""Topics as a real cluster needs them: partitions, replication, `min.insync.replicas` and retention per
channel, created when missing and checked against the settings when they exist.

Commands and results are the audit trail, so they are kept forever by default; updates are internal and
dead letters are for operators, so they expire.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from setaccounts.events import CHANNELS, COMMANDS, DEADLETTER, RESULTS, UPDATES, Channel
from setaccounts.kafka import security
from setaccounts.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


def retention_ms(settings: Settings, channel: Channel) -> int:
    return {
        COMMANDS: settings.retention_ms_commands,
        RESULTS: settings.retention_ms_results,
        UPDATES: settings.retention_ms_updates,
        DEADLETTER: settings.retention_ms_deadletter,
    }[channel]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    return [
        TopicSpec(
            name=settings.topics.of(channel),
            partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            configs={
                "retention.ms": str(retention_ms(settings, channel)),
                "min.insync.replicas": str(settings.min_insync_replicas),
            },
        )
        for channel in CHANNELS
    ]


async def create_topics(settings: Settings) -> list[str]:
    """Create the missing topics; warn about existing ones that differ from the settings. Returns the
    names it created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **security(settings))
    await admin.start()
    try:
        specs = topic_specs(settings)
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.configs)
                    for s in missing
                ]
            )
            for name, code, *rest in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    detail = rest[0] if rest and rest[0] else f"error code {code}"
                    raise KafkaError(
                        f"creating topic {name} failed: {detail} (replication factor "
                        f"{settings.replication_factor}: SETACCOUNTS_REPLICATION_FACTOR must not exceed the "
                        "number of brokers)"
                    )
        await _check(admin, [s for s in specs if s.name in existing])
        return [s.name for s in missing]
    finally:
        await admin.close()


async def check_topics(settings: Settings) -> list[str]:
    """Every way the existing topics differ from the settings (also logged as warnings)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **security(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        return await _check(admin, [s for s in topic_specs(settings) if s.name in existing])
    finally:
        await admin.close()


async def _check(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> list[str]:
    """Warn (and return a line) for every setting of an existing topic that differs from the wanted one."""
    if not specs:
        return []
    mismatches: list[str] = []
    try:
        described = await admin.describe_topics([s.name for s in specs])
        partitions = {t["topic"]: len(t["partitions"]) for t in described}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in specs]
        )
    except KafkaError as exc:
        log.warning("could not check the existing topics", error=repr(exc))
        return []
    actual: dict[str, dict[str, str]] = {}
    for response in responses:
        for _code, _message, _type, name, entries, *_ in response.resources:
            actual[name] = {entry[0]: entry[1] for entry in entries}
    for spec in specs:
        if partitions.get(spec.name, spec.partitions) != spec.partitions:
            mismatches.append(
                f"{spec.name}: {partitions[spec.name]} partitions, settings say {spec.partitions}"
            )
        for key, wanted in spec.configs.items():
            found = actual.get(spec.name, {}).get(key)
            if found is not None and found != wanted:
                mismatches.append(f"{spec.name}: {key}={found}, settings say {wanted}")
    for line in mismatches:
        log.warning("topic differs from the settings", mismatch=line)
    return mismatches
