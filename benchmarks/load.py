"""`make load`: the HTTP API under concurrent load, end to end, on loopback. Not a timed test: it reports.

The API runs as a uvicorn subprocess on a free loopback port and the propagator as its own subprocess
(`python -m setaccounts_propagator run --role all`, as `make bench` runs it), both on engines found or started
by `setaccounts_dev.engines.engines()`, with their own database, topics and consumer groups. Three phases,
each bounded in count and time:

1. **spread**: 50 concurrent `$set-accounts` (respond-async, propagate) on 50 patients of 20 members each.
2. **one target**: 20 concurrent commands on one patient (20 members), each with its own account. The final
   state must be the command with the highest per-target sequence (`target_seq`, given by the planner):
   the patient and every member carry exactly its account.
3. **reads**: waves of 200 concurrent reads (nine in ten by id, one in ten a `_compartment` search): three
   waves with nothing else running, then waves while a 5,000-member propagation runs, until it completes
   (at most 10 waves).

For each phase: latency p50/p95/p99 of the HTTP calls, error counts, and for commands the time until the
job completed. The run fails (exit 1) on any 5xx, a job that does not complete, or a wrong final state.
`python -m benchmarks.load [--output docs/benchmarks.md]` writes its section of the report.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import ApiProcess, PropagatorProcess, isolated_db, isolated_settings, say, seed
from benchmarks.procfs import cpu_snapshot, cpu_spent, engine_pids
from benchmarks.report import replace_block
from setaccounts.status import TERMINAL
from setaccounts.topics import create_topics
from setaccounts_dev.engines import Engines, engines
from setaccounts_dev.jobs import JobsNotFinished, reached

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "docs" / "benchmarks.md"
BEGIN, END = "<!-- load:begin -->", "<!-- load:end -->"
SPREAD_PATIENTS, SPREAD_MEMBERS = 50, 20
HOT_COMMANDS, HOT_MEMBERS = 20, 20
BIG_MEMBERS, READ_WAVE, MAX_WAVES, IDLE_WAVES = 5_000, 200, 10, 3
PHASE_LIMIT_SECONDS = 300.0
POLL_SECONDS = 0.1
ASYNC = {"Prefer": "respond-async", "Content-Type": "application/fhir+json"}


class LoadError(RuntimeError):
    """The API gave a wrong answer under load (5xx, a lost job, a wrong final state)."""


# ---------------------------------------------------------------------------------------------------------
# The API as a subprocess
# ---------------------------------------------------------------------------------------------------------


class Clients:
    """Requests spread round-robin over several small httpx clients: one pool of hundreds of connections
    costs the client more CPU per request than the API spends answering it (the pool's bookkeeping grows
    with its size). Idle connections are dropped before uvicorn's 5 s keep-alive ends, so a request never
    goes out on a connection the server is closing."""

    def __init__(self, base_url: str, connections: int, per_client: int = 20) -> None:
        limits = httpx.Limits(
            max_connections=per_client, max_keepalive_connections=per_client, keepalive_expiry=2.0
        )
        count = max(1, -(-connections // per_client))
        self.clients = [
            httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) for _ in range(count)
        ]
        self._next = 0

    def pick(self) -> httpx.AsyncClient:
        self._next = (self._next + 1) % len(self.clients)
        return self.clients[self._next]

    def get(self, url: str, **kwargs: Any) -> Awaitable[httpx.Response]:
        return self.pick().get(url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Awaitable[httpx.Response]:
        return self.pick().post(url, **kwargs)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


# ---------------------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Calls:
    """Latencies (s) and status codes of a phase's HTTP calls; transport errors count as status 0."""

    seconds: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)  # transport errors by type

    async def time(self, call: Awaitable[httpx.Response]) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await call
        except httpx.HTTPError as exc:
            self.failures[type(exc).__name__] += 1
            self.seconds.append(time.perf_counter() - started)
            self.statuses.append(0)
            return None
        self.seconds.append(time.perf_counter() - started)
        self.statuses.append(response.status_code)
        if response.status_code >= 500:
            self.failures[f"{response.status_code}: {response.text[:200]}"] += 1
        return response

    @property
    def errors(self) -> int:
        return sum(1 for s in self.statuses if not 200 <= s < 300)

    @property
    def server_errors(self) -> int:
        return sum(1 for s in self.statuses if s >= 500 or s == 0)


def percentiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        only = values[0] if values else float("nan")
        return only, only, only
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


@dataclass
class Phase:
    name: str
    what: str
    calls: Calls
    completion: list[float] = field(default_factory=list)  # request sent → job completed, per command
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process during the phase


def command_body(account: str) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "accounts", "valueReference": {"reference": account}},
            {"name": "propagate", "valueBoolean": True},
        ],
    }


def command_id_of(response: httpx.Response) -> str:
    return response.headers["content-location"].rstrip("/").split("/")[-2]


async def send_commands(
    api: Clients, targets_and_accounts: list[tuple[str, str]], calls: Calls
) -> list[tuple[str, float]]:
    """All commands at once (respond-async); returns (command id, sent at) of each accepted one."""

    async def one(target: str, account: str) -> tuple[str, float] | None:
        sent = time.perf_counter()
        response = await calls.time(
            api.post(f"/{target}/$set-accounts", json=command_body(account), headers=ASYNC)
        )
        if response is None or response.status_code != 202:
            return None
        return command_id_of(response), sent

    sent = await asyncio.gather(*(one(t, a) for t, a in targets_and_accounts))
    return [s for s in sent if s is not None]


async def wait_jobs(
    db: Any, sent: list[tuple[str, float]], limit: float
) -> tuple[dict[str, Any], list[float]]:
    """Every command's job once it ended; returns the jobs and each one's completion latency."""
    started_at = dict(sent)
    done: dict[str, Any] = {}
    latency: list[float] = []
    try:
        async for job in reached(db, started_at, seconds=limit, poll_seconds=POLL_SECONDS):
            done[job["_id"]] = job
            latency.append(time.perf_counter() - started_at[job["_id"]])
    except JobsNotFinished as exc:
        raise LoadError(
            f"{len(sent) - len(done)} of {len(sent)} jobs not finished after {limit:.0f}s"
        ) from exc
    return done, latency


def check_completed(jobs: dict[str, Any], expected: int, sent: int, wanted: int) -> None:
    """Every command accepted and completed with `resources_updated == expected`: no lost job."""
    if sent != wanted:
        raise LoadError(f"only {sent} of {wanted} commands were accepted")
    bad = {c: (j.get("status"), j.get("resources_updated")) for c, j in jobs.items()}
    bad = {c: v for c, v in bad.items() if v != ("completed", expected)}
    if bad:
        raise LoadError(f"{len(bad)} jobs did not complete with {expected} resources updated: {bad}")


async def accounts_in(db: Any, refs: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    async for doc in db.resources.find({"_id": {"$in": refs}}, {"resource.meta.accounts": 1}):
        accounts = ((doc.get("resource") or {}).get("meta") or {}).get("accounts") or []
        found[doc["_id"]] = [a["reference"] for a in accounts]
    return found


async def phase_spread(api: Clients, db: Any) -> Phase:
    phase = Phase(
        "spread",
        f"{SPREAD_PATIENTS} concurrent `$set-accounts` on {SPREAD_PATIENTS} patients "
        f"({SPREAD_MEMBERS} members each)",
        Calls(),
    )
    targets = [(f"Patient/s{i:02d}", f"Organization/s{i:02d}") for i in range(SPREAD_PATIENTS)]
    started = time.perf_counter()
    sent = await send_commands(api, targets, phase.calls)
    jobs, phase.completion = await wait_jobs(db, sent, PHASE_LIMIT_SECONDS)
    phase.wall_seconds = time.perf_counter() - started
    check_completed(jobs, SPREAD_MEMBERS + 1, len(sent), SPREAD_PATIENTS)
    for target, account in targets:
        pid = target.split("/")[1]
        refs = [target, *(f"Observation/{pid}-obs-{i:06d}" for i in range(SPREAD_MEMBERS))]
        wrong = {r: a for r, a in (await accounts_in(db, refs)).items() if a != [account]}
        if wrong:
            raise LoadError(f"{target}: resources without exactly {account}: {wrong}")
    phase.notes.append(
        f"all {SPREAD_PATIENTS * (SPREAD_MEMBERS + 1):,} resources carry their patient's account"
    )
    return phase


async def phase_one_target(api: Clients, db: Any) -> Phase:
    phase = Phase(
        "one target",
        f"{HOT_COMMANDS} concurrent `$set-accounts` on one patient ({HOT_MEMBERS} members), "
        "each its own account",
        Calls(),
    )
    target = "Patient/hot"
    commands = [(target, f"Organization/hot-{k:02d}") for k in range(HOT_COMMANDS)]
    started = time.perf_counter()
    sent = await send_commands(api, commands, phase.calls)
    jobs, phase.completion = await wait_jobs(db, sent, PHASE_LIMIT_SECONDS)
    phase.wall_seconds = time.perf_counter() - started
    check_completed(jobs, HOT_MEMBERS + 1, len(sent), HOT_COMMANDS)
    sequences = sorted(j["target_seq"] for j in jobs.values())
    if len(set(sequences)) != len(sequences):
        raise LoadError(f"per-target sequence numbers repeat: {sequences}")
    last = max(jobs.values(), key=lambda j: j["target_seq"])
    expected = list(last["accounts"])
    refs = [target, *(f"Observation/hot-obs-{i:06d}" for i in range(HOT_MEMBERS))]
    wrong = {r: a for r, a in (await accounts_in(db, refs)).items() if a != expected}
    if wrong:
        raise LoadError(
            f"final state is not the last command's ({expected}, seq {last['target_seq']}): {wrong}"
        )
    phase.notes.append(
        f"final accounts = the command with the highest target_seq ({last['target_seq']}: "
        f"{expected[0]}) on the patient and all {HOT_MEMBERS} members"
    )
    return phase


async def read_wave(api: Clients, by_id: Calls, searches: Calls) -> None:
    """READ_WAVE concurrent reads: nine in ten by id (a member of the big patient), one in ten a
    `_compartment` search of a small patient."""

    def read(k: int) -> Awaitable[httpx.Response | None]:
        if k % 10 == 0:
            patient = f"Patient/s{k % SPREAD_PATIENTS:02d}"
            return searches.time(api.get("", params={"_compartment": patient, "_count": "50"}))
        return by_id.time(api.get(f"/Observation/big-obs-{random.randrange(BIG_MEMBERS):06d}"))

    await asyncio.gather(*(read(k) for k in range(READ_WAVE)))


def read_phases(when: str, what: str) -> tuple[Phase, Phase]:
    return (
        Phase(f"reads by id, {when}", f"{what}; nine reads in ten are by id", Calls()),
        Phase(
            f"compartment searches, {when}", f"{what}; one read in ten is a `_compartment` search", Calls()
        ),
    )


async def phase_reads_idle(api: Clients, db: Any) -> list[Phase]:
    """The same reads with nothing else running: the baseline for the next phase."""
    by_id, searches = read_phases(
        "idle", f"{IDLE_WAVES} waves of {READ_WAVE} concurrent reads, no job running"
    )
    started = time.perf_counter()
    for _ in range(IDLE_WAVES):
        await read_wave(api, by_id.calls, searches.calls)
    by_id.wall_seconds = searches.wall_seconds = time.perf_counter() - started
    return [by_id, searches]


async def phase_reads(api: Clients, db: Any) -> list[Phase]:
    by_id, searches = read_phases(
        "during propagation",
        f"waves of {READ_WAVE} concurrent reads while a {BIG_MEMBERS:,}-member propagation runs",
    )
    commands = Calls()
    started = time.perf_counter()
    sent = await send_commands(api, [("Patient/big", "Organization/big")], commands)
    if len(sent) != 1:
        raise LoadError(f"the big command was not accepted: {commands.statuses}")
    command_id = sent[0][0]
    waves = 0
    while waves < MAX_WAVES:
        job = await db.jobs.find_one({"_id": command_id})
        if job is not None and job.get("status") in TERMINAL:
            break
        await read_wave(api, by_id.calls, searches.calls)
        waves += 1
    if waves == 0:
        raise LoadError("the propagation finished before any read was sent: nothing was measured")
    jobs, completion = await wait_jobs(db, sent, PHASE_LIMIT_SECONDS)
    by_id.wall_seconds = searches.wall_seconds = time.perf_counter() - started
    check_completed(jobs, BIG_MEMBERS + 1, 1, 1)
    by_id.completion = completion
    by_id.notes.append(
        f"{waves} waves while the job ran; it completed {completion[0]:.1f} s after it was sent, "
        f"{BIG_MEMBERS + 1:,} resources updated"
    )
    return [by_id, searches]


async def warm_up(api: Clients, db: Any) -> None:
    """One command through the whole pipeline first, so the consumer groups have joined before timing."""
    sent = await send_commands(api, [("Patient/warm", "Organization/warm")], Calls())
    jobs, _ = await wait_jobs(db, sent, 120)
    check_completed(jobs, 4, len(sent), 1)


async def seed_all(db: Any) -> None:
    await seed(db, "warm", 3)
    for i in range(SPREAD_PATIENTS):
        await seed(db, f"s{i:02d}", SPREAD_MEMBERS)
    await seed(db, "hot", HOT_MEMBERS)
    await seed(db, "big", BIG_MEMBERS)


async def measure(found: Engines, workdir: Path) -> list[Phase]:
    settings = isolated_settings(found, "load")
    await create_topics(settings)
    async with isolated_db(settings) as db:
        say("seeding")
        await seed_all(db)
        api_proc = ApiProcess(settings, workdir / "api.log")
        try:
            with PropagatorProcess(settings, workdir / "propagator.log") as propagator:
                await api_proc.wait_ready()
                say(f"API on {api_proc.base} (pid {api_proc.process.pid}), propagator pid {propagator.pid}")
                api = Clients(f"{api_proc.base}/fhir/R4", READ_WAVE)
                try:
                    await warm_up(api, db)
                    phases: list[Phase] = []
                    for run_phase in (phase_spread, phase_one_target, phase_reads_idle, phase_reads):
                        say(f"phase {run_phase.__name__}")
                        pids = {
                            "API": api_proc.process.pid,
                            "propagator": propagator.pid,
                            "load client": os.getpid(),
                            **engine_pids(),
                        }
                        before = cpu_snapshot(pids)
                        done = await run_phase(api, db)
                        after = cpu_snapshot(pids)
                        group = done if isinstance(done, list) else [done]
                        group[0].cpu = cpu_spent(before, after)
                        for phase in group:
                            phases.append(phase)
                            say(summary_line(phase))
                        propagator.check()
                    failed = {p.name: dict(p.calls.failures) for p in phases if p.calls.server_errors}
                    if failed:
                        raise LoadError(f"5xx or transport errors: {failed}")
                    return phases
                finally:
                    await api.aclose()
        finally:
            api_proc.stop()


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value * 1000:,.0f}"


def summary_line(phase: Phase) -> str:
    p50, p95, p99 = percentiles(phase.calls.seconds)
    failures = f" {dict(phase.calls.failures)}" if phase.calls.failures else ""
    failures += "".join(f"; {note}" for note in cpu_note(phase))
    return (
        f"{phase.name}: {len(phase.calls.seconds)} calls, p50/p95/p99 {ms(p50)}/{ms(p95)}/{ms(p99)} ms, "
        f"{phase.calls.errors} errors ({phase.calls.server_errors} 5xx), "
        f"wall {phase.wall_seconds:.1f} s{failures}"
    )


def cpu_note(phase: Phase) -> list[str]:
    if not phase.cpu or not phase.wall_seconds:
        return []
    used = ", ".join(f"{name} {seconds:.1f}" for name, seconds in sorted(phase.cpu.items()))
    return [f"CPU s over the {phase.wall_seconds:.0f} s: {used}"]


def table(phases: list[Phase]) -> str:
    lines = [
        "| phase | calls | p50 ms | p95 ms | p99 ms | non-2xx | 5xx | job completed p50 / p95 / max s "
        "| wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for phase in phases:
        p50, p95, p99 = percentiles(phase.calls.seconds)
        if phase.completion:
            c50, c95, _ = percentiles(phase.completion)
            done = f"{c50:.1f} / {c95:.1f} / {max(phase.completion):.1f}"
        else:
            done = "—"
        lines.append(
            f"| {phase.name} | {len(phase.calls.seconds):,} | {ms(p50)} | {ms(p95)} | {ms(p99)} | "
            f"{phase.calls.errors} | {phase.calls.server_errors} | {done} | {phase.wall_seconds:.1f} |"
        )
    return "\n".join(lines)


def block(found: Engines, phases: list[Phase], total: float) -> str:
    import platform

    described = "\n".join(f"- **{p.name}**: {'; '.join([p.what, *p.notes, *cpu_note(p)])}." for p in phases)
    return (
        f"{BEGIN}\n_Generated by `make load`; everything between the markers is rewritten by each run._\n\n"
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; `nproc` = {os.cpu_count()}; "
        f"Python {platform.python_version()}\n"
        f"- engines: {found.kind}; API: one uvicorn process on loopback; propagator: one process, all roles, "
        "default settings\n"
        f"- whole run, engines start-up and seeding included: {total:.0f} s\n\n"
        f"{described}\n\n{table(phases)}\n{END}"
    )


SECTION = """
## Load (`make load`)

`benchmarks/load.py` drives the API over loopback HTTP: a uvicorn subprocess, the propagator as a subprocess,
the engines as for `make bench`. Latencies are client-side, per HTTP call (a command's call returns 202 as
soon as it is published; "job completed" is from sending the command until its job was seen `completed`,
polled every 100 ms). The run fails on any 5xx, any job that does not complete with the expected count,
or a final state other than the last command's. It is a report, not a test: the numbers depend on the
machine and on what else runs on it.

"""


def write_section(path: Path, text: str) -> None:
    """Replace the load block in `path`, or append the section; the rest of the file is kept."""
    replace_block(path, BEGIN, END, text, SECTION)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=None, help="markdown report to update")
    args = parser.parse_args(argv)
    for key in [k for k in os.environ if k.startswith("SETACCOUNTS_") and k != "SETACCOUNTS_ENGINES"]:
        del os.environ[key]  # the report states default settings were measured
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="setaccounts-load-"))
    say(f"logs in {workdir}")
    with engines(workdir) as found:
        say(f"engines ready ({found.kind})")
        try:
            phases = asyncio.run(measure(found, workdir))
        except LoadError as exc:
            say(f"FAILED: {exc} (logs kept in {workdir})")
            return 1
    total = time.monotonic() - started
    print()
    print(table(phases))
    shutil.rmtree(workdir, ignore_errors=True)
    if args.output is not None:
        write_section(args.output, block(found, phases, total))
        say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
