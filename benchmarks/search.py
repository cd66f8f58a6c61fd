"""Search latency over HTTP on a store of 100k resources: read by id, `_id` search, type search pages (the
first and a deep one, by the `next` link's cursor), a system search page and a `_compartment` page, and
for comparison the older `_offset` paging to the same depth; then the first pages again from a restarted
API, which starts from the window hints the first one kept in the store.

The store is seeded directly (documents built by the one write rule, `run.seed`: patients with their
Observations, `insert_many`), not through the API: only the searches are timed. The API runs as its own
process (uvicorn, `setaccounts_dev.commands.api_command`) on the engines `setaccounts_dev.engines` picks,
and every request goes over HTTP on 127.0.0.1 with an admin token of a throw-away signing key.

`python -m benchmarks.search` prints the table; `--output docs/benchmarks.md` also rewrites the block
between the search markers there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from benchmarks.common import REPO, say, seed
from benchmarks.report import machine_facts, markdown_table, replace_block
from setaccounts.mongo import ensure_indexes
from setaccounts_api.routes.search import encode_cursor
from setaccounts_dev.commands import api_command
from setaccounts_dev.devkeys import claims_for, dev_auth_env, ensure_dev_key
from setaccounts_dev.engines import Engines, engines
from setaccounts_dev.engines.processes import free_port

BEGIN, END = "<!-- search-bench:begin -->", "<!-- search-bench:end -->"
TARGETS = {"id": 0.020, "page": 0.300}  # seconds: `_id` lookups, any page of 100


@dataclass(frozen=True)
class Measured:
    name: str
    target: float | None
    seconds: list[float]

    def quantile(self, q: float) -> float:
        """Nearest-rank quantile (with few samples p95 is the slowest)."""
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def percentile_row(m: Measured) -> list[str]:
    p50, p95 = m.quantile(0.5), m.quantile(0.95)
    verdict = "—" if m.target is None else ("yes" if p95 <= m.target else "**no**")
    target = "—" if m.target is None else f"≤ {m.target * 1000:.0f}"
    return [m.name, str(len(m.seconds)), f"{p50 * 1000:,.1f}", f"{p95 * 1000:,.1f}", target, verdict]


async def timed(runs: int, call: Callable[[int], Awaitable[httpx.Response]]) -> list[float]:
    seconds = []
    for run in range(runs):
        started = time.perf_counter()
        response = await call(run)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return seconds


def next_link(response: httpx.Response) -> str:
    url: str = next(link["url"] for link in response.json()["link"] if link["relation"] == "next")
    return url


def expect_entries(response: httpx.Response, wanted: Sequence[str]) -> None:
    found = [e["fullUrl"].split("/R4/")[1] for e in response.json().get("entry", [])]
    if found != list(wanted):
        raise SystemExit(f"{response.request.url}: expected {list(wanted)[:3]}..., got {found[:3]}...")


async def type_page(api: httpx.AsyncClient, refs: list[str]) -> httpx.Response:
    """`Observation?_count=100`, page 1, checked against the first 100 stored Observations."""
    response = await api.get("/Observation", params={"_count": "100"})
    expect_entries(response, refs[:100])
    return response


async def system_page(api: httpx.AsyncClient) -> httpx.Response:
    return await api.get("", params={"_count": "100"})


async def first_after_restart(api: httpx.AsyncClient, refs: list[str]) -> list[Measured]:
    """The first page of each shape from a restarted API: it starts from the hints the last one kept in
    the store (`search_hints`), not from nothing."""
    return [
        Measured(
            "`Observation?_count=100`, page 1, first after a restart",
            TARGETS["page"],
            await timed(1, lambda run: type_page(api, refs)),
        ),
        Measured(
            "system search `?_count=100`, page 1, first after a restart",
            TARGETS["page"],
            await timed(1, lambda run: system_page(api)),
        ),
    ]


async def measure(
    api: httpx.AsyncClient, refs: list[str], patients: list[str], fast: int, slow: int
) -> list[Measured]:
    """`refs`: every stored Observation reference, sorted (the order pages come in)."""
    step = max(1, len(refs) // fast)
    sample = refs[::step][:fast]
    page = min(500, len(refs) // 100)  # the deep page: 500 at 100k
    deep = (page - 1) * 100  # its first resource
    walks = min(fast, len(refs) // 100 - 1)  # pages after the first: a small store has fewer than `fast`
    middle = patients[len(patients) // 2]
    results: list[Measured] = []

    async def metadata(run: int) -> httpx.Response:
        return await api.get("/metadata")

    async def read(run: int) -> httpx.Response:
        return await api.get(f"/{sample[run]}")

    async def by_id(run: int) -> httpx.Response:
        response = await api.get("/Observation", params={"_id": sample[run].split("/")[1]})
        expect_entries(response, [sample[run]])
        return response

    async def first_page(run: int) -> httpx.Response:
        return await type_page(api, refs)

    async def deep_page(run: int) -> httpx.Response:
        response = await api.get(
            "/Observation", params={"_count": "100", "_cursor": encode_cursor(refs[deep - 1])}
        )
        expect_entries(response, refs[deep : deep + 100])
        return response

    async def deep_offset(run: int) -> httpx.Response:
        response = await api.get("/Observation", params={"_count": "100", "_offset": str(deep)})
        expect_entries(response, refs[deep : deep + 100])
        return response

    # Pages 2, 3, ... each by the `next` link of the one before (page 2's is page 1's link).
    walked = [f"/Observation?_count=100&_cursor={encode_cursor(refs[99])}"]

    async def walk(run: int) -> httpx.Response:
        response = await api.get(walked[-1])
        expect_entries(response, refs[(run + 1) * 100 : (run + 2) * 100])
        walked.append(next_link(response))
        return response

    async def system_search(run: int) -> httpx.Response:
        return await system_page(api)

    async def compartment_page(run: int) -> httpx.Response:
        return await api.get("", params={"_compartment": middle, "_count": "100"})

    async def compartment_next(run: int) -> httpx.Response:
        first = await api.get("", params={"_compartment": middle, "_count": "100"})
        nxt = next((link["url"] for link in first.json()["link"] if link["relation"] == "next"), None)
        return first if nxt is None else await api.get(nxt)  # a compartment of one page has no next

    plan: list[tuple[str, float | None, int, Callable[[int], Awaitable[httpx.Response]]]] = [
        ("`/metadata` (baseline: HTTP and the API, no store)", None, fast, metadata),
        ("read `Observation/id`", TARGETS["id"], fast, read),
        ("`Observation?_id=x`", TARGETS["id"], fast, by_id),
        # The first search of each shape ever has learned nothing of where the ids lie (`rest.windows`):
        # measured on its own, before the same request again (and after a restart, `first_after_restart`).
        ("`Observation?_count=100`, page 1, first ever", TARGETS["page"], 1, first_page),
        ("`Observation?_count=100`, page 1", TARGETS["page"], fast, first_page),
        (f"`Observation?_count=100`, page {page} (`_cursor`)", TARGETS["page"], fast, deep_page),
        (f"`Observation?_count=100`, pages 2-{walks + 1} by `next` link", TARGETS["page"], walks, walk),
        (f"`Observation?_count=100&_offset={deep}` (older paging)", None, slow, deep_offset),
        ("system search `?_count=100`, page 1, first ever", TARGETS["page"], 1, system_search),
        ("system search `?_count=100`, page 1", TARGETS["page"], fast, system_search),
        ("`?_compartment=Patient/x&_count=100`, page 1", TARGETS["page"], fast, compartment_page),
        ("`?_compartment=Patient/x`, first + next page", None, fast, compartment_next),
    ]
    (await api.get(f"/{refs[0]}")).raise_for_status()  # warm-up: connection, token keys
    for name, target, runs, call in plan:
        say(f"measuring {name} ({runs} requests)")
        results.append(Measured(name, target, await timed(runs, call)))
        say(f"  p50 {results[-1].quantile(0.5) * 1000:,.1f} ms")
    return results


async def seed_store(uri: str, database: str, patients: int, members: int) -> tuple[list[str], list[str]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    try:
        db = client[database]
        await ensure_indexes(db)
        refs: list[str] = []
        pids = [f"p{n:04d}" for n in range(patients)]
        for n, pid in enumerate(pids):
            refs += await seed(db, pid, members)
            if n % 10 == 9:
                say(f"seeded {len(refs) + n + 1:,} resources")
        return sorted(refs), [f"Patient/{pid}" for pid in pids]
    finally:
        await client.close()


async def drop(uri: str, database: str) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri)
    try:
        await client.drop_database(database)
    finally:
        await client.close()


def start_api(found: Engines, database: str, keys: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETACCOUNTS_")}
    env |= found.as_env() | found.topic_env() | dev_auth_env(keys)
    # Its own topics (the API creates them at start; readiness waits for them), its own database.
    env |= {"SETACCOUNTS_TOPIC_PREFIX": f"{database}.", "SETACCOUNTS_MONGODB_DATABASE": database}
    env |= {"SETACCOUNTS_LOG_LEVEL": "WARNING"}
    with log.open("wb") as out:
        return subprocess.Popen(
            api_command("127.0.0.1", port),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def tail(log: Path) -> str:
    return log.read_text()[-2000:]


async def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if process.poll() is not None:
                raise SystemExit(f"the API exited: {tail(log)}")
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the API did not become ready in 60 s")


def block(found: Engines, stored: int, results: list[Measured], seconds: float) -> str:
    header = ("request", "requests", "p50 ms", "p95 ms", "target ms", "met")
    lines = [
        BEGIN,
        "_Generated by `make bench` (`benchmarks/search.py`); everything between the markers is rewritten._",
        "",
        *machine_facts(found),
        f"- store: {stored:,} resources; whole run, engines start-up and seeding included: {seconds:.0f} s",
        "",
        markdown_table(header, [percentile_row(m) for m in results]),
        END,
    ]
    return "\n".join(lines)


def write_block(path: Path, text: str) -> None:
    replace_block(path, BEGIN, END, text, "## Search latency")


async def main(patients: int, members: int, fast: int, slow: int, output: Path | None) -> None:
    started = time.monotonic()
    database = f"bench_search_{uuid.uuid4().hex[:8]}"
    with engines() as found, tempfile.TemporaryDirectory() as work:
        keys, log = Path(work) / "keys", Path(work) / "api.log"
        token = ensure_dev_key(keys).sign(claims_for("bench", admin=True))
        say(f"engines: {found.description}; seeding {patients * (members + 1):,} resources")
        try:
            refs, patient_refs = await seed_store(found.mongodb_uri, database, patients, members)
            headers = {"Authorization": f"Bearer {token}"}
            results: list[Measured] = []
            for restarted in (False, True):
                port = free_port()
                process = start_api(found, database, keys, port, log)
                try:
                    url = f"http://127.0.0.1:{port}"
                    await wait_ready(url, process, log)
                    async with httpx.AsyncClient(
                        base_url=f"{url}/fhir/R4", headers=headers, timeout=600
                    ) as api:
                        if restarted:
                            (await api.get(f"/{refs[0]}")).raise_for_status()  # warm-up, as before
                            results += await first_after_restart(api, refs)
                        else:
                            results += await measure(api, refs, patient_refs, fast, slow)
                finally:
                    process.terminate()
                    process.wait(timeout=30)
        finally:
            await drop(found.mongodb_uri, database)
        text = block(found, len(refs) + len(patient_refs), results, time.monotonic() - started)
    print(text)
    if output is not None:
        write_block(output, text)
        say(f"wrote {output}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--patients", type=int, default=100, help="patients, each with --members Observations"
    )
    parser.add_argument("--members", type=int, default=999, help="Observations per patient")
    parser.add_argument("--fast", type=int, default=50, help="requests per fast measurement")
    parser.add_argument(
        "--slow", type=int, default=3, help="requests per measurement that reads many matches"
    )
    parser.add_argument(
        "--output", type=Path, help=f"rewrite the search block of this file (e.g. {REPO}/docs/benchmarks.md)"
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.patients, arguments.members, arguments.fast, arguments.slow, arguments.output))
