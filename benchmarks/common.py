"""What every benchmark shares: progress lines, isolated settings and databases, seeded compartments built
by the one write rule, and the services as child processes (the propagator, the API) stopped on every path
out."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.mongo import ensure_indexes, make_client
from setaccounts.settings import Settings
from setaccounts.store.meta import Document, prepare_write
from setaccounts_dev.commands import api_command, propagator_command
from setaccounts_dev.devkeys import DEV_AUDIENCE, DEV_ISSUER, JWKS_FILE, claims_for, ensure_dev_key
from setaccounts_dev.engines import Engines
from setaccounts_dev.engines.processes import free_port

ACCOUNT = "Organization/bench"

REPO = Path(__file__).resolve().parent.parent

SEED_CHUNK = 5_000  # documents per insert_many while seeding (not timed)

STOP_SECONDS = 20.0

_STARTED = time.monotonic()

Db = AsyncDatabase[Document]


class BenchError(RuntimeError):
    """A measurement could not be taken (or gave a wrong answer); the message says which and why."""


def say(message: str) -> None:
    """One progress line with the time since start, so a slow step shows while it happens."""
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", flush=True)


def isolated_settings(found: Engines, label: str) -> Settings:
    """Settings with a fresh database, topic prefix and consumer groups, so no measurement sees another."""
    run = f"{label}{uuid.uuid4().hex[:8]}"
    return Settings(
        **found.settings(),
        mongodb_database=f"bench_{run}",
        topic_prefix=f"bench.{run}.",
        group_prefix=f"bench-{run}",
        replication_factor=1,
        min_insync_replicas=1,
    )


def api_settings(found: Engines, label: str, workdir: Path) -> tuple[Settings, str]:
    """Isolated settings whose API trusts a development signing key made for the run, and an admin token
    from it."""
    key = ensure_dev_key(workdir / "keys")
    settings = isolated_settings(found, label).model_copy(
        update={
            "auth_issuer": DEV_ISSUER,
            "auth_audience": DEV_AUDIENCE,
            "auth_jwks_file": str(workdir / "keys" / JWKS_FILE),
        }
    )
    return settings, key.sign(claims_for("benchmark", admin=True))


def patient_documents(pid: str, members: int, at: datetime) -> Iterator[Document]:
    """A patient, then `members` Observations in its compartment, as stored documents (a generator: the
    50k case never holds more than one insert chunk)."""
    yield prepare_write({"resourceType": "Patient", "id": pid}, None, at).document
    for i in range(members):
        observation = {
            "resourceType": "Observation",
            "id": f"{pid}-obs-{i:06d}",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": f"Patient/{pid}"},
        }
        yield prepare_write(observation, None, at).document


async def seed(db: Db, pid: str, members: int) -> list[str]:
    """Insert the patient and its members in chunks (not timed); returns the members' references."""
    chunk: list[Document] = []
    refs: list[str] = []
    for document in patient_documents(pid, members, datetime.now(UTC)):
        chunk.append(document)
        if document["type"] != "Patient":
            refs.append(document["_id"])
        if len(chunk) >= SEED_CHUNK:
            await db.resources.insert_many(chunk, ordered=False)
            chunk = []
    if chunk:
        await db.resources.insert_many(chunk, ordered=False)
    return refs


@contextlib.asynccontextmanager
async def isolated_db(settings: Settings) -> AsyncIterator[Db]:
    """The measurement's own database, dropped afterwards so the store stays small for the next one."""
    # The services' client (`make_client`: writes journaled, majority-acknowledged), so the baselines write
    # with the durability the pipeline needs before it commits an offset, and the ratios compare like with
    # like (on SecantusDB a journaled write costs about a quarter more server CPU).
    client = make_client(settings)
    try:
        db = client[settings.mongodb_database]
        await ensure_indexes(db)
        yield db
    finally:
        with contextlib.suppress(Exception):
            await client.drop_database(settings.mongodb_database)
        await client.close()


def raw_set(at: datetime) -> dict[str, Any]:
    """What the write rule changes on a member, as one `$set`: the same bytes a propagation writes."""
    return {
        "resource.meta.accounts": [{"reference": ACCOUNT}],
        "resource.meta.compartment": [{"reference": "Patient/raw"}, {"reference": ACCOUNT}],
        "resource.meta.versionId": "2",
        "resource.meta.lastUpdated": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "compartments": ["Patient/raw", ACCOUNT],
        "version": 2,
    }


def stop_child(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after `STOP_SECONDS`: a service child never outlives its benchmark."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_SECONDS)


class PropagatorProcess:
    """`python -m setaccounts_propagator run --role all` (or `argv`) as a child process with its own log file.

    A context manager so it is stopped on every path out (SIGTERM, then SIGKILL after STOP_SECONDS).
    """

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        argv: list[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.argv = argv or propagator_command()
        self.env = dict(env or {})
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        """The parent's environment without its SETACCOUNTS_* and OTEL_* settings, plus this run's
        isolated ones and the `env` it was given."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SETACCOUNTS_", "OTEL_"))}
        env.update(self.settings.to_env())  # servers and their credentials, prefixes, database, timeouts
        env.update(self.env)
        return env

    def __enter__(self) -> PropagatorProcess:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv,
            env=self.environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def check(self) -> None:
        """Fail at once, with the log's tail, if the propagator died instead of waiting for a timeout."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise BenchError(
                f"the propagator exited with code {self.process.returncode}; log {self.log_path}:\n"
                + self.log_tail()
            )

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process)
        if self._log is not None:
            self._log.close()
            self._log = None


class ApiProcess:
    """`uvicorn --factory setaccounts_api.app:create_app` on a free loopback port, with `settings`."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SETACCOUNTS_")}
        env.update(settings.to_env())
        argv = api_command("127.0.0.1", self.port, "--log-level", "warning", "--no-access-log")
        self._log: IO[bytes] = log_path.open("wb")
        self.log_path = log_path
        self.process = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    async def wait_ready(self, limit: float = 60) -> None:
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise BenchError(f"the API exited with {self.process.returncode}; see {self.log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise BenchError(f"the API was not ready within {limit:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        stop_child(self.process)
        self._log.close()
