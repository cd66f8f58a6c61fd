"""Wait for a job to reach a status, reading the `jobs` collection directly: the one waiter of the tests,
on the jobs' own status vocabulary (`setaccounts.status`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.status import TERMINAL, JobStatus


async def wait_job(
    db: AsyncDatabase[dict[str, Any]],
    command_id: str,
    statuses: Collection[str] = (JobStatus.COMPLETED,),
    timeout: float = 60,
    where: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Poll the job until its status is one of `statuses` (and it matches `where`)."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        job = await db.jobs.find_one({"_id": command_id, **(where or {})})
        if job is not None and job.get("status") in statuses:
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {command_id} did not reach {sorted(statuses)} within {timeout}s: {job}")


async def wait_final(
    db: AsyncDatabase[dict[str, Any]], command_id: str, timeout: float = 240
) -> dict[str, Any]:
    """The job once it ended, however it ended; fails when it is still running after `timeout` (stuck)."""
    return await wait_job(db, command_id, TERMINAL, timeout)
