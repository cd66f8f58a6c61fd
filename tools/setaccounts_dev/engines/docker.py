"""The engines as containers when a Docker engine answers (testcontainers): `apache/kafka` in KRaft mode and
`mongo` as a one-node replica set."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from setaccounts_dev.engines.processes import free_port, wait_mongo_ping
from setaccounts_dev.engines.servers import Engines

KAFKA_IMAGE = "apache/kafka:4.1.1"  # the version tools/kafka/pom.xml pins (a test checks)
MONGO_IMAGE = "mongo:8.0"


def docker_available() -> bool:
    """True when a Docker engine answers a ping (the docker SDK comes with testcontainers)."""
    if os.environ.get("SETACCOUNTS_ENGINES") == "embedded":
        return False
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _apache_kafka(host_port: int) -> Any:
    """`apache/kafka` as a one-node KRaft cluster advertising the host port it is published on.

    (testcontainers' KafkaContainer only drives Confluent images.)
    """
    from testcontainers.core.container import DockerContainer

    return (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, host_port)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="PLAINTEXT://:9092,CONTROLLER://:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://127.0.0.1:{host_port}",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS="1000",  # the tests use 3 s sessions
        )
    )


@contextlib.contextmanager
def docker_engines() -> Iterator[Engines]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    with contextlib.ExitStack() as stack:
        kafka_port = free_port()
        kafka = stack.enter_context(_apache_kafka(kafka_port))
        mongo = stack.enter_context(
            DockerContainer(MONGO_IMAGE).with_command("--replSet rs0 --bind_ip_all").with_exposed_ports(27017)
        )
        wait_for_logs(kafka, "Kafka Server started", timeout=120)
        wait_for_logs(mongo, "Waiting for connections", timeout=120)
        initiate = "rs.initiate({_id: 'rs0', members: [{_id: 0, host: 'localhost:27017'}]})"
        mongo.exec(["mongosh", "--quiet", "--eval", initiate])
        uri = f"mongodb://{mongo.get_container_host_ip()}:{mongo.get_exposed_port(27017)}/?directConnection=true"
        wait_mongo_ping(uri)
        yield Engines(f"127.0.0.1:{kafka_port}", uri, "docker", f"Docker: {KAFKA_IMAGE} + {MONGO_IMAGE}")
