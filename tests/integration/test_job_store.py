"""The job document's writers never undo each other: checked on the real store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import SetAccountsCommand
from setaccounts.jobs import Aggregate, JobStore, StaleJob
from setaccounts.status import JobStatus

pytestmark = pytest.mark.integration


def command() -> SetAccountsCommand:
    return SetAccountsCommand(command_id=str(uuid.uuid4()), target="Patient/p1", accounts=["Organization/a"])


def completed() -> Aggregate:
    return Aggregate(
        tallies={}, processed=0, resources_updated=1, resources_changed=1, status=JobStatus.COMPLETED
    )


async def test_a_cancel_between_the_aggregators_read_and_write_wins(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    jobs = JobStore(db)
    job = await jobs.ensure(command())
    await jobs.cancel(job.id, "someone")
    with pytest.raises(StaleJob):
        await jobs.save_aggregate(job, completed())  # folded from the job as read before the cancel
    after = await jobs.get(job.id)
    assert after is not None and after.status == JobStatus.CANCELLED


async def test_the_planner_never_moves_a_cancelled_job_back_to_planning(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    jobs = JobStore(db)
    job = await jobs.ensure(command())
    await jobs.cancel(job.id, "someone")
    assert await jobs.start_plan(job.id, 1, [], 0) is None
    assert not await jobs.checkpoint(job.id, "Observation/x", 1)
    after = await jobs.get(job.id)
    assert after is not None and after.status == JobStatus.CANCELLED


async def test_an_invalid_command_never_takes_over_a_valid_commands_job(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    jobs = JobStore(db)
    job = await jobs.ensure(command())
    assert not await jobs.reject(job.id, None)
    assert await jobs.reject(f"{job.id}-other", None), "a new id gets its rejected job"
    assert await jobs.reject(f"{job.id}-other", None), "and keeps it when the record is redelivered"
    after = await jobs.get(job.id)
    assert after is not None and (after.status, after.http_status, after.rejected) == (
        JobStatus.ACCEPTED,
        None,
        False,
    )
