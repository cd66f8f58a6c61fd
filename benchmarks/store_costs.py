"""What each kind of store operation a propagation makes costs the store, in server CPU per document,
measured side by side on one collection: the `$in` reads by `_id` at several chunk sizes (the applier's
read), the planner's member cursor, the history copy, and the guarded bulk update: one statement per
document (the raw bulk baseline of `make bench`) or per group of alike documents (the pipeline's), journaled
as the services write, and once with the default write concern.

`python benchmarks/store_costs.py [--members 5000] [--output docs/benchmarks.md]` (the third step of
`make bench`): on the engines `setaccounts_dev.engines` picks (an
embedded SecantusDB here). The server's CPU comes from `/proc/<pid>/stat`, so it is only shown when the
store is an embedded subprocess; wall seconds are shown either way. Each figure is the best of
`--repeat` runs (reads and the cursor repeat; writes run once, each on documents no write has touched).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from procfs import cpu_snapshot, engine_pids
from pymongo import AsyncMongoClient, UpdateMany, UpdateOne
from report import machine_facts, markdown_table, replace_block
from run import isolated_db, isolated_settings, raw_set, say, seed

from setaccounts.store.history import HistoryStore
from setaccounts.store.propagation import WRITE_CHUNK
from setaccounts.store.resources import ResourceStore
from setaccounts_dev.engines import Engines, engines

CHUNKS = (100, 50, 25, 10)
BEGIN, END = "<!-- store-costs:begin -->", "<!-- store-costs:end -->"


async def cost(members: int, step: Callable[[], Awaitable[Any]], repeat: int = 1) -> tuple[float, float]:
    """Best wall seconds and best server CPU µs per document of `step` over `repeat` runs."""
    pids = engine_pids()
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeat):
        before, started = cpu_snapshot(pids), time.perf_counter()
        await step()
        wall, after = time.perf_counter() - started, cpu_snapshot(pids)
        best_wall = min(best_wall, wall)
        if "mongodb" in after:
            best_cpu = min(best_cpu, (after["mongodb"] - before["mongodb"]) * 1e6 / members)
    return best_wall, best_cpu


async def measure(found: Engines, members: int, repeat: int) -> list[tuple[str, float, float]]:
    settings = isolated_settings(found, "c")
    rows: list[tuple[str, float, float]] = []
    async with isolated_db(settings) as db:  # the services' client: journaled, majority writes
        refs = await seed(db, "costs", members)
        resources = ResourceStore(db)
        for chunk in CHUNKS:

            async def read(chunk: int = chunk) -> None:
                for start in range(0, members, chunk):
                    await db.resources.find({"_id": {"$in": refs[start : start + chunk]}}).to_list(None)

            rows.append((f"read whole documents, `$in` of {chunk} ids", *await cost(members, read, repeat)))

        async def members_cursor() -> None:
            query = ResourceStore.members_filter("Patient/costs")
            await db.resources.find(query, {"_id": 1}).sort("_id", 1).to_list(None)

        rows.append(
            ("planner's member cursor (ids, `_id` order)", *await cost(members, members_cursor, repeat))
        )
        superseded = list((await resources.get_many(refs)).values())
        rows.append(
            (
                "history copy (`HistoryStore.keep`)",
                *await cost(members, lambda: HistoryStore(db).keep(superseded)),
            )
        )
        update = {"$set": raw_set(datetime.now(UTC))}
        third = members // 3
        one_each = [UpdateOne({"_id": ref, "version": 1}, update) for ref in refs[:third]]
        rows.append((
            "guarded bulk update, one statement per document, journaled (the services' client)",
            *await cost(third, lambda: db.resources.bulk_write(one_each, ordered=False)),
        ))  # fmt: skip
        grouped_refs = refs[third : 2 * third]
        grouped = [
            UpdateMany({"_id": {"$in": grouped_refs[i : i + WRITE_CHUNK]}, "version": 1}, update)
            for i in range(0, len(grouped_refs), WRITE_CHUNK)
        ]
        rows.append((
            f"guarded bulk update, one statement per {WRITE_CHUNK} alike documents, journaled (pipeline)",
            *await cost(len(grouped_refs), lambda: db.resources.bulk_write(grouped, ordered=False)),
        ))  # fmt: skip
        plain: AsyncMongoClient[Any] = AsyncMongoClient(settings.mongodb_uri)
        try:
            rest = refs[2 * third :]
            unjournaled = [UpdateOne({"_id": ref, "version": 1}, update) for ref in rest]
            collection = plain[settings.mongodb_database].resources
            rows.append((
                "guarded bulk update, one statement per document, default write concern",
                *await cost(len(rest), lambda: collection.bulk_write(unjournaled, ordered=False)),
            ))  # fmt: skip
        finally:
            await plain.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None, help="markdown report to update")
    args = parser.parse_args()
    with engines(Path(tempfile.mkdtemp(prefix="setaccounts-costs-"))) as found:
        say(f"engines ready ({found.kind}); {args.members} documents")
        rows = asyncio.run(measure(found, args.members, args.repeat))
        facts = machine_facts(found)
    cells = [
        [label, f"{wall:.2f}", "—" if cpu == float("inf") else f"{cpu:,.0f}"] for label, wall, cpu in rows
    ]
    table = markdown_table(("operation", "wall s", "server CPU µs/document"), cells)
    print(table)
    if args.output is not None:
        block = "\n".join([
            BEGIN,
            "_Generated by `make bench` (`benchmarks/store_costs.py`); the markers' content is rewritten._",
            "",
            *facts,
            f"- {args.members:,} documents; best of {args.repeat} for the reads, one run for each write",
            "",
            table,
            END,
        ])  # fmt: skip
        replace_block(args.output, BEGIN, END, block, "## What each store operation costs")
        say(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
