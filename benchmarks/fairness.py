"""Fairness: a small synchronous `$set-accounts` while a large propagation runs, against the same calls on
an idle pipeline, and the large job's own time with and without the small calls beside it.

The API (uvicorn) and one propagator (`--role all`) run as subprocesses on the benchmark's engines, with
their own database, topics and groups, as in `benchmarks.latency`. Seeded directly (not timed): a patient
with `--members` Observations (the large job) and a patient with `--small` (the small calls). In order:

1. **idle**: `--calls` sync calls on the small patient, one after another (a first call, not counted,
   warms the groups); each gives the patient the other of two accounts, so every call changes all its
   resources.
2. **large alone**: one `respond-async` call on the large patient, timed from the POST until its job is
   `completed` in the `jobs` collection (polled every 50 ms).
3. **large with small calls**: the large call again (the other account, so every member changes again),
   and while it runs, the `--calls` small calls, spread over the time the large job took alone (from a
   tenth of it to nine tenths); each call's latency, and how much of the large job was applied when it
   returned.

The large job runs alone first, so the run beside the small calls is the one with the bigger history
collection: any drift counts against the target, not for it. The CPU time of every process (API,
propagator, and the embedded engines, from /proc) is counted over the idle calls and over each large run,
so the report shows what the large job's extra time is made of: the small calls' own work, or the
store's cost per member moving between the two runs. Every call must answer 200 with all its
resources updated, and each large job must complete with all of them.

`python -m benchmarks.fairness` prints the result; `--output docs/benchmarks.md` rewrites the block between
the fairness markers there.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    ApiProcess,
    BenchError,
    PropagatorProcess,
    api_settings,
    isolated_db,
    say,
    seed,
)
from benchmarks.latency import body, resources_updated
from benchmarks.procfs import cpu_snapshot, cpu_spent, engine_pids
from benchmarks.report import machine_facts, markdown_table, section_runner
from setaccounts.jobs import Job
from setaccounts.status import TERMINAL, JobStatus
from setaccounts.topics import create_topics
from setaccounts_dev.engines import Engines

BEGIN, END = "<!-- fairness:begin -->", "<!-- fairness:end -->"
TARGETS = {"latency": 3.0, "large": 1.15}  # small calls ≤ 3x idle (p50 and p95); large job ≤ 1.15x alone
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Latencies:
    seconds: list[float]

    def quantile(self, q: float) -> float:
        return statistics.quantiles(self.seconds, n=100, method="inclusive")[round(q * 100) - 1]


@dataclass
class Fairness:
    members: int
    small: int
    idle: Latencies
    alone_seconds: float
    beside_seconds: float
    beside: Latencies
    applied_when_answered: list[int] = field(default_factory=list)  # the large job's, after each call
    # CPU seconds by process (api, propagator, mongodb, kafka): of the idle calls, of the large job alone,
    # and of the large job with the calls beside it
    idle_cpu: dict[str, float] = field(default_factory=dict)
    alone_cpu: dict[str, float] = field(default_factory=dict)
    beside_cpu: dict[str, float] = field(default_factory=dict)

    @property
    def large_ratio(self) -> float:
        return self.beside_seconds / self.alone_seconds

    def latency_ratio(self, q: float) -> float:
        return self.beside.quantile(q) / self.idle.quantile(q)


class Caller:
    """The benchmark's HTTP client on the API, as an admin."""

    def __init__(self, client: httpx.AsyncClient, small: str) -> None:
        self.client = client
        self.small = small
        self.calls = 0

    async def small_call(self, members: int) -> float:
        """One sync call on the small patient; its latency, checked to have updated every resource."""
        self.calls += 1
        url = f"/fhir/R4/Patient/{self.small}/$set-accounts"
        started = time.perf_counter()
        response = await self.client.post(url, json=body(f"Organization/small-{self.calls % 2}"))
        elapsed = time.perf_counter() - started
        updated = resources_updated(response)
        if response.status_code != 200 or updated != members + 1:
            raise BenchError(
                f"small call {self.calls}: {response.status_code} after {elapsed:.1f}s, {updated} updated: "
                f"{response.text[:300]}"
            )
        return elapsed

    async def start_large(self, account: str) -> str:
        response = await self.client.post(
            "/fhir/R4/Patient/large/$set-accounts",
            json=body(account),
            headers={"Prefer": "respond-async"},
        )
        if response.status_code != 202:
            raise BenchError(f"the large call answered {response.status_code}: {response.text[:300]}")
        return response.headers["Content-Location"].rstrip("/").split("/")[-2]


async def job_of(db: Any, command_id: str) -> dict[str, Any]:
    return await db.jobs.find_one({"_id": command_id}) or {}


async def until_finished(
    db: Any, command_id: str, started: float, members: int, propagator: PropagatorProcess
) -> float:
    """Seconds from `started` until the job completed with every resource updated."""
    while True:
        job = await job_of(db, command_id)
        if job.get("status") in TERMINAL:
            elapsed = time.perf_counter() - started
            if job["status"] != JobStatus.COMPLETED or job.get("resources_updated") != members + 1:
                raise BenchError(
                    f"large job ended {job['status']} with {job.get('resources_updated')} updated: "
                    f"{job.get('outcome')}"
                )
            return elapsed
        propagator.check()
        await asyncio.sleep(POLL_SECONDS)


async def measure(found: Engines, workdir: Path, members: int, small: int, calls: int) -> Fairness:
    settings, token = api_settings(found, "f", workdir)
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/fhir+json",
    }
    await create_topics(settings)
    async with isolated_db(settings) as db:
        say(f"fairness: seeding {members:,} + {small} members")
        await seed(db, "large", members)
        await seed(db, "small", small)
        api = ApiProcess(settings, workdir / "api-fairness.log")
        try:
            with PropagatorProcess(settings, workdir / "propagator-fairness.log") as propagator:
                await api.wait_ready()
                async with httpx.AsyncClient(base_url=api.base, headers=headers, timeout=600) as client:
                    caller = Caller(client, "small")
                    await caller.small_call(small)  # warm-up: the groups join
                    pids = {"api": api.process.pid, "propagator": propagator.pid} | engine_pids()
                    before = cpu_snapshot(pids)
                    idle = Latencies([await caller.small_call(small) for _ in range(calls)])
                    idle_cpu = cpu_spent(before, cpu_snapshot(pids))
                    say(
                        f"fairness: idle small calls p50 {idle.quantile(0.5) * 1000:.0f} ms, "
                        f"p95 {idle.quantile(0.95) * 1000:.0f} ms"
                    )
                    before, started = cpu_snapshot(pids), time.perf_counter()
                    alone_id = await caller.start_large("Organization/large-0")
                    alone = await until_finished(db, alone_id, started, members, propagator)
                    alone_cpu = cpu_spent(before, cpu_snapshot(pids))
                    say(f"fairness: large job alone {alone:.1f}s")

                    before, started = cpu_snapshot(pids), time.perf_counter()
                    beside_id = await caller.start_large("Organization/large-1")
                    spacing = alone * 0.8 / calls
                    seconds: list[float] = []
                    applied_then: list[int] = []
                    for n in range(calls):
                        due = started + alone * 0.1 + n * spacing
                        await asyncio.sleep(max(0.0, due - time.perf_counter()))
                        seconds.append(await caller.small_call(small))
                        job = await job_of(db, beside_id)
                        applied_then.append(Job.model_validate(job).applied)
                        if job.get("status") in TERMINAL:
                            raise BenchError(f"the large job ended before small call {n + 1}: {job}")
                    beside = await until_finished(db, beside_id, started, members, propagator)
                    beside_cpu = cpu_spent(before, cpu_snapshot(pids))
                    result = Fairness(
                        members,
                        small,
                        idle,
                        alone,
                        beside,
                        Latencies(seconds),
                        applied_then,
                        idle_cpu,
                        alone_cpu,
                        beside_cpu,
                    )
                    say(
                        f"fairness: beside the large job p50 {result.beside.quantile(0.5) * 1000:.0f} ms, "
                        f"p95 {result.beside.quantile(0.95) * 1000:.0f} ms; large job {beside:.1f}s "
                        f"({result.large_ratio:.2f}x alone)"
                    )
                    return result
        finally:
            api.stop()


def verdict(met: bool) -> str:
    return "yes" if met else "**no**"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def block(found: Engines, result: Fairness, total: float) -> str:
    rows = [
        [
            f"{result.small}-member sync call, p50",
            ms(result.idle.quantile(0.5)),
            ms(result.beside.quantile(0.5)),
            f"{result.latency_ratio(0.5):.2f}x",
            f"≤ {TARGETS['latency']:.0f}x",
            verdict(result.latency_ratio(0.5) <= TARGETS["latency"]),
        ],
        [
            f"{result.small}-member sync call, p95",
            ms(result.idle.quantile(0.95)),
            ms(result.beside.quantile(0.95)),
            f"{result.latency_ratio(0.95):.2f}x",
            f"≤ {TARGETS['latency']:.0f}x",
            verdict(result.latency_ratio(0.95) <= TARGETS["latency"]),
        ],
        [
            f"{result.members:,}-member job, s",
            f"{result.alone_seconds:.1f}",
            f"{result.beside_seconds:.1f}",
            f"{result.large_ratio:.2f}x",
            f"≤ {TARGETS['large']:.2f}x",
            verdict(result.large_ratio <= TARGETS["large"]),
        ],
    ]
    table = markdown_table(["measure", "idle / alone", "beside the other", "ratio", "target", "met?"], rows)
    share = [f"{a / result.members:.0%}" for a in result.applied_when_answered]
    worst = max(result.beside.seconds)
    return "\n".join(
        [
            BEGIN,
            "_Generated by `python -m benchmarks.fairness --output docs/benchmarks.md` "
            "(part of `make bench`)._",
            "",
            *machine_facts(found),
            f"- {result.members:,}-member job and {len(result.beside.seconds)} sync calls on a "
            f"{result.small}-member patient (whole run, seeding included: {total:.0f} s)",
            "",
            table,
            "",
            f"- the large job's members applied when each small call answered: {', '.join(share)}",
            f"- slowest small call beside the large job: {worst * 1000:.0f} ms "
            f"(idle: {max(result.idle.seconds) * 1000:.0f} ms)",
            *cpu_lines(result),
            END,
        ]
    )


def cpu_lines(result: Fairness) -> list[str]:
    """Where the large job's extra time beside the calls can come from: the calls' own CPU (measured on
    the idle pipeline), against how busy the large job keeps the machine alone."""
    if not result.idle_cpu:
        return []

    def by_process(cpu: dict[str, float]) -> str:
        return ", ".join(f"{name} {seconds:.1f}" for name, seconds in sorted(cpu.items()))

    calls = len(result.idle.seconds)
    alone, beside = sum(result.alone_cpu.values()), sum(result.beside_cpu.values())
    return [
        f"- CPU s of the {calls} small calls on the idle pipeline: {sum(result.idle_cpu.values()):.1f} "
        f"({by_process(result.idle_cpu)})",
        f"- CPU s of the large job alone: {alone:.1f} ({by_process(result.alone_cpu)}; "
        f"{alone / result.alone_seconds:.2f} cores busy), beside the calls: {beside:.1f} "
        f"({by_process(result.beside_cpu)})",
        f"- the large job's extra time beside the calls: "
        f"{result.beside_seconds - result.alone_seconds:.1f} s",
    ]


HEADING = """## Fairness (`python -m benchmarks.fairness`)

A small synchronous call while a large job runs, against the same calls on an idle pipeline, and the large
job's time with and without them, from one run on one set of engines (the module's docstring says how)."""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=100_000, help="members of the large job")
    parser.add_argument("--small", type=int, default=10, help="members of the small calls' patient")
    parser.add_argument("--calls", type=int, default=20, help="small calls, idle and beside the large job")
    parser.add_argument("--output", type=Path, help="rewrite the fairness block of this file")
    arguments = parser.parse_args()
    main = section_runner(
        "setaccounts-fairness-",
        lambda found, work: measure(found, work, arguments.members, arguments.small, arguments.calls),
        block,
        (BEGIN, END, HEADING),
    )
    asyncio.run(main(arguments.output))
