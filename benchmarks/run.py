"""`make bench`: how fast `$set-accounts` propagates through the real pipeline, measured next to what the
store itself can do, in one run on one set of engines.

Why this shape: absolute numbers depend on the machine and on the engines (the embedded SecantusDB and
Tansu are far slower than MongoDB and Kafka), and the machine is shared and noisy. So every run also
measures, on the same engines and in the same minutes, the store's raw bulk-write rate (the ceiling) and a
Medplum-style sequential read-modify-write loop (the baseline). The ratios between them are what compare
across machines; the absolute rates only describe this run.

The propagator runs as its own process (`python -m setaccounts_propagator run --role all`), exactly as it
is deployed, so its peak memory (VmHWM) and CPU time are its own and show whether memory stays bounded
while members are streamed. Each measurement gets its own database, topics and consumer groups.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from pymongo import UpdateOne

from benchmarks import store_costs
from benchmarks.common import (
    ACCOUNT,
    REPO,
    STOP_SECONDS,
    BenchError,
    Db,
    PropagatorProcess,
    isolated_db,
    isolated_settings,
    raw_set,
    say,
    seed,
)
from benchmarks.latency import measure_sync_latency
from benchmarks.procfs import cpu_snapshot, cpu_spent, engine_pids, status_kib
from benchmarks.report import (
    PipelineResult,
    Report,
    Row,
    breakdown_table,
    extra_lines,
    generated_block,
    mib,
    results_table,
    write_report,
)
from setaccounts.events import SetAccountsCommand
from setaccounts.kafka import make_producer, publish
from setaccounts.settings import Settings
from setaccounts.status import TERMINAL, JobStatus
from setaccounts.store.history import HistoryStore
from setaccounts.store.meta import Document, with_accounts
from setaccounts.store.resources import ResourceStore
from setaccounts.topics import create_topics
from setaccounts_dev.engines import Engines, engines

DEFAULT_OUTPUT = REPO / "docs" / "benchmarks.md"
DEFAULT_SIZES = (1_000, 10_000, 50_000, 100_000)
TWO_PROCESSES = 100_000  # the size also measured with two propagator processes
SEQUENTIAL_MAX = 10_000  # the loop is one round trip pair per member: larger sizes only cost minutes
WARMUP_MEMBERS = 3
POLL_SECONDS = 0.05  # job polling interval: the pipeline's times are exact to about this much
IDLE_SECONDS = 5.0  # CPU measured with nothing to do, before the timed command: the processes' idle cost


# ---------------------------------------------------------------------------------------------------------
# /proc readings (psutil is not a dependency)
# ---------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------
# Data: the same documents the service stores, built by the one write rule
# ---------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------
# The propagator as a subprocess
# ---------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def profiled(pid: int, output: Path | None) -> Iterator[None]:
    """`py-spy record` of `pid` while the block runs (raw collapsed stacks in `output`); nothing if None."""
    if output is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    process = subprocess.Popen(
        [
            spy,
            "record",
            "--nonblocking",
            "--format",
            "raw",
            "--rate",
            "250",
            "--gil",
            "-o",
            str(output),
            "-p",
            str(pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobWatch:
    """What polling the job saw: the final job, when it ended and when the fan-out had finished."""

    job: Document
    seconds: float
    planned_seconds: float | None


async def watch_job(
    db: Db, command_id: str, started: float, limit_seconds: float, procs: Sequence[PropagatorProcess]
) -> JobWatch:
    """Poll the `jobs` document until it is terminal; notes when `planned` (fan-out finished) first shows."""
    planned_at: float | None = None
    while True:
        job = await db.jobs.find_one({"_id": command_id}, {"tallies": 0})
        elapsed = time.perf_counter() - started
        if job is not None:
            if planned_at is None and job.get("planned"):
                planned_at = elapsed
            if job.get("status") in TERMINAL:
                return JobWatch(job, elapsed, planned_at)
        for proc in procs:
            proc.check()
        if elapsed > limit_seconds:
            raise BenchError(f"job {command_id} not finished after {limit_seconds:.0f}s (last seen: {job})")
        await asyncio.sleep(POLL_SECONDS)


def command_for(pid: str) -> SetAccountsCommand:
    return SetAccountsCommand(
        command_id=f"bench-{pid}-{uuid.uuid4().hex[:8]}",
        target=f"Patient/{pid}",
        accounts=[ACCOUNT],
        propagate=True,
        requested_by="benchmark",
    )


async def measure_pipeline(
    found: Engines,
    members: int,
    workdir: Path,
    processes: int = 1,
    profile: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> PipelineResult:
    """Publish one `SetAccountsCommand` to the commands topic and time it to `completed` in `jobs`.

    The command is published with aiokafka (not through the API), so only the pipeline is timed:
    planner fan-out → updates → applier bulk writes → results → aggregator. A warm-up command on a
    3-member patient runs first, so the consumer-group joins are not in the timed window. `processes`
    propagator processes run all roles in the same groups; `profile` records the first one with py-spy;
    `env` is added to their environment.
    """
    settings = isolated_settings(found, "p")
    async with isolated_db(settings) as db:
        await create_topics(settings)
        say(f"pipeline {members:>6}: seeding {members} members")
        await seed(db, "warmup", WARMUP_MEMBERS)
        await seed(db, "bench", members)
        producer = make_producer(settings)
        await producer.start()
        try:
            with contextlib.ExitStack() as stack:
                procs = [
                    stack.enter_context(
                        PropagatorProcess(settings, workdir / f"propagator-{members}-{n}.log", env=env)
                    )
                    for n in range(processes)
                ]
                say(f"pipeline {members:>6}: propagator pids {[p.pid for p in procs]}; warm-up command")
                warmup = command_for("warmup")
                began = time.perf_counter()
                await publish(producer, settings.topics.commands, warmup)
                warm = await watch_job(db, warmup.command_id, began, 180, procs)
                if warm.job.get("status") != JobStatus.COMPLETED:
                    raise BenchError(f"warm-up ended {warm.job.get('status')}: {warm.job.get('outcome')}")
                ready_rss = max_kib(status_kib(p.pid, "VmHWM") for p in procs)
                say(f"pipeline {members:>6}: groups ready after {warm.seconds:.1f}s; timing the command")

                pids = {f"propagator-{n}": p.pid for n, p in enumerate(procs)} | engine_pids()
                idle_before = cpu_snapshot(pids)
                await asyncio.sleep(IDLE_SECONDS)
                idle_after = cpu_snapshot(pids)
                idle = {k: (idle_after[k] - idle_before[k]) / IDLE_SECONDS for k in idle_after}
                idle["propagator"] = sum(v for k, v in idle.items() if k.startswith("propagator-"))
                command = command_for("bench")
                with profiled(procs[0].pid, profile):
                    cpu_before = cpu_snapshot(pids)
                    started = time.perf_counter()
                    await publish(producer, settings.topics.commands, command)
                    watch = await watch_job(db, command.command_id, started, 120 + members * 0.02, procs)
                    cpu_after = cpu_snapshot(pids)
                peak_rss = max_kib(status_kib(p.pid, "VmHWM") for p in procs)
        finally:
            await producer.stop()
        job = watch.job
        if job.get("status") != JobStatus.COMPLETED or job.get("resources_updated") != members + 1:
            raise BenchError(
                f"expected completed with {members + 1} resources updated, got {job.get('status')} with "
                f"{job.get('resources_updated')} ({job.get('outcome')})"
            )
        stored = await db.resources.count_documents({"resource.meta.accounts.reference": ACCOUNT})
        if stored != members + WARMUP_MEMBERS + 2:
            raise BenchError(
                f"{stored} stored resources carry {ACCOUNT}; expected {members + WARMUP_MEMBERS + 2}"
            )
        cpu = cpu_spent(cpu_before, cpu_after)
        cpu["propagator"] = sum(v for k, v in cpu.items() if k.startswith("propagator-"))
        result = PipelineResult(
            members,
            watch.seconds,
            watch.planned_seconds,
            int(job["resources_updated"]),
            ready_rss,
            peak_rss,
            {k: v for k, v in cpu.items() if not k.startswith("propagator-")},
            processes,
            {k: v for k, v in idle.items() if not k.startswith("propagator-")},
            int(job.get("agg_rev") or 0),
        )
        say(
            f"pipeline {members:>6} x{processes}: {result.seconds:.2f}s, {result.rate:,.0f} resources/s, "
            f"propagator {result.cpu_us_per_member('propagator'):.0f} CPU-µs/member "
            f"(idle {idle['propagator'] * 1000:.0f} ms/s), {result.job_writes} aggregator job writes, "
            f"peak RSS {mib(peak_rss)} MiB"
        )
        return result


def max_kib(values: Iterable[int | None]) -> int | None:
    """The largest of per-process readings (None when none could be read)."""
    known = [v for v in values if v is not None]
    return max(known) if known else None


async def measure_bulk(found: Engines, members: int) -> tuple[float, float]:
    """The store's ceiling: one unordered `bulk_write` of `members` version-guarded `UpdateOne` `$set`s;
    then, timed apart, the history copies of the versions those updates replaced (`HistoryStore.keep`, as
    a propagation makes them): together, the writes a propagation cannot do without."""
    settings = isolated_settings(found, "r")
    async with isolated_db(settings) as db:
        await seed(db, "warmup", WARMUP_MEMBERS)  # the same collection the pipeline starts from
        refs = await seed(db, "raw", members)
        superseded = list((await ResourceStore(db).get_many(refs)).values())  # not timed
        update = {"$set": raw_set(datetime.now(UTC))}
        ops = [UpdateOne({"_id": ref, "version": 1}, update) for ref in refs]
        started = time.perf_counter()
        result = await db.resources.bulk_write(ops, ordered=False)
        seconds = time.perf_counter() - started
        if result.matched_count != members:
            raise BenchError(f"raw bulk matched {result.matched_count} of {members}")
        started = time.perf_counter()
        await HistoryStore(db).keep(superseded)
        history = time.perf_counter() - started
        if await db.history.count_documents({}) != members:
            raise BenchError(f"history copies: {await db.history.count_documents({})} of {members}")
        say(
            f"raw bulk {members:>6}: {seconds:.2f}s, {members / seconds:,.0f} resources/s; "
            f"history copies {history:.2f}s"
        )
        return seconds, history


async def measure_sequential(found: Engines, members: int) -> float:
    """Medplum's way: per member one `find_one`, the write rule in Python, one guarded `update_one`."""
    settings = isolated_settings(found, "s")
    async with isolated_db(settings) as db:
        await seed(db, "warmup", WARMUP_MEMBERS)  # the same collection the pipeline starts from
        refs = await seed(db, "seq", members)
        collection = db.resources
        started = time.perf_counter()
        for ref in refs:
            stored = await collection.find_one({"_id": ref})
            if stored is None:
                raise BenchError(f"{ref} vanished")
            document = with_accounts(stored, [ACCOUNT], datetime.now(UTC)).document
            result = await collection.update_one(
                {"_id": ref, "version": stored["version"]},
                {"$set": {k: document[k] for k in ("resource", "version", "compartments")}},
            )
            if result.matched_count != 1:
                raise BenchError(f"sequential update of {ref} did not land")
        seconds = time.perf_counter() - started
        say(f"sequential {members:>6}: {seconds:.2f}s, {members / seconds:,.0f} resources/s")
        return seconds


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------


async def measure(
    found: Engines,
    sizes: Sequence[int],
    options: argparse.Namespace,
    workdir: Path,
    report: Report,
    save: Callable[[Report], None],
) -> None:
    """The sync latency of the API first (it is short), then every measurement for each size in turn,
    with two propagator processes right after the one-process row of the `--two-processes` size; each is
    added to `report` and saved as it completes, so a failure or a stop still leaves what was measured.
    Sizes run small-first so a broken setup fails early."""
    if options.latency:
        report.latency = await measure_sync_latency(found, workdir)
        save(report)
    if options.profile is not None:
        options.profile.mkdir(parents=True, exist_ok=True)
    for members in sizes:
        bulk, history = (None, None) if options.pipeline_only else await measure_bulk(found, members)
        sequential = (
            await measure_sequential(found, members)
            if members <= options.sequential_max and not options.pipeline_only
            else None
        )
        flame = None if options.profile is None else options.profile / f"propagator-{members}.txt"
        pipeline = await measure_pipeline(found, members, workdir, profile=flame)
        report.rows.append(Row(members, pipeline, bulk, sequential, history))
        save(report)
        if members == options.two_processes:
            report.two_processes = await measure_pipeline(found, members, workdir, processes=2)
            save(report)
    # What each library call costs, and so the floor under the propagator's CPU per member, on the same
    # engines within the same minutes.
    report.costs = await store_costs.measure(found, store_costs.MEMBERS, store_costs.REPEAT)
    save(report)


def keep_engine_logs(workdir: Path) -> None:
    """Embedded engines log into a directory removed when they stop: copy the logs out to diagnose."""
    for log in workdir.glob("setaccounts-engines-*/*.log"):
        shutil.copy(log, workdir / log.name)
        say(f"kept {workdir / log.name}")


def parse_sizes(text: str) -> list[int]:
    """`1000,10_000` → [1000, 10000], sorted so the small (fast-failing) sizes run first."""
    sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes like 1000,10000, got {text!r}")
    return sizes


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every `finally`: subprocesses are stopped


def main(argv: Sequence[str] | None = None) -> int:
    """Run every measurement on one set of engines, print the tables, and update the report.

    The propagator's `SETACCOUNTS_*` settings are dropped from the environment: the report states the
    defaults were measured, and a stray override would make runs silently incomparable.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=parse_sizes, default=None, help="members per run, e.g. 1000,10000")
    parser.add_argument(
        "--sequential-max",
        type=int,
        default=SEQUENTIAL_MAX,
        help="largest size that also runs the sequential loop",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"markdown report to update (default {DEFAULT_OUTPUT.relative_to(REPO)} "
        "when --sizes is not given)",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the propagator logs after a successful run (always kept on failure)",
    )
    parser.add_argument(
        "--two-processes",
        type=int,
        default=TWO_PROCESSES,
        help="size at which to run two propagator processes as well (only if it is one of the sizes)",
    )
    parser.add_argument(
        "--pipeline-only",
        action="store_true",
        help="measure only the pipeline (no raw bulk or sequential baseline: no ratios)",
    )
    parser.add_argument(
        "--no-latency",
        dest="latency",
        action="store_false",
        help="skip the sync latency of $set-accounts through the API",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="directory for py-spy profiles of the propagator during each timed command (raw stacks)",
    )
    args = parser.parse_args(argv)
    sizes: list[int] = args.sizes or list(DEFAULT_SIZES)
    output: Path | None = args.output or (DEFAULT_OUTPUT if args.sizes is None else None)

    signal.signal(signal.SIGTERM, _terminate)
    overridden = sorted(k for k in os.environ if k.startswith("SETACCOUNTS_"))
    for key in overridden:
        del os.environ[key]
    if overridden:
        say(f"ignoring {', '.join(overridden)}: the benchmark measures the default settings")
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="setaccounts-bench-"))
    say(f"sizes {sizes}; logs in {workdir}")
    with engines(workdir) as found:
        say(
            f"engines ready ({found.kind}): kafka {found.kafka_bootstrap_servers}, "
            f"mongodb {found.mongodb_uri}"
        )
        report = Report()
        defaults = Settings(**found.settings())

        def save(partial: Report) -> None:
            """Write what was measured so far, so a run stopped part-way still leaves its results."""
            if output is not None:
                elapsed = time.monotonic() - started
                write_report(output, generated_block(found, partial, elapsed, defaults, complete=False))

        try:
            asyncio.run(measure(found, sizes, args, workdir, report, save))
        except BaseException:
            keep_engine_logs(workdir)
            if report.rows:
                print(f"\nmeasured before the failure:\n{results_table(report.rows)}\n", flush=True)
            raise
        total = time.monotonic() - started
        block = generated_block(found, report, total, defaults)
        costs = None if report.costs is None else store_costs.block(found, report.costs)
    if not args.keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(results_table(report.rows))
    print()
    print(breakdown_table(report.rows, report.floor))
    print()
    for line in extra_lines(report):
        print(line)
    say(f"done in {total:.0f}s")
    if output is not None:
        write_report(output, block)
        if costs is not None:
            store_costs.write(output, costs)
        say(f"wrote {output}")
    else:
        say("report not written (custom --sizes); pass --output docs/benchmarks.md to write it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
