"""Tracing's cost: the propagator's CPU per member with traces exported over OTLP against tracing off,
measured side by side in one run on one set of engines.

Each round runs the pipeline benchmark (`benchmarks.run.measure_pipeline`: one propagator process, a
command published straight to the commands topic, timed until its job completes) twice on a fresh
`--members` patient: once with no `OTEL_*` variable (tracing off), once with
`OTEL_EXPORTER_OTLP_ENDPOINT` naming a local OTLP/HTTP receiver (every span of every batch exported
through the SDK's batch processor: protobuf encoding and HTTP posts included). The receiver, a thread of
this process, answers every export with an empty success and counts spans' bytes; it does no more work
than a collector's front door. Modes alternate within a round and rounds repeat (`--rounds`), so drift on
a shared machine falls on both sides; the medians are compared.

`python -m benchmarks.tracing` prints the result; `--output docs/benchmarks.md` rewrites the block between
the tracing markers there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from benchmarks.common import say
from benchmarks.report import PipelineResult, machine_facts, markdown_table, section_runner
from benchmarks.run import measure_pipeline
from setaccounts_dev.engines import Engines

BEGIN, END = "<!-- tracing:begin -->", "<!-- tracing:end -->"
MODES = ("off", "exporting")


@dataclass
class Receiver:
    """What the OTLP receiver was sent."""

    requests: int = 0
    bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextlib.contextmanager
def otlp_receiver() -> Iterator[tuple[str, Receiver]]:
    """An OTLP/HTTP endpoint on loopback that accepts every export: its base URL and its counts."""
    seen = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            with seen.lock:
                seen.requests += 1
                seen.bytes += length
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class TracingCost:
    members: int
    runs: dict[str, list[PipelineResult]] = field(default_factory=lambda: {m: [] for m in MODES})
    exports: int = 0
    exported_bytes: int = 0

    def median(self, mode: str, above_idle: bool = False) -> float:
        values = [
            r.work_us_per_member("propagator") if above_idle else r.cpu_us_per_member("propagator")
            for r in self.runs[mode]
        ]
        return statistics.median(values)

    def ratio(self, above_idle: bool = False) -> float:
        return self.median("exporting", above_idle) / self.median("off", above_idle)


async def measure(found: Engines, workdir: Path, members: int, rounds: int) -> TracingCost:
    cost = TracingCost(members)
    with otlp_receiver() as (endpoint, seen):
        exporting = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_SERVICE_NAME": "setaccounts-propagator-bench",
        }
        for n in range(rounds):
            for mode in MODES:
                say(f"tracing round {n + 1}/{rounds}: {mode}")
                env = exporting if mode == "exporting" else {}
                result = await measure_pipeline(found, members, workdir, env=env)
                cost.runs[mode].append(result)
        cost.exports, cost.exported_bytes = seen.requests, seen.bytes
    if cost.exports == 0:
        raise RuntimeError("the traced runs exported nothing: tracing did not turn on")
    return cost


def block(found: Engines, cost: TracingCost, total: float) -> str:
    rows = [
        [
            label,
            f"{cost.median('off', above_idle):.0f}",
            f"{cost.median('exporting', above_idle):.0f}",
            f"{cost.ratio(above_idle):.2f}x",
        ]
        for label, above_idle in (("propagator CPU µs/member", False), ("the same, above idle", True))
    ]
    table = markdown_table(["measure", "tracing off", "exporting over OTLP", "exporting ÷ off"], rows)
    each = "; ".join(
        f"{mode}: " + ", ".join(f"{r.cpu_us_per_member('propagator'):.0f}" for r in cost.runs[mode])
        for mode in MODES
    )
    traced = len(cost.runs["exporting"])
    return "\n".join(
        [
            BEGIN,
            "_Generated by `python -m benchmarks.tracing --output docs/benchmarks.md` "
            "(part of `make bench`)._",
            "",
            *machine_facts(found),
            f"- {cost.members:,}-member command, {len(cost.runs['off'])} rounds of off then exporting "
            f"(whole run, seeding included: {total:.0f} s); medians",
            "",
            table,
            "",
            f"- each run's propagator CPU µs/member, in order: {each}",
            f"- exported: {cost.exports} OTLP requests, {cost.exported_bytes / traced / 1024:.0f} KiB per "
            f"traced command ({cost.exported_bytes / traced / cost.members:.0f} bytes per member)",
            END,
        ]
    )


HEADING = """## Tracing's cost (`python -m benchmarks.tracing`)

The propagator's CPU per member with every span exported over OTLP against tracing off, side by side (the
module's docstring says how)."""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=5_000, help="members of each command")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of off then exporting")
    parser.add_argument("--output", type=Path, help="rewrite the tracing block of this file")
    arguments = parser.parse_args()
    main = section_runner(
        "setaccounts-tracing-",
        lambda found, work: measure(found, work, arguments.members, arguments.rounds),
        block,
        (BEGIN, END, HEADING),
    )
    asyncio.run(main(arguments.output))
