"""The tests' waits on a job: `setaccounts_dev.jobs` with the tests' defaults (completed; ended)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.status import TERMINAL, JobStatus
from setaccounts_dev import jobs


async def wait_job(
    db: AsyncDatabase[dict[str, Any]],
    command_id: str,
    statuses: Collection[str] = (JobStatus.COMPLETED,),
    timeout: float = 60,
    where: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The job once its status is one of `statuses` (completed, by default) and it matches `where`."""
    return await jobs.wait_job(db, command_id, statuses, timeout, where)


async def wait_final(
    db: AsyncDatabase[dict[str, Any]], command_id: str, timeout: float = 240
) -> dict[str, Any]:
    """The job once it ended, however it ended; fails when it is still running after `timeout` (stuck)."""
    return await wait_job(db, command_id, TERMINAL, timeout)
