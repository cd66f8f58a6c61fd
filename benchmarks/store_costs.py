"""What each library call a propagation makes per member costs, side by side on one set of engines: the
client's CPU (this process: the driver's and the Kafka client's own work) and the server's (the store or
the broker) per document or record.

The store's calls: the `$in` reads by `_id` at several chunk sizes (the applier's read), the planner's member
cursor, the history copy, and the guarded bulk update: one statement per document (the raw bulk baseline of
`make bench`) or per group of alike documents (the pipeline's), journaled as the services write, and once
with the default write concern. The broker's: producing member updates as the planner does (one template
per command, batches per partition) and consuming them as the applier does (batches of up to 1,000), without
and with decoding each record into its event.

Together, the calls one member needs (read in a chunk of 50, the member cursor, the history copy, the
grouped update, one record produced, consumed and decoded) are the floor under the propagator's CPU per
member: what PyMongo and aiokafka cost on this machine with no code of the pipeline around them.

`python -m benchmarks.store_costs [--members 5000] [--output docs/benchmarks.md]` (on its own; `make bench`
measures it once on the pipeline's engines, after the sizes, and writes the same section): on the
engines `setaccounts_dev.engines` picks (embedded here). The servers' CPU comes from
`/proc/<pid>/stat`, so it is only shown when they are embedded subprocesses; the client's is this thread's
(`time.thread_time`: the event loop runs every client here). Each figure is the best of `--repeat` runs
(reads, the cursor and the broker's rows repeat; writes run once, each on documents no write has touched).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRebalanceListener
from pymongo import AsyncMongoClient, UpdateMany, UpdateOne

from benchmarks.common import isolated_db, isolated_settings, raw_set, say, seed
from benchmarks.procfs import cpu_snapshot, engine_pids
from benchmarks.report import machine_facts, markdown_table, replace_block
from setaccounts.events.channels import UPDATES
from setaccounts.events.updates import MemberUpdateTemplate
from setaccounts.kafka import make_consumer, make_producer, send_encoded
from setaccounts.store.history import HistoryStore
from setaccounts.store.resources import ResourceStore
from setaccounts.topics import create_topics
from setaccounts_dev.engines import Engines, engines
from setaccounts_dev.engines.secantus import TUNING

CHUNKS = (100, 50, 25, 10)
# The development store's chunk sizes, as its launcher sets them.
IN_CHUNK, WRITE_CHUNK = TUNING["store_read_chunk"], TUNING["store_write_chunk"]
PAGE = 1000  # the planner's page and the applier's largest batch
BEGIN, END = "<!-- store-costs:begin -->", "<!-- store-costs:end -->"
HEADING = "## What each library call costs"
MEMBERS, REPEAT = 5000, 3  # documents or records each call is measured on; runs of the repeated ones
READ = f"read whole documents, `$in` of {IN_CHUNK} ids"
CURSOR = "planner's member cursor (ids, `_id` order)"
HISTORY = "history copy (`HistoryStore.keep`)"
GROUPED = f"guarded bulk update, one statement per {WRITE_CHUNK} alike documents, journaled (pipeline)"
PRODUCE = "produce member updates (one template per command, batches per partition)"
CONSUME = "consume member updates (batches of up to 1,000)"
DECODE = "consume and decode member updates (`Channel.decode` each)"
PER_MEMBER = (READ, CURSOR, HISTORY, GROUPED, PRODUCE, DECODE)  # what one member of a propagation needs


@dataclass(frozen=True)
class Cost:
    wall: float  # seconds
    client: float  # CPU µs per document or record, this thread
    server: float  # CPU µs per document or record, the store or the broker (inf when not ours to read)


async def cost(
    members: int, step: Callable[[], Awaitable[Any]], repeat: int = 1, server: str = "mongodb"
) -> Cost:
    """The best wall seconds, client and server CPU µs per document of `step` over `repeat` runs."""
    pids = engine_pids()
    best = Cost(float("inf"), float("inf"), float("inf"))
    for _ in range(repeat):
        before, started, thread = cpu_snapshot(pids), time.perf_counter(), time.thread_time()
        await step()
        wall, client, after = time.perf_counter() - started, time.thread_time() - thread, cpu_snapshot(pids)
        served = (after[server] - before[server]) * 1e6 / members if server in after else float("inf")
        best = Cost(min(best.wall, wall), min(best.client, client * 1e6 / members), min(best.server, served))
    return best


async def measure(found: Engines, members: int, repeat: int) -> list[tuple[str, Cost]]:
    return [*await store_calls(found, members, repeat), *await broker_calls(found, members, repeat)]


async def store_calls(found: Engines, members: int, repeat: int) -> list[tuple[str, Cost]]:
    settings = isolated_settings(found, "c")
    rows: list[tuple[str, Cost]] = []
    async with isolated_db(settings) as db:  # the services' client: journaled, majority writes
        refs = await seed(db, "costs", members)
        resources = ResourceStore(db)
        for chunk in CHUNKS:

            async def read(chunk: int = chunk) -> None:
                for start in range(0, members, chunk):
                    await db.resources.find({"_id": {"$in": refs[start : start + chunk]}}).to_list(None)

            rows.append((f"read whole documents, `$in` of {chunk} ids", await cost(members, read, repeat)))

        async def members_cursor() -> None:
            query = ResourceStore.members_filter("Patient/costs")
            await db.resources.find(query, {"_id": 1}).sort("_id", 1).to_list(None)

        rows.append((CURSOR, await cost(members, members_cursor, repeat)))
        superseded = list((await resources.get_many(refs)).values())
        rows.append((HISTORY, await cost(members, lambda: HistoryStore(db).keep(superseded))))
        update = {"$set": raw_set(datetime.now(UTC))}
        third = members // 3
        one_each = [UpdateOne({"_id": ref, "version": 1}, update) for ref in refs[:third]]
        rows.append((
            "guarded bulk update, one statement per document, journaled (the services' client)",
            await cost(third, lambda: db.resources.bulk_write(one_each, ordered=False)),
        ))  # fmt: skip
        grouped_refs = refs[third : 2 * third]
        grouped = [
            UpdateMany({"_id": {"$in": grouped_refs[i : i + WRITE_CHUNK]}, "version": 1}, update)
            for i in range(0, len(grouped_refs), WRITE_CHUNK)
        ]
        rows.append(
            (GROUPED, await cost(len(grouped_refs), lambda: db.resources.bulk_write(grouped, ordered=False)))
        )
        plain: AsyncMongoClient[Any] = AsyncMongoClient(settings.mongodb_uri)
        try:
            rest = refs[2 * third :]
            unjournaled = [UpdateOne({"_id": ref, "version": 1}, update) for ref in rest]
            collection = plain[settings.mongodb_database].resources
            rows.append((
                "guarded bulk update, one statement per document, default write concern",
                await cost(len(rest), lambda: collection.bulk_write(unjournaled, ordered=False)),
            ))  # fmt: skip
        finally:
            await plain.close()
    return rows


async def broker_calls(found: Engines, members: int, repeat: int) -> list[tuple[str, Cost]]:
    """Member updates produced and consumed as the planner and the applier do, on topics of their own."""
    refs = [f"Observation/costs-obs-{i:06d}" for i in range(members)]
    settings = isolated_settings(found, "k")
    await create_topics(settings)
    topic = settings.topics.updates
    producer = make_producer(settings)
    await producer.start()
    runs = 0
    try:

        async def produce() -> None:
            partitions = sorted(await producer.partitions_for(topic))
            template = MemberUpdateTemplate.of(
                command_id=f"costs-{time.monotonic_ns()}",
                target="Patient/costs",
                target_seq=1,
                add=["Organization/costs"],
                remove=[],
                partitions=partitions,
            )
            for start in range(0, members, PAGE):
                await send_encoded(producer, topic, [template.record(r) for r in refs[start : start + PAGE]])

        async def consume(decode: bool) -> float:
            """Read the first `members` records with a fresh group, once it has its partitions."""
            nonlocal runs
            runs += 1
            consumer = make_consumer(settings, f"costs{runs}", max_records=PAGE)
            assigned = asyncio.Event()
            consumer.subscribe([topic], listener=_Assigned(assigned))
            await consumer.start()
            try:
                await asyncio.wait_for(assigned.wait(), 60)
                started, read = time.thread_time(), 0
                while read < members:
                    for records in (await consumer.getmany(timeout_ms=500, max_records=PAGE)).values():
                        read += len(records)
                        if decode:
                            for record in records:
                                UPDATES.decode(record.value)
                return time.thread_time() - started
            finally:
                await consumer.stop()

        await produce()  # once untimed: the new topic's partitions settle on their leader
        produced = await cost(members, produce, repeat, server="kafka")
        rows = [(PRODUCE, produced)]
        for label, decode in ((CONSUME, False), (DECODE, True)):
            best = min([await consume(decode) for _ in range(repeat)])
            rows.append((label, Cost(float("nan"), best * 1e6 / members, float("inf"))))
        return rows
    finally:
        await producer.stop()


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, assigned: asyncio.Event) -> None:
        self.assigned = assigned

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.assigned.set()


def floor(rows: list[tuple[str, Cost]]) -> float:
    """The client CPU per member of the calls one member of a propagation needs."""
    costs = dict(rows)
    return sum(costs[label].client for label in PER_MEMBER)


def block(found: Engines, rows: list[tuple[str, Cost]], members: int = MEMBERS, repeat: int = REPEAT) -> str:
    """The report's section for these rows, between the markers."""
    cells = [
        [
            label,
            _figure(c.wall, ".2f"),
            _figure(c.client, ",.1f"),
            _figure(c.server, ",.0f"),
            "yes" if label in PER_MEMBER else "",
        ]
        for label, c in rows
    ]
    header = ("call", "wall s", "client CPU µs/document", "server CPU µs/document", "one member needs")
    return "\n".join([
        BEGIN,
        "_Generated by `make bench` (`benchmarks/store_costs.py`); the markers' content is rewritten._",
        "",
        *machine_facts(found),
        f"- {members:,} documents or records; best of {repeat} for the reads, the cursor and"
        " the broker's rows, one run for each write; no wall time for the consumers (it includes"
        " waiting for fetches)",
        "",
        markdown_table(header, cells),
        "",
        "- the calls one member of a propagation needs (the last column) cost the client "
        f"**{floor(rows):,.1f} µs** of CPU together: PyMongo's and aiokafka's own work, the floor under"
        " the propagator's CPU per member on this machine",
        END,
    ])  # fmt: skip


def write(output: Path, text: str) -> None:
    replace_block(output, BEGIN, END, text, HEADING)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=MEMBERS)
    parser.add_argument("--repeat", type=int, default=REPEAT)
    parser.add_argument("--output", type=Path, default=None, help="markdown report to update")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="setaccounts-costs-") as workdir,
        engines(Path(workdir)) as found,
    ):
        say(f"engines ready ({found.kind}); {args.members} documents")
        rows = asyncio.run(measure(found, args.members, args.repeat))
        text = block(found, rows, args.members, args.repeat)
    print(text)
    if args.output is not None:
        write(args.output, text)
        say(f"wrote {args.output}")
    return 0


def _figure(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "—"


if __name__ == "__main__":
    sys.exit(main())
