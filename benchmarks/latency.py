"""Sync latency of `$set-accounts`: what a caller without `Prefer: respond-async` waits, end to end.

The API (uvicorn) and the propagator run as subprocesses on the benchmark's engines, with their own
database, topics and groups; the API trusts a development signing key made for the run, and the client
sends an admin token from it. One patient with `SYNC_MEMBERS` Observations; `SYNC_CALLS` calls one after
another, each giving the patient the other of two accounts, so every call changes the patient and all its
members. A call counts only if it answers 200 with every resource updated.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

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
from setaccounts.topics import create_topics
from setaccounts_dev.engines import Engines

SYNC_MEMBERS, SYNC_CALLS = 100, 50


@dataclass(frozen=True)
class SyncLatency:
    members: int
    seconds: list[float]  # per call, in order

    @property
    def p50(self) -> float:
        return statistics.quantiles(self.seconds, n=100, method="inclusive")[49]

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.seconds, n=100, method="inclusive")[94]


def body(account: str) -> dict[str, object]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "accounts", "valueReference": {"reference": account}},
            {"name": "propagate", "valueBoolean": True},
        ],
    }


async def measure_sync_latency(found: Engines, workdir: Path) -> SyncLatency:
    settings, token = api_settings(found, "l", workdir)
    await create_topics(settings)
    async with isolated_db(settings) as db:
        await seed(db, "sync", SYNC_MEMBERS)
        api = ApiProcess(settings, workdir / "api-latency.log")
        try:
            with PropagatorProcess(settings, workdir / "propagator-latency.log") as propagator:
                await api.wait_ready()
                say(f"sync latency: API pid {api.process.pid}, propagator pid {propagator.pid}")
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
                url = f"{api.base}/fhir/R4/Patient/sync/$set-accounts"
                seconds: list[float] = []
                async with httpx.AsyncClient(headers=headers, timeout=120) as client:
                    for call in range(SYNC_CALLS + 1):  # the first call warms the groups: not counted
                        started = time.perf_counter()
                        response = await client.post(url, json=body(f"Organization/sync-{call % 2}"))
                        elapsed = time.perf_counter() - started
                        updated = resources_updated(response)
                        if response.status_code != 200 or updated != SYNC_MEMBERS + 1:
                            raise BenchError(
                                f"sync call {call}: {response.status_code}, {updated} updated: "
                                f"{response.text[:300]}"
                            )
                        if call:
                            seconds.append(elapsed)
                        propagator.check()
        finally:
            api.stop()
    result = SyncLatency(SYNC_MEMBERS, seconds)
    say(f"sync latency: p50 {result.p50 * 1000:.0f} ms, p95 {result.p95 * 1000:.0f} ms")
    return result


def resources_updated(response: httpx.Response) -> int | None:
    """`resourcesUpdated` of the operation's Parameters answer."""
    try:
        parameters = response.json().get("parameter") or []
    except ValueError:
        return None
    for parameter in parameters:
        if parameter.get("name") == "resourcesUpdated":
            value = parameter.get("valueInteger")
            return value if isinstance(value, int) else None
    return None
