"""Aggregator (aggregate): folds the results topic into each job's counts and final status, and publishes
the final `CommandFinished` answer.

Counts cannot be inflated by duplicates: per (command, update partition) it keeps a watermark, the highest
member reference counted. Members reach a partition in increasing order (the planner streams them sorted),
so a redelivered batch, a re-planned fan-out or a zombie applier only ever repeats members at or below it.
The plan (expected members, partitions, whether the target changed) is the planner's: it is written to the
job before `CommandPlanned` is published, and only read here.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from setaccounts.events import (
    RESULTS,
    BatchApplied,
    CancelRequested,
    CommandFailed,
    CommandFinished,
    CommandPlanned,
    Effect,
    PartitionDone,
)
from setaccounts.jobs import Aggregate, Job, PartitionTally
from setaccounts.metrics import JOBS_FINISHED
from setaccounts.status import JobStatus
from setaccounts_propagator.ports import Jobs, Publisher
from setaccounts_propagator.role import Item, RoleHandler

log = structlog.get_logger(__name__)
COUNTED = (Effect.CHANGED, Effect.UNCHANGED)


def aggregate(job: Job, events: Sequence[Any]) -> Aggregate:
    """The job's counts and status after these result events (pure: `job` is not modified)."""
    tallies = {p: t.model_copy() for p, t in job.tallies.items()}
    plan = job
    status: JobStatus | None = None
    outcome: dict[str, Any] | None = None
    for event in events:
        if isinstance(event, CommandPlanned):  # the planner recorded the same on the job before sending it
            plan = plan.model_copy(
                update={
                    "planned": True,
                    "partitions": event.partitions,
                    "target_written": True,
                    "target_changed": event.target_changed,
                }
            )
        elif isinstance(event, BatchApplied):
            tally = tallies.setdefault(str(event.partition), PartitionTally())
            for member, result in event.entries:
                if member <= tally.watermark:
                    continue  # counted before: a redelivery, a re-plan or a zombie's repeat
                tally.watermark = member
                tally.applied += 1
                tally.processed += result in COUNTED
                tally.changed += result == Effect.CHANGED
        elif isinstance(event, PartitionDone):
            tallies.setdefault(str(event.partition), PartitionTally()).done = True
        elif isinstance(event, CommandFailed):
            status, outcome = JobStatus.ERROR, event.outcome
        elif isinstance(event, CancelRequested):
            status = JobStatus.CANCELLED
    processed = sum(t.processed for t in tallies.values())
    changed = sum(t.changed for t in tallies.values())
    if (
        status is None
        and plan.planned
        and all(tallies.get(str(p), PartitionTally()).done for p in plan.partitions)
    ):
        status = JobStatus.COMPLETED
    return Aggregate(
        tallies=tallies,
        processed=processed,
        resources_updated=processed + plan.target_written,
        resources_changed=changed + plan.target_changed,
        status=None if job.finished else status,
        outcome=outcome,
    )


@dataclass
class Aggregator(RoleHandler):
    jobs: Jobs
    publisher: Publisher

    async def __call__(self, items: Sequence[Item]) -> None:
        by_command: dict[str, list[Any]] = defaultdict(list)
        for item in items:
            if not isinstance(item.event, CommandFinished):  # our own output shares the topic
                by_command[item.event.command_id].append(item.event)
        await asyncio.gather(*(self._aggregate(cid, events) for cid, events in by_command.items()))

    async def _aggregate(self, command_id: str, events: list[Any]) -> None:
        job = await self.jobs.get(command_id)
        if job is None:
            log.warning("results for an unknown job", command_id=command_id, events=len(events))
            return
        result = aggregate(job, events)
        if result.status is not None or any(isinstance(e, CancelRequested) for e in events):
            await self._finish(job, result)  # publish first: a crash re-publishes
        await self.jobs.save_aggregate(job, result)
        if result.status == JobStatus.COMPLETED:
            log.info(
                "command completed",
                command_id=command_id,
                updated=result.resources_updated,
                changed=result.resources_changed,
            )

    async def _finish(self, job: Job, result: Aggregate) -> None:
        status = result.status or job.status
        event = CommandFinished(
            command_id=job.id,
            status=status.value,
            resources_updated=result.resources_updated,
            resources_changed=result.resources_changed,
            outcome=(result.outcome or job.outcome) if status == JobStatus.ERROR else None,
        )
        JOBS_FINISHED.labels(status.value).inc()
        await self.publisher.publish(RESULTS, event)
