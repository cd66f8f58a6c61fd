"""The aggregator over an in-memory job store: exact counts whatever is redelivered, one final answer, and
nothing moves a finished job."""

from __future__ import annotations

import pytest

from setaccounts.events import (
    RESULTS,
    BatchApplied,
    CommandFinished,
    SetAccountsCommand,
)
from setaccounts.jobs import Job, StaleJob
from setaccounts.status import JobStatus
from setaccounts_propagator.aggregator import aggregate
from tests.helpers.fakes import FakeJobStore, InMemory


async def planned_and_applied(memory: InMemory, members: int) -> SetAccountsCommand:
    """A command planned and applied whose results wait on the results topic, not yet aggregated."""
    first = await memory.planned(members, plan_page_size=2)
    await memory.consume("applier")
    return first


async def test_redelivered_results_count_once_and_answer_once() -> None:
    memory = InMemory()
    first = await planned_and_applied(memory, 5)
    results = memory.publisher.take(RESULTS)
    aggregator = memory.handler("aggregator")
    await aggregator(results)
    job = await memory.jobs.get(first.command_id)

    await aggregator(results)  # the commit was lost: every result again

    again = await memory.jobs.get(first.command_id)
    assert job is not None and again is not None
    assert (again.status, again.processed, again.resources_updated) == (JobStatus.COMPLETED, 5, 6)
    assert again.tallies == job.tallies
    [finished] = memory.publisher.events(RESULTS, CommandFinished)
    assert (finished.status, finished.resources_updated, finished.resources_changed) == ("completed", 6, 6)


async def test_a_zombie_batch_after_the_job_finished_changes_nothing() -> None:
    memory = InMemory()
    first = await planned_and_applied(memory, 4)
    results = memory.publisher.take(RESULTS)
    [early] = [i for i in results if isinstance(i.event, BatchApplied)][:1]
    aggregator = memory.handler("aggregator")
    await aggregator(results)
    finished = await memory.jobs.get(first.command_id)

    await aggregator([early])  # a stale applier's report of members counted already

    job = await memory.jobs.get(first.command_id)
    assert job is not None and finished is not None
    assert (job.status, job.tallies, job.resources_updated) == (JobStatus.COMPLETED, finished.tallies, 5)
    assert len(memory.publisher.events(RESULTS, CommandFinished)) == 1


async def test_a_cancel_is_answered_once_and_later_results_keep_the_job_cancelled() -> None:
    memory = InMemory()
    first = await memory.planned(4)
    await memory.cancel(first.command_id)
    await memory.run()

    job = await memory.jobs.get(first.command_id)
    assert job is not None and job.status == JobStatus.CANCELLED
    [finished] = memory.publisher.events(RESULTS, CommandFinished)
    assert finished.status == "cancelled"


class RacedJobs(FakeJobStore):
    """A job store where, once armed, another aggregator writes a job just after it is read."""

    raced = True

    async def get(self, command_id: str) -> Job | None:
        job = await super().get(command_id)
        if job is not None and not self.raced:
            self.raced = True
            other = await super().get(command_id)
            assert other is not None
            await self.save_aggregate(other, aggregate(other, []))
        return job


async def test_a_fold_over_a_job_written_meanwhile_is_refused_and_the_retry_counts_right() -> None:
    jobs = RacedJobs()
    memory = InMemory(jobs=jobs)
    first = await planned_and_applied(memory, 3)
    jobs.raced = False
    results = memory.publisher.take(RESULTS)
    aggregator = memory.handler("aggregator")

    with pytest.raises(StaleJob):
        await aggregator(results)
    await aggregator(results)  # the consume loop retries the batch

    job = await memory.jobs.get(first.command_id)
    assert job is not None
    assert (job.status, job.processed, job.resources_updated, job.agg_rev) == (JobStatus.COMPLETED, 3, 4, 2)
