"""Apache Kafka as one embedded KRaft node (broker and controller in one JVM), jars resolved by Maven from
tools/kafka/pom.xml, requiring SASL/SCRAM-SHA-512 from every client with a password generated when its
data directory is formatted."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from setaccounts_dev.engines.processes import (
    EmbeddedProcess,
    free_port,
    in_own_loop,
    port_open,
    write_private,
)
from setaccounts_dev.engines.servers import PLAINTEXT, EngineError, KafkaSecurity

KAFKA_POM = Path(__file__).resolve().parents[2] / "kafka" / "pom.xml"


# --- Apache Kafka: one KRaft node (broker + controller) in a JVM, jars from Maven ---------------------------


def _cache_dir() -> Path:
    base = os.environ.get("SETACCOUNTS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "setaccounts"
    )
    return Path(base)


def kafka_version() -> str:
    """The Kafka version tools/kafka/pom.xml pins."""
    found = re.search(r"<kafka.version>([^<]+)</kafka.version>", KAFKA_POM.read_text())
    return found.group(1) if found else "?"


def _java_major() -> int | None:
    """The major version of the `java` on PATH; None without one."""
    java = shutil.which("java")
    return None if java is None else _java_major_of(java)


@functools.cache
def _java_major_of(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def _classpath_cache() -> Path:
    digest = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()[:16]
    return _cache_dir() / f"kafka-classpath-{digest}.txt"


def _cached_classpath() -> str | None:
    """The classpath Maven resolved last time for this very pom, if every jar is still in ~/.m2."""
    with contextlib.suppress(OSError):
        classpath = _classpath_cache().read_text().strip()
        if classpath and all(Path(jar).is_file() for jar in classpath.split(os.pathsep)):
            return classpath
    return None


def apache_kafka_unavailable() -> str | None:
    """Why the embedded Apache Kafka cannot run here (it needs Java 17+, and Maven unless the jars were
    resolved before); None if it can."""
    if not KAFKA_POM.is_file():
        return f"no {KAFKA_POM} (installed without the source tree)"
    major = _java_major()
    if major is None:
        return "no `java` on PATH (Apache Kafka 4 needs Java 17 or newer)"
    if major < 17:
        return f"`java` is Java {major}; Apache Kafka 4 needs Java 17 or newer"
    if shutil.which("mvn") is None and _cached_classpath() is None:
        return "no `mvn` on PATH to fetch the Kafka jars (Maven resolves tools/kafka/pom.xml into ~/.m2)"
    return None


def kafka_classpath() -> str:
    """The broker's classpath, cached per pom.xml content: Maven runs only when no cache is valid."""
    reason = apache_kafka_unavailable()
    if reason is not None:
        raise EngineError(f"The embedded Apache Kafka cannot run: {reason}.")
    cached = _cached_classpath()
    if cached is not None:
        return cached
    mvn = shutil.which("mvn")
    assert mvn is not None  # checked by apache_kafka_unavailable() when nothing is cached
    target = _classpath_cache()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp")
    argv = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(KAFKA_POM),
        "dependency:build-classpath",
        "-Dmdep.includeScope=runtime",
        f"-Dmdep.outputFile={partial}",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    except subprocess.TimeoutExpired as exc:
        raise EngineError("Maven did not resolve the Kafka jars within 15 minutes") from exc
    if done.returncode != 0 or not partial.is_file():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise EngineError(
            f"Maven could not resolve the Kafka jars (`{' '.join(argv)}` exited {done.returncode}):\n{tail}"
        )
    partial.replace(target)
    return target.read_text().strip()


_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = STDOUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""

# A development broker: one node, fast group joins, low memory. Everything else is Kafka's default.
_BROKER_DEFAULTS = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    # Clients (and the broker itself) authenticate with SCRAM-SHA-512 on CLIENT; the controller listener
    # takes the node's own user with PLAIN (SCRAM credentials live in the metadata the controller serves).
    "inter.broker.listener.name": "CLIENT",
    "listener.security.protocol.map": "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
    "sasl.enabled.mechanisms": "SCRAM-SHA-512",
    "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
    "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
    "sasl.mechanism.controller.protocol": "PLAIN",
    # Without an ACL nobody but the super user (the services' user) may do anything.
    "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "num.partitions": "3",
    # Topics are created explicitly (setaccounts.kafka.create_topics), as in compose.yaml.
    "auto.create.topics.enable": "false",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "10",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    # The tests use 3 s sessions so a consumer that leaves is noticed quickly (Kafka's floor is 6 s).
    "group.min.session.timeout.ms": "1000",
    # After a crash (kill -9) the new incarnation waits for the old one's session to expire (9 s by default).
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
    "num.io.threads": "4",
    "num.network.threads": "2",
    "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
}

_JVM_OPTIONS = [
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",  # C1 only: much less CPU at start-up; a dev broker never needs C2's peak
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
    "-Djava.net.preferIPv4Stack=true",
]


def _read_properties(path: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#"):
                found[key.strip()] = value.strip()
    return found


def _kafka_cluster_id() -> str:
    """A random cluster id in Kafka's form (URL-safe base64 of 16 bytes; one in 64 starts with "-")."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


KAFKA_USER = "setaccounts"
KAFKA_MECHANISM = "SCRAM-SHA-512"
_SCRAM_ITERATIONS = 8192


def kafka_credentials(data_dir: Path) -> KafkaSecurity:
    """The SASL user of the embedded Apache Kafka on `data_dir`: made with the data directory and kept in it
    (mode 0600), so a broker restarted on the same data takes the same clients."""
    path = data_dir / "sasl-client.properties"
    stored = _read_properties(path)
    if not stored.get("password"):
        stored = {"username": KAFKA_USER, "password": secrets.token_urlsafe(24)}
        write_private(path, "".join(f"{k}={v}\n" for k, v in stored.items()))
    return KafkaSecurity("SASL_PLAINTEXT", KAFKA_MECHANISM, stored["username"], stored["password"])


def _scram_credential(user: KafkaSecurity) -> str:
    """`kafka-storage format --add-scram` in its salted form: the password itself never reaches a command
    line (`ps` would show it)."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha512", user.password.encode(), salt, _SCRAM_ITERATIONS)
    encoded = base64.b64encode
    return (
        f"{user.mechanism}=[name={user.username},iterations={_SCRAM_ITERATIONS},"
        f'salt="{encoded(salt).decode()}",saltedpassword="{encoded(salted).decode()}"]'
    )


def _write_kafka_config(data_dir: Path, port: int, controller_port: int, user: KafkaSecurity) -> Path:
    login = (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user.username}" password="{user.password}";'
    )
    controller_login = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{user.username}" password="{user.password}" user_{user.username}="{user.password}";'
    )
    config = {
        **_BROKER_DEFAULTS,
        "listeners": f"CLIENT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"CLIENT://127.0.0.1:{port}",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "log.dirs": str(data_dir / "kafka-logs"),
        f"listener.name.client.{user.mechanism.lower()}.sasl.jaas.config": login,
        "listener.name.controller.plain.sasl.jaas.config": controller_login,
        "super.users": f"User:{user.username}",
    }
    path = data_dir / "server.properties"
    write_private(path, "".join(f"{k}={v}\n" for k, v in config.items()))
    (data_dir / "log4j2.properties").write_text(_LOG4J2)
    return path


def _java_argv(data_dir: Path, main: str, *args: str) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise EngineError("The embedded Apache Kafka needs `java` (17 or newer) on PATH.")
    return [java, *_JVM_OPTIONS, f"-Dlog4j2.configurationFile={data_dir / 'log4j2.properties'}", main, *args]


def _java_env(classpath: str) -> dict[str, str]:
    """The classpath goes in the environment: `ps` stays readable."""
    return {**os.environ, "CLASSPATH": classpath}


def _format_kafka_storage(
    data_dir: Path, config: Path, classpath: str, users: Sequence[KafkaSecurity]
) -> None:
    """`kafka-storage format` (kafka.tools.StorageTool) once per data directory: a static one-voter quorum
    whose metadata holds the SCRAM credentials of `users` from the start."""
    if (data_dir / "kafka-logs" / "meta.properties").is_file():
        return
    credentials = [argument for user in users for argument in ("--add-scram", _scram_credential(user))]
    argv = _java_argv(
        data_dir,
        "kafka.tools.StorageTool",
        "format",
        f"--cluster-id={_kafka_cluster_id()}",  # one token: an id may start with "-", which is not a value
        "--config",
        str(config),
        *credentials,
    )
    try:
        done = subprocess.run(
            argv, env=_java_env(classpath), capture_output=True, text=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise EngineError(f"formatting the Kafka storage in {data_dir} took over 120 s") from exc
    if done.returncode != 0:
        raise EngineError(
            f"formatting the Kafka storage in {data_dir} failed ({done.returncode}):\n"
            + "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        )


async def _kafka_serves_groups(bootstrap: str, user: KafkaSecurity) -> bool:
    """A broker is listed and the group coordinator answers (the first ask creates `__consumer_offsets`,
    so consumers do not start with coordinator errors)."""
    from aiokafka.admin import AIOKafkaAdminClient

    from setaccounts.kafka import security
    from setaccounts.settings import Settings

    secured = security(Settings(kafka_bootstrap_servers=bootstrap, **user.settings()))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, **secured)
    try:
        await admin.start()
        if not (await admin.describe_cluster())["brokers"]:
            return False
        await admin.find_coordinator("setaccounts-engine-ready")
        return True
    except Exception:
        return False
    finally:
        await admin.close()


def wait_kafka_ready(
    bootstrap: str,
    proc: EmbeddedProcess | None = None,
    timeout: float = 60,
    user: KafkaSecurity = PLAINTEXT,
) -> None:
    """Until the broker serves metadata and consumer groups (its port opens before it joins its quorum)."""
    deadline = time.monotonic() + timeout
    while not in_own_loop(_kafka_serves_groups, bootstrap, user):
        if proc is not None and not proc.alive():
            raise EngineError(f"Kafka exited during start-up. Log {proc.log_path}:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise EngineError(f"Kafka at {bootstrap} did not serve metadata and groups within {timeout:.0f}s")
        time.sleep(0.2)


def start_apache_kafka(
    data_dir: Path, port: int | None = None, others: Sequence[KafkaSecurity] = ()
) -> tuple[EmbeddedProcess, str, KafkaSecurity]:
    """Start Apache Kafka on `data_dir` (formatted on first use) and wait until it serves metadata; with
    the SASL credentials its clients need (`kafka_credentials`: the super user, which the services use).
    `others`: more SCRAM users, made when the data directory is formatted; no ACL grants them anything.

    To restart the broker on the same data (topics, offsets, committed groups and the credentials survive):
    `stop()` or `kill()` the process, then call this again with the same `data_dir` and the `port` it had.
    The controller keeps its port from the last start when that is still free.
    """
    classpath = kafka_classpath()
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    user = kafka_credentials(data_dir)
    previous = _read_properties(data_dir / "server.properties").get("controller.quorum.voters", "")
    last_controller = int(previous.rpartition(":")[2]) if previous.rpartition(":")[2].isdigit() else 0
    for attempt in range(3):
        chosen = port or free_port()
        controller = (
            last_controller if attempt == 0 and last_controller and not port_open(last_controller) else 0
        )
        controller = controller or free_port()
        config = _write_kafka_config(data_dir, chosen, controller, user)
        _format_kafka_storage(data_dir, config, classpath, [user, *others])
        argv = _java_argv(data_dir, "kafka.Kafka", str(config))
        proc = EmbeddedProcess("kafka", argv, _java_env(classpath), data_dir / "kafka.log")
        bootstrap = f"127.0.0.1:{chosen}"
        try:
            proc.wait_port(chosen, timeout=120)
            wait_kafka_ready(bootstrap, proc, user=user)
        except EngineError:
            proc.stop()
            if port is not None or attempt == 2:
                raise
            continue
        return proc, bootstrap, user
    raise AssertionError("unreachable")
