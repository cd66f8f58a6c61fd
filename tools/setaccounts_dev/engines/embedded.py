"""The embedded engines: Apache Kafka where `java` and `mvn` are there, else Tansu (or as
`SETACCOUNTS_EMBEDDED_KAFKA=apache|tansu` forces), and SecantusDB, in a fresh data directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from setaccounts_dev.engines import secantus
from setaccounts_dev.engines.apache_kafka import apache_kafka_unavailable, kafka_version, start_apache_kafka
from setaccounts_dev.engines.docker import docker_available
from setaccounts_dev.engines.processes import EmbeddedProcess
from setaccounts_dev.engines.secantus import start_secantus
from setaccounts_dev.engines.servers import PLAINTEXT, EngineError, Engines, KafkaSecurity
from setaccounts_dev.engines.tansu import start_tansu

EMBEDDED_KAFKA_VAR = "SETACCOUNTS_EMBEDDED_KAFKA"


def embedded_kafka_choice() -> tuple[str, str]:
    """("apache" | "tansu", why): the environment variable if set, else Apache Kafka when it can run here."""
    forced = os.environ.get(EMBEDDED_KAFKA_VAR, "").strip().lower()
    if forced in ("apache", "tansu"):
        return forced, f"{EMBEDDED_KAFKA_VAR}={forced}"
    if forced not in ("", "auto"):
        raise EngineError(f"{EMBEDDED_KAFKA_VAR} must be apache, tansu or auto; got {forced!r}")
    reason = apache_kafka_unavailable()
    if reason is None:
        return "apache", "java and mvn found"
    return "tansu", reason


def tansu_smoke_pass() -> bool:
    """Whether `make test` follows the whole suite with its smoke tests on Tansu: yes unless the servers come
    from the environment or the suite's broker was the embedded Tansu already."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("MONGODB_URI"):
        return False
    return docker_available() or embedded_kafka_choice()[0] != "tansu"


class EmbeddedKafka(NamedTuple):
    proc: EmbeddedProcess
    bootstrap: str
    security: KafkaSecurity  # how its clients connect
    description: str


def start_embedded_kafka(workdir: Path) -> EmbeddedKafka:
    """The embedded broker `embedded_kafka_choice()` names, started in `workdir`."""
    choice, why = embedded_kafka_choice()
    if choice == "apache":
        proc, bootstrap, user = start_apache_kafka(workdir / "kafka")
        described = f"Apache Kafka {kafka_version()} (embedded KRaft node, SASL/{user.mechanism}; {why})"
        return EmbeddedKafka(proc, bootstrap, user, described)
    proc, bootstrap = start_tansu(workdir)
    described = f"Tansu (embedded, memory only, no authentication; {why})"
    return EmbeddedKafka(proc, bootstrap, PLAINTEXT, described)


@contextlib.contextmanager
def embedded_engines(workdir: Path | None = None) -> Iterator[Engines]:
    """A Kafka broker (Apache Kafka or Tansu) + SecantusDB as subprocesses in a fresh data directory,
    stopped and removed on exit."""
    base = Path(tempfile.mkdtemp(prefix="setaccounts-engines-", dir=workdir))
    procs: list[EmbeddedProcess] = []
    try:
        kafka = start_embedded_kafka(base)
        procs.append(kafka.proc)
        mongo_proc, uri = start_secantus(base)
        procs.append(mongo_proc)
        described = f"{kafka.description} + SecantusDB"
        yield Engines(kafka.bootstrap, uri, "embedded", described, kafka.security, secantus.TUNING)
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(base, ignore_errors=True)
