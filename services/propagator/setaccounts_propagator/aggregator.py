"""Aggregator (aggregate): folds the results topic into each job's counts and status, and publishes the
final `CommandFinished` answer.

Counts cannot be inflated by duplicates: per (command, update partition) it keeps a watermark, the highest
member reference counted. Members reach a partition in increasing order (the planner streams them sorted),
so a redelivered batch, a re-planned fan-out or a zombie applier only ever repeats members at or below it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import structlog

from setaccounts.events import (
    BatchApplied,
    CancelRequested,
    CommandFailed,
    CommandFinished,
    CommandPlanned,
    Outcome,
    PartitionDone,
    encode,
    headers_for,
)
from setaccounts.jobs import TERMINAL, Status
from setaccounts.metrics import JOBS_FINISHED
from setaccounts_propagator.consumer import Item, RoleHandler

log = structlog.get_logger(__name__)
COUNTED = (Outcome.CHANGED, Outcome.UNCHANGED)


class StaleJob(Exception):
    """Another aggregator wrote the job meanwhile; retriable by reading it again."""

    retriable = True


def fold(job: dict[str, Any], events: Sequence[Any]) -> dict[str, Any]:
    """The job's aggregate fields after these result events (pure: the input is not modified)."""
    state = {p: dict(v) for p, v in (job.get("agg") or {}).items()}
    fields: dict[str, Any] = {}
    for event in events:
        if isinstance(event, CommandPlanned):
            fields.update(
                planned=True,
                expected=event.expected,
                partitions=event.partitions,
                target_changed=event.target_changed,
                target_written=True,
            )
        elif isinstance(event, BatchApplied):
            part = state.setdefault(str(event.partition), {"w": "", "n": 0, "c": 0, "done": False})
            for member, outcome in event.entries:
                if member <= part["w"]:
                    continue  # counted before: a redelivery, a re-plan or a zombie's repeat
                part["w"] = member
                part["n"] += outcome in COUNTED
                part["c"] += outcome == Outcome.CHANGED
        elif isinstance(event, PartitionDone):
            state.setdefault(str(event.partition), {"w": "", "n": 0, "c": 0, "done": False})["done"] = True
        elif isinstance(event, CommandFailed):
            fields.update(status=Status.ERROR.value, outcome=event.outcome)
        elif isinstance(event, CancelRequested):
            fields.update(status=Status.CANCELLED.value)
    merged = {**job, **fields}
    processed = sum(p["n"] for p in state.values())
    changed = sum(p["c"] for p in state.values())
    target_written = bool(merged.get("target_written"))
    fields.update(
        agg=state,
        processed=processed,
        resources_updated=processed + target_written,
        resources_changed=changed + bool(merged.get("target_changed")),
    )
    if (
        merged.get("status") not in TERMINAL
        and merged.get("planned")
        and all(state.get(str(p), {}).get("done") for p in merged.get("partitions", []))
    ):
        fields["status"] = Status.COMPLETED.value
    return fields


class Aggregator(RoleHandler):
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
        fields = fold(job, events)
        was_terminal = job.get("status") in TERMINAL
        status = str(fields.get("status", job.get("status")))
        if (status in TERMINAL and not was_terminal) or any(isinstance(e, CancelRequested) for e in events):
            await self._finish(command_id, status, fields, job)  # publish first: a crash re-publishes
        if was_terminal:
            fields.pop("status", None)
        revision = job.get("agg_rev", 0)
        result = await self.jobs.collection.update_one(
            {"_id": command_id, "agg_rev": job.get("agg_rev")}
            if "agg_rev" in job
            else {"_id": command_id, "agg_rev": {"$exists": False}},
            {"$set": {**fields, "agg_rev": revision + 1}},
        )
        if result.matched_count == 0:
            raise StaleJob(command_id)
        if status == Status.COMPLETED and not was_terminal:
            log.info(
                "command completed",
                command_id=command_id,
                updated=fields["resources_updated"],
                changed=fields["resources_changed"],
            )

    async def _finish(
        self, command_id: str, status: str, fields: dict[str, Any], job: dict[str, Any]
    ) -> None:
        event = CommandFinished(
            command_id=command_id,
            status=status,
            resources_updated=fields["resources_updated"],
            resources_changed=fields["resources_changed"],
            outcome=fields.get("outcome", job.get("outcome")) if status == Status.ERROR else None,
        )
        JOBS_FINISHED.labels(status).inc()
        await self.producer.send_and_wait(
            self.settings.topics.results, encode(event), key=command_id.encode(), headers=headers_for(event)
        )
