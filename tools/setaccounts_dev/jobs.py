"""Wait for jobs to reach a status, reading the `jobs` collection directly: the one waiter of the tests and
the benchmarks, on the jobs' own status vocabulary (`setaccounts.status`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection, Iterable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.status import TERMINAL


class JobsNotFinished(AssertionError):
    """Some jobs did not reach the statuses waited for in time (an assertion: tests report it as one)."""


async def reached(
    db: AsyncDatabase[dict[str, Any]],
    command_ids: Iterable[str],
    statuses: Collection[str] = TERMINAL,
    seconds: float = 60,
    where: dict[str, Any] | None = None,
    poll_seconds: float = 0.1,
) -> AsyncIterator[dict[str, Any]]:
    """Each job once its status is one of `statuses` (and it matches `where`), in the order they get
    there (ended, by default: `TERMINAL`); after `seconds`, raises `JobsNotFinished` naming the jobs as
    last seen."""
    pending = set(command_ids)
    deadline = time.monotonic() + seconds
    wanted = {"status": {"$in": sorted(statuses)}, **(where or {})}
    while pending:
        async for job in db.jobs.find({"_id": {"$in": sorted(pending)}, **wanted}):
            pending.discard(job["_id"])
            yield job
        if not pending:
            return
        if time.monotonic() > deadline:
            seen = [job async for job in db.jobs.find({"_id": {"$in": sorted(pending)}})]
            raise JobsNotFinished(
                f"{len(pending)} jobs did not reach {sorted(statuses)} within {seconds:.0f}s: "
                f"{sorted(pending)[:5]} (last seen: {seen[:5]})"
            )
        await asyncio.sleep(poll_seconds)


async def wait_job(
    db: AsyncDatabase[dict[str, Any]],
    command_id: str,
    statuses: Collection[str] = TERMINAL,
    seconds: float = 60,
    where: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The job once its status is one of `statuses` (and it matches `where`)."""
    async for job in reached(db, [command_id], statuses, seconds, where):
        return job
    raise AssertionError("unreachable: `reached` yields the job or raises")  # pragma: no cover
