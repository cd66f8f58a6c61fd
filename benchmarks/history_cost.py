"""What keeping history costs the pipeline's writes: `Propagation.apply` over N members in applier-sized
batches, with the history copy (as deployed) and without it (the copy replaced by a no-op), on the same
store, alternating, best of `--repeat` runs each; and, within the runs with history, the share of the
time spent in the copy itself (measured in the same seconds as the rest, so it holds on a noisy machine,
where two runs a minute apart can differ by 2x). A third variant keeps the copy but drops history's
`tag_ref` index (a job's changed versions, by the command tag each version carries) before applying, so
the copy's seconds with and without that index, side by side, are what the index's upkeep costs.

`python -m benchmarks.history_cost [--sizes 1000,10000] [--repeat 2]`: uses `MONGODB_URI` when set, else
starts an embedded SecantusDB. Only the store is involved (no Kafka): the copy is one unordered bulk
upsert per batch, next to the batch's guarded bulk write, so this isolates exactly what history adds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from setaccounts.mongo import ensure_indexes
from setaccounts.store.meta import Document, prepare_write
from setaccounts.store.propagation import Application, Propagation
from setaccounts.store.resources import ResourceStore
from setaccounts_dev.engines.secantus import start_secantus

BATCH = 1000  # SETACCOUNTS_APPLY_BATCH_SIZE's default: one apply per consumed batch
SEED_CHUNK = 5000


class NoHistory:
    async def keep(self, superseded: Iterable[Document], session: Any = None) -> None:
        return None


class TimedHistory:
    """The real copy, timed."""

    def __init__(self, history: Any) -> None:
        self.history = history
        self.seconds = 0.0

    async def keep(self, superseded: Iterable[Document], session: Any = None) -> None:
        started = time.perf_counter()
        await self.history.keep(superseded, session)
        self.seconds += time.perf_counter() - started


def members(n: int) -> list[Document]:
    """Versions as a command leaves them: tagged with the command that wrote them, so each copy into
    history carries a tag (and an entry in `tag_ref`), as in the pipeline."""
    now = datetime.now(UTC)
    resources = [
        {
            "resourceType": "Observation",
            "id": f"obs-{i:06d}",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": "Patient/p"},
        }
        for i in range(n)
    ]
    return [prepare_write(r, None, now, command_id="earlier-command").document for r in resources]


async def measure(uri: str, n: int, with_history: bool, tag_index: bool = True) -> tuple[float, float]:
    """(seconds of the whole apply, seconds of it spent copying into history)."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(uri, tz_aware=True, w="majority", journal=True)
    db = client[f"hist_{uuid.uuid4().hex[:8]}"]
    try:
        await ensure_indexes(db)
        if not tag_index:
            await db.history.drop_index("tag_ref")
        seeded = members(n)
        for start in range(0, n, SEED_CHUNK):
            await db.resources.insert_many(seeded[start : start + SEED_CHUNK])
        resources = ResourceStore(db)
        timed = TimedHistory(resources.history)
        resources.history = timed if with_history else NoHistory()  # type: ignore[assignment]
        propagation = Propagation(resources)
        apps = [Application(d["_id"], "Patient/p", 1, "bench", ["Organization/bench"]) for d in seeded]
        started = time.perf_counter()
        for start in range(0, n, BATCH):
            await propagation.apply(apps[start : start + BATCH])
        elapsed = time.perf_counter() - started
        expected = n if with_history else 0
        assert await db.history.count_documents({}) == expected
        return elapsed, timed.seconds
    finally:
        await client.drop_database(db.name)
        await client.close()


async def main(sizes: list[int], repeat: int, uri: str) -> None:
    rows = []
    print("| members | apply without history s | apply with history s | of which the copy s | copy share |")
    print("|---:|---:|---:|---:|---:|")
    for n in sizes:
        without: list[float] = []
        with_: list[tuple[float, float]] = []
        untagged: list[float] = []
        for _ in range(repeat):
            without.append((await measure(uri, n, with_history=False))[0])
            with_.append(await measure(uri, n, with_history=True))
            untagged.append((await measure(uri, n, with_history=True, tag_index=False))[1])
        best_with, copy = min(with_)
        print(f"| {n:,} | {min(without):.2f} | {best_with:.2f} | {copy:.2f} | {copy / best_with:.0%} |")
        rows.append((n, statistics.median(c for _, c in with_), statistics.median(untagged)))
    print()
    print("| members | the copy with `tag_ref` s | the copy without it s | with ÷ without |")
    print("|---:|---:|---:|---:|")
    for n, tagged, bare in rows:
        print(f"| {n:,} | {tagged:.2f} | {bare:.2f} | {tagged / bare:.2f}x |")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,10000", help="members per run, e.g. 1000,10000")
    parser.add_argument("--repeat", type=int, default=2, help="runs per variant (the best counts)")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse()
    sizes = [int(s) for s in args.sizes.split(",")]
    uri = os.environ.get("MONGODB_URI")
    if uri:
        asyncio.run(main(sizes, args.repeat, uri))
    else:
        with tempfile.TemporaryDirectory() as workdir:
            proc, uri = start_secantus(Path(workdir))
            try:
                asyncio.run(main(sizes, args.repeat, uri))
            finally:
                proc.stop()
