"""Wait for a job to reach a status, reading the `jobs` collection directly."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase


async def wait_job(
    db: AsyncDatabase[dict[str, Any]],
    command_id: str,
    statuses: tuple[str, ...] = ("completed",),
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
    raise AssertionError(f"job {command_id} did not reach {statuses} within {timeout}s: {job}")
