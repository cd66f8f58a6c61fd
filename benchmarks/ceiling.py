"""The pipeline's own ceiling, and how it scales out: the real propagator processes, broker and topics, with
the cost of the member store removed.

On the embedded engines the store is the bottleneck (about 3,000 µs of store CPU per member against 120
µs of propagator CPU), so the pipeline benchmark cannot show whether the Kafka side scales. Here each
propagator role runs as its own process (`python -m benchmarks.ceiling worker --role …`, the real
`bootstrap.run`: consume loops, planner, applier, aggregator, producers, commits), but over stores that
make the members' reads and writes free (`ceiling_stores`):

- **members** come from `SyntheticCompartments`: patient `Patient/ceiling-<N>` has N Observations
  `Observation/ceiling-<N>-<i>`, counted and streamed from arithmetic, not from a collection;
- **the accounts write** is `NoStorePropagation`: per member it runs what the applier runs in Python (the
  alike key, the write rule on a stored-looking document, the grouped `update_many` statements, encoded)
  and sends nothing: no read, no history copy, no write;
- **jobs** stay on the real store (`JobStore` on SecantusDB): the API's and the aggregator's records of a
  job, a few writes per applier batch.

So this measures the pipeline's ceiling, not the product on SecantusDB: what the broker, the clients and
the roles' own code can carry. A "propagator" is one set of the three role processes; with 1, 2 and 3 sets
in the same consumer groups (six partitions per topic), one 100,000-member command each: members/s, and CPU
per member of each role, the broker and the store. Then a set joins at a third of a job and one leaves
(SIGTERM) at two thirds: the longest pause in the job's applied count after each, which is the rebalance as
a caller sees it. Then with three sets one is killed (SIGKILL) at half of a job: the job must complete with
exactly every member counted once.

`python -m benchmarks.ceiling` prints the result; `--output docs/benchmarks.md` rewrites the block between
the ceiling markers there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.common import BenchError, PropagatorProcess, isolated_db, isolated_settings, say
from benchmarks.procfs import cpu_snapshot, cpu_spent, engine_pids, status_kib
from benchmarks.report import machine_facts, markdown_table, mib, section_runner
from setaccounts.events import Effect, SetAccountsCommand
from setaccounts.jobs import Job, JobStore
from setaccounts.kafka import make_producer, publish, security
from setaccounts.profile import StoreProfile
from setaccounts.settings import Settings
from setaccounts.status import TERMINAL, JobStatus
from setaccounts.store.meta import Document, prepare_write
from setaccounts.store.propagation import (
    Application,
    Applied,
    alike_key,
    decide,
    grouped_writes,
    rule_input,
)
from setaccounts.topics import create_topics
from setaccounts_dev.engines import Engines
from setaccounts_propagator.bootstrap import Stores

BEGIN, END = "<!-- ceiling:begin -->", "<!-- ceiling:end -->"
ROLE_NAMES = ("planner", "applier", "aggregator")
TARGET_TWO = 1.7  # two sets ≥ 1.7x one
POLL_SECONDS = 0.05


# ---------------------------------------------------------------------------------------------------------
# The stand-in stores (in the worker processes)
# ---------------------------------------------------------------------------------------------------------


def size_of(owner: str) -> int:
    """`Patient/ceiling-<N>` has N members; any other owner none."""
    prefix = "Patient/ceiling-"
    return int(owner[len(prefix) :]) if owner.startswith(prefix) else 0


def member_ref(owner: str, i: int) -> str:
    return f"Observation/{owner.split('/', 1)[1]}-{i:07d}"


class SyntheticCompartments:
    """The planner's reads (`ports.Resources`) answered from arithmetic: no store round trip per member."""

    def __init__(self) -> None:
        self._at = datetime.now(UTC)

    async def get(self, ref: str) -> Document | None:
        kind, rid = ref.split("/", 1)
        return prepare_write({"resourceType": kind, "id": rid}, None, self._at).document

    async def count_members(self, owner: str) -> int:
        return size_of(owner)

    async def stream_members(
        self, owner: str, after: str | None, batch_size: int
    ) -> AsyncGenerator[str, None]:
        for i in range(size_of(owner)):
            ref = member_ref(owner, i)
            if after is None or ref > after:
                yield ref


class NoStorePropagation:
    """`ports.Propagates` with the applier's own work per member and no store: each member is decided as
    if stored unchanged since before the command, and the grouped statements are built, then dropped."""

    def __init__(self, write_chunk: int) -> None:
        self.write_chunk = write_chunk
        self._at = datetime.now(UTC)
        self._documents: dict[str, Document] = {}  # one stored-looking member per target

    def _stored(self, ref: str, target: str) -> Document:
        template = self._documents.get(target)
        if template is None:
            body = {
                "resourceType": "Observation",
                "id": "x",
                "status": "final",
                "subject": {"reference": target},
            }
            template = self._documents[target] = prepare_write(body, None, self._at).document
        return {**template, "_id": ref}

    async def apply(self, applications: Sequence[Application]) -> list[Effect]:
        decided: dict[tuple[Any, ...], Applied] = {}
        writes: list[tuple[Document, Applied]] = []
        outcomes: list[Effect] = []
        for app in applications:
            document = self._stored(app.resource, app.target)
            key = alike_key(app, document)
            applied = decided.get(key)
            if applied is None:
                applied = decided[key] = decide(app, rule_input(document), {}, self._at)
            writes.append((document, applied))
            outcomes.append(Effect.CHANGED if applied.changed else Effect.UNCHANGED)
        for group in grouped_writes(writes, self.write_chunk):
            group.op()
        await asyncio.sleep(0)
        return outcomes


def ceiling_stores(db: Any, profile: StoreProfile) -> Stores:
    return Stores(
        jobs=JobStore(db),
        resources=SyntheticCompartments(),
        propagation=NoStorePropagation(profile.write_chunk),
        ping=lambda: db.command("ping"),
    )


def worker(role: str) -> None:
    from setaccounts_propagator.__main__ import serve

    serve([role], ceiling_stores)


# ---------------------------------------------------------------------------------------------------------
# The measurement (in the benchmark process)
# ---------------------------------------------------------------------------------------------------------


class RoleSet:
    """One propagator: its three roles, each its own worker process (so CPU is read per role)."""

    def __init__(self, settings: Settings, workdir: Path, name: str) -> None:
        self.name = name
        self.settings = settings
        self.workdir = workdir
        self.processes = {
            role: PropagatorProcess(
                settings,
                workdir / f"ceiling-{name}-{role}.log",
                argv=[sys.executable, "-m", "benchmarks.ceiling", "worker", "--role", role],
            )
            for role in ROLE_NAMES
        }
        self.running = False

    def __enter__(self) -> RoleSet:
        self.running = True
        for process in self.processes.values():
            process.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> dict[str, int]:
        return {f"{self.name}/{role}": p.pid for role, p in self.processes.items()}

    def check(self) -> None:
        """Fail at once if a process of a running set died."""
        for process in self.processes.values() if self.running else ():
            process.check()

    def stop(self) -> None:
        self.running = False
        for process in self.processes.values():
            process.stop()

    def kill(self) -> None:
        self.running = False
        for process in self.processes.values():
            assert process.process is not None
            os.kill(process.pid, signal.SIGKILL)
            process.process.wait(10)


@dataclass
class Run:
    sets: int
    members: int
    seconds: float
    cpu: dict[str, float]  # CPU seconds over the timed window: "planner", "applier", "aggregator", engines
    pauses: dict[str, float] = field(default_factory=dict)  # the longest pause after each event
    exact: bool = True
    applier_rss_kib: int | None = None  # the largest applier's peak resident set (VmHWM) at the end

    @property
    def busy_cores(self) -> float:
        return sum(self.cpu.values()) / self.seconds

    @property
    def per_core(self) -> float:
        """Members per second per busy core: how much of the rate each added core's work buys."""
        return self.rate / self.busy_cores

    @property
    def rate(self) -> float:
        return (self.members + 1) / self.seconds

    def us_per_member(self, key: str) -> float:
        return self.cpu.get(key, float("nan")) * 1e6 / (self.members + 1)


@dataclass
class Progress:
    """The job's applied count as polled, to find pauses after an event."""

    seen: list[tuple[float, int]] = field(default_factory=list)

    def longest_pause(self, after: float, within: float = 30.0) -> float:
        """The longest time without progress starting in [after, after + within]."""
        points = [(t, a) for t, a in self.seen if t >= after - POLL_SECONDS]
        longest, since, last = 0.0, None, None
        for t, a in points:
            if t > after + within:
                break
            if last is None or a > last:
                if since is not None:
                    longest = max(longest, t - since)
                since, last = t, a
        return longest


async def one_job(
    settings: Settings,
    db: Any,
    members: int,
    sets: list[RoleSet],
    events: dict[float, tuple[str, Any]] | None = None,
) -> tuple[float, dict[str, Any], Progress, dict[str, float]]:
    """Publish one command on `Patient/ceiling-<members>` and wait for its job; `events` maps a share of
    the members applied to an action run once when the job gets there (name, callable)."""
    command = SetAccountsCommand(
        command_id=f"ceiling-{uuid.uuid4().hex[:8]}",
        target=f"Patient/ceiling-{members}",
        accounts=["Organization/ceiling"],
        propagate=True,
        requested_by="benchmark",
    )
    producer = make_producer(settings)
    await producer.start()
    progress, happened = Progress(), {}
    pending = dict(sorted((events or {}).items()))
    try:
        started = time.perf_counter()
        await publish(producer, settings.topics.commands, command)
        while True:
            job = await db.jobs.find_one({"_id": command.command_id}) or {}
            now = time.perf_counter() - started
            applied = Job.model_validate(job).applied if job else 0
            progress.seen.append((now, applied))
            for share in [s for s in pending if applied >= s * members]:
                name, action = pending.pop(share)
                action()
                happened[name] = time.perf_counter() - started
                say(f"ceiling: {name} at {applied:,} applied ({now:.1f}s)")
            if job.get("status") in TERMINAL:
                return now, job, progress, happened
            for role_set in sets:
                role_set.check()
            if now > 600:
                raise BenchError(f"ceiling job not finished after 600 s: {job}")
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await producer.stop()


def summed(cpu: dict[str, float]) -> dict[str, float]:
    """Per-process CPU seconds → per role (all sets together), plus the engines."""
    out: dict[str, float] = {}
    for key, seconds in cpu.items():
        role = key.split("/", 1)[1] if "/" in key else key
        out[role] = out.get(role, 0.0) + seconds
    return out


async def warm(settings: Settings, db: Any, sets: list[RoleSet]) -> None:
    """A tiny command first, then every role's group stable with one member per set, so no rebalance
    runs inside the timed job (a warm-up can complete before the last set has joined)."""
    _, job, _, _ = await one_job(settings, db, 3, sets)
    if job.get("status") != JobStatus.COMPLETED:
        raise BenchError(f"warm-up ended {job.get('status')}")
    await settled(settings, len(sets))


async def settled(settings: Settings, members: int, within: float = 60.0) -> None:
    """Wait until each role's consumer group is Stable with `members` members (DescribeGroups)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, **security(settings))
    await admin.start()
    try:
        deadline, states = time.monotonic() + within, {}
        while time.monotonic() < deadline:
            # One group per request: aiokafka 0.14 decodes a v3 response as v2, which reads past the end
            # of the buffer when it holds more than one group. Each group: (error_code, group_id, state,
            # protocol_type, protocol, members).
            states = {
                g[1]: (g[2], len(g[5]))
                for role in ROLE_NAMES
                for r in await admin.describe_consumer_groups([settings.group(role)])
                for g in r.groups
            }
            if len(states) == len(ROLE_NAMES) and all(s == ("Stable", members) for s in states.values()):
                return
            await asyncio.sleep(0.2)
        raise BenchError(f"consumer groups not stable with {members} members each: {states}")
    finally:
        await admin.close()


async def scaled(found: Engines, workdir: Path, members: int, count: int) -> Run:
    settings = isolated_settings(found, f"c{count}")
    await create_topics(settings)
    async with isolated_db(settings) as db:
        with contextlib.ExitStack() as stack:
            sets = [stack.enter_context(RoleSet(settings, workdir, f"s{n}")) for n in range(count)]
            await warm(settings, db, sets)
            pids = {k: v for s in sets for k, v in s.pids().items()} | engine_pids()
            before = cpu_snapshot(pids)
            seconds, job, _, _ = await one_job(settings, db, members, sets)
            after = cpu_snapshot(pids)
            rss = [status_kib(s.processes["applier"].pid, "VmHWM") for s in sets]
    exact = job.get("status") == JobStatus.COMPLETED and job.get("resources_updated") == members + 1
    if not exact:
        raise BenchError(f"{count} sets: job ended {job.get('status')} with {job.get('resources_updated')}")
    cpu = summed(cpu_spent(before, after))
    peak = max((r for r in rss if r is not None), default=None)
    run = Run(count, members, seconds, cpu, applier_rss_kib=peak)
    say(f"ceiling: {count} set(s): {seconds:.1f}s, {run.rate:,.0f} members/s")
    return run


async def disturbed(
    found: Engines,
    workdir: Path,
    members: int,
    label: str,
    count: int,
    events: Callable[[list[RoleSet], contextlib.ExitStack], dict[float, tuple[str, Any]]],
) -> Run:
    """`count` sets run (the first `events` may start more); the job's pauses after each event, and
    whether its count came out exact."""
    settings = isolated_settings(found, label)
    await create_topics(settings)
    async with isolated_db(settings) as db:
        with contextlib.ExitStack() as stack:
            sets = [stack.enter_context(RoleSet(settings, workdir, f"{label}{n}")) for n in range(count)]
            await warm(settings, db, sets)
            planned = events(sets, stack)
            seconds, job, progress, happened = await one_job(settings, db, members, sets, planned)
    run = Run(count, members, seconds, {}, {e: progress.longest_pause(t) for e, t in happened.items()})
    run.exact = job.get("status") == JobStatus.COMPLETED and job.get("resources_updated") == members + 1
    say(f"ceiling: {label}: pauses {run.pauses}, {seconds:.1f}s, exact {run.exact}")
    return run


def join_then_leave(sets: list[RoleSet], stack: contextlib.ExitStack) -> dict[float, tuple[str, Any]]:
    """A second set joins at a third of the job; the first leaves (SIGTERM) at two thirds."""
    joining = RoleSet(sets[0].settings, sets[0].workdir, "joined")
    stack.callback(joining.stop)
    sets.append(joining)
    return {1 / 3: ("join", joining.__enter__), 2 / 3: ("leave", sets[0].stop)}


def kill_one(sets: list[RoleSet], stack: contextlib.ExitStack) -> dict[float, tuple[str, Any]]:
    """One of the sets is killed (SIGKILL, every role) at half the job."""
    return {0.5: ("kill -9", sets[0].kill)}


@dataclass
class Ceiling:
    scaled: list[Run]
    join_leave: Run
    kill: Run


def yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def block(found: Engines, result: Ceiling, total: float) -> str:
    one = result.scaled[0]
    rows = []
    for run in result.scaled:
        rows.append(
            [
                str(run.sets),
                f"{run.members:,}",
                f"{run.seconds:.1f}",
                f"{run.rate:,.0f}",
                f"{run.rate / one.rate:.2f}x",
                *(f"{run.us_per_member(r):.0f}" for r in (*ROLE_NAMES, "kafka", "mongodb")),
                f"{run.busy_cores:.2f}",
                f"{run.per_core:,.0f}",
                mib(run.applier_rss_kib),
            ]
        )
    table = markdown_table(
        [
            "propagators",
            "members",
            "s",
            "members/s",
            "÷ one",
            "planner µs/member",
            "applier µs/member",
            "aggregator µs/member",
            "broker µs/member",
            "store µs/member",
            "busy cores",
            "members/s per busy core",
            "applier peak RSS MiB",
        ],
        rows,
    )
    two = next((r for r in result.scaled if r.sets == 2), None)
    ratio = two.rate / one.rate if two else float("nan")
    two_per_core = two.per_core / one.per_core if two else float("nan")
    cores = os.cpu_count() or 1
    pauses = ", ".join(f"{e} {s:.1f} s" for e, s in result.join_leave.pauses.items())
    kill_pause = next(iter(result.kill.pauses.values()), float("nan"))
    return "\n".join(
        [
            BEGIN,
            "_Generated by `python -m benchmarks.ceiling --output docs/benchmarks.md` "
            "(part of `make bench`)._",
            "",
            *machine_facts(found),
            f"- whole run, engines start-up included: {total:.0f} s",
            "",
            table,
            "",
            f"- two propagators against one: **{ratio:.2f}x** (target ≥ {TARGET_TWO}x: "
            f"{'met' if ratio >= TARGET_TWO else '**not met**'}); one propagator with the broker and the"
            f" jobs' store keeps {one.busy_cores:.2f} of this machine's {cores} cores busy, so the most any"
            f" number of propagators could reach here is {cores / one.busy_cores:.2f}x; per busy core, two"
            f" propagators carry {two_per_core:.2f}x what one does",
            f"- a propagator joining and leaving mid-job: longest pause in the applied count {pauses}; "
            f"job {result.join_leave.seconds:.1f} s, count exact: {yes(result.join_leave.exact)}",
            f"- one of three killed (SIGKILL) at half the job: longest pause {kill_pause:.1f} s, "
            f"job {result.kill.seconds:.1f} s, count exact: {yes(result.kill.exact)}",
            END,
        ]
    )


HEADING = """## The pipeline's ceiling (`python -m benchmarks.ceiling`)

The real propagator processes, broker and topics, with the member store's cost removed (the module's
docstring says exactly how): what the Kafka side and the roles' own code carry, and how it scales out."""


async def measure(found: Engines, workdir: Path, members: int, counts: Sequence[int]) -> Ceiling:
    runs = [await scaled(found, workdir, members, n) for n in counts]
    moved = await disturbed(found, workdir, members, "cj", 1, join_then_leave)
    return Ceiling(runs, moved, await disturbed(found, workdir, members, "ck", 3, kill_one))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    work = sub.add_parser("worker", help="run one propagator role over the stand-in stores")
    work.add_argument("--role", choices=ROLE_NAMES, required=True)
    parser.add_argument("--members", type=int, default=100_000, help="members of each job")
    parser.add_argument("--sets", default="1,2,3", help="propagator counts to measure, e.g. 1,2,3")
    parser.add_argument("--output", type=Path, help="rewrite the ceiling block of this file")
    arguments = parser.parse_args()
    if arguments.command == "worker":
        worker(arguments.role)
    else:
        counts = [int(n) for n in arguments.sets.split(",")]
        main = section_runner(
            "setaccounts-ceiling-",
            lambda found, work: measure(found, work, arguments.members, counts),
            block,
            (BEGIN, END, HEADING),
        )
        asyncio.run(main(arguments.output))
