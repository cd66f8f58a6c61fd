"""The embedded Apache Kafka: which broker is chosen and why, and a restart on the same data directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from setaccounts.kafka import Security, security
from setaccounts.settings import Settings
from setaccounts_dev.engines import EngineError, apache_kafka
from setaccounts_dev.engines.apache_kafka import apache_kafka_unavailable, kafka_classpath, start_apache_kafka
from setaccounts_dev.engines.embedded import EMBEDDED_KAFKA_VAR, embedded_kafka_choice, start_embedded_kafka

pytestmark = pytest.mark.integration

needs_apache = pytest.mark.skipif(
    apache_kafka_unavailable() is not None, reason=f"no embedded Apache Kafka: {apache_kafka_unavailable()}"
)


def only_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *tools: str) -> None:
    """PATH holds only these tools (when this machine has them), so the others look missing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        for folder in os.environ.get("PATH", "").split(os.pathsep):
            if (Path(folder) / tool).is_file():
                (bin_dir / tool).symlink_to(Path(folder) / tool)
                break
    monkeypatch.setenv("PATH", str(bin_dir))


@pytest.mark.smoke
def test_without_java_the_embedded_broker_is_tansu_and_forcing_apache_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    only_on_path(monkeypatch, tmp_path, "mvn")
    monkeypatch.delenv(EMBEDDED_KAFKA_VAR, raising=False)
    assert "java" in (apache_kafka_unavailable() or "")
    assert embedded_kafka_choice()[0] == "tansu"
    with pytest.raises(EngineError, match="java"):
        kafka_classpath()
    monkeypatch.setenv(EMBEDDED_KAFKA_VAR, "apache")
    with pytest.raises(EngineError, match="java"):
        start_embedded_kafka(tmp_path)


@pytest.mark.smoke
def test_without_maven_or_resolved_jars_apache_kafka_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    if "java" in (apache_kafka_unavailable() or ""):
        pytest.skip("no Java 17+ here")
    only_on_path(monkeypatch, tmp_path, "java")
    monkeypatch.setenv("SETACCOUNTS_CACHE_DIR", str(tmp_path / "empty-cache"))
    assert "mvn" in (apache_kafka_unavailable() or "")


@pytest.mark.smoke
def test_the_variable_forces_a_broker_and_rejects_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EMBEDDED_KAFKA_VAR, "tansu")
    assert embedded_kafka_choice() == ("tansu", f"{EMBEDDED_KAFKA_VAR}=tansu")
    monkeypatch.setenv(EMBEDDED_KAFKA_VAR, "redpanda")
    with pytest.raises(EngineError, match="apache, tansu or auto"):
        embedded_kafka_choice()


@needs_apache
async def test_a_restarted_broker_keeps_topics_records_and_committed_offsets(tmp_path: Path) -> None:
    data = tmp_path / "kafka"
    proc, bootstrap, user = start_apache_kafka(data)
    secured = security(Settings(kafka_bootstrap_servers=bootstrap, **user.settings()))
    port = int(bootstrap.rpartition(":")[2])
    tp = TopicPartition("survivor", 0)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **secured)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(tp.topic, num_partitions=1, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, **secured
        )
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait(tp.topic, f"r{i}".encode(), partition=0)
        finally:
            await producer.stop()
        await _commit(bootstrap, secured, tp, 4)

        proc.stop()  # clean shutdown
        proc, again, same_user = start_apache_kafka(data, port)
        assert (again, same_user) == (bootstrap, user)  # the clients reconnect with what they had
        assert await _read(bootstrap, secured, tp) == (4, [f"r{i}" for i in range(4, 10)])

        proc.kill()  # crash
        proc, again, same_user = start_apache_kafka(data, port)
        assert same_user == user
        assert await _read(bootstrap, secured, tp) == (4, [f"r{i}" for i in range(4, 10)])
        assert (data / "kafka.log").is_file() and (data / "kafka-logs" / "meta.properties").is_file()
    finally:
        proc.stop()


def _consumer(bootstrap: str, secured: Security) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id="survivors",
        enable_auto_commit=False,
        session_timeout_ms=3000,
        **secured,
    )


async def _commit(bootstrap: str, secured: Security, tp: TopicPartition, offset: int) -> None:
    consumer = _consumer(bootstrap, secured)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


async def _read(bootstrap: str, secured: Security, tp: TopicPartition) -> tuple[int | None, list[str]]:
    """The group's committed offset, then the records from there to the end."""
    consumer = _consumer(bootstrap, secured)
    await consumer.start()
    try:
        consumer.assign([tp])
        committed = await consumer.committed(tp)
        seen: list[str] = []
        while len(seen) < 6:
            batch = await consumer.getmany(tp, timeout_ms=5000)
            if not batch:
                break
            seen += [r.value.decode() for r in batch.get(tp, []) if r.value is not None]
        return committed, seen
    finally:
        await consumer.stop()


@needs_apache
def test_a_cluster_id_that_starts_with_a_dash_still_formats_the_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One random cluster id in 64 starts with "-"; `make run` must not fail to start on it."""
    monkeypatch.setattr(apache_kafka, "_kafka_cluster_id", lambda: "-" + "A" * 21)
    proc, _, _ = start_apache_kafka(tmp_path / "kafka")
    try:
        meta = (tmp_path / "kafka" / "kafka-logs" / "meta.properties").read_text()
        assert "cluster.id=-AAAAAAAAAAAAAAAAAAAAA" in meta
    finally:
        proc.stop()
