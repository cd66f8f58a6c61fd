"""The `jobs` collection: one typed document per command id, and the only code that touches it.

Who writes what (every write is a `JobStore` method named for the step; `updated_at` goes with each):

| field                                                  | writer                                         |
|--------------------------------------------------------|------------------------------------------------|
| target, accounts, mode, propagate, requested_*,        | whoever sees the command first: the API, or    |
| redrive_of, created_at, trace_id                       | the planner for a command published directly   |
| target_seq, accounts_before, expected (estimate),      | planner: `start_plan`                          |
| target_written, target_changed                         | planner: `mark_target_written`                 |
| cursor, emitted                                        | planner: `checkpoint`                          |
| planned, expected (final), partitions                  | planner: `finish_plan`                         |
| rejected; http_status                                  | planner (`reject`, `record_failure`); API      |
|                                                        | (`publish_failed`)                             |
| tallies, processed, resources_updated,                 | aggregator: `save_aggregate`                   |
| resources_changed, outcome, agg_rev                    |                                                |
| cancelled_at, cancelled_by                             | API: `cancel`                                  |
| outcome, http_status, lost_at (a job whose events the  | whichever service first notices that the       |
| broker lost); `broker_losses` (when a loss was handled)| broker lost its topics (`fail_lost`)           |

`status` is the one field several roles move, each only along its own transitions, and never out of a
final status: `accepted` (on creation) → `planning` (planner, `start_plan`) → `applying` (planner,
`checkpoint`) → `completed` | `error` (aggregator, `save_aggregate`); `error` also by the API when the
command could not be published, and by `fail_lost` (API or propagator, whichever notices first) for every
running job created before the broker lost its topics; `cancelled` by the API (`cancel`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from setaccounts.events import SetAccountsCommand
from setaccounts.status import TERMINAL, JobStatus

StoredJob = dict[str, Any]


_RUNNING = {"$nin": sorted(TERMINAL)}


def accepted_fields(command: SetAccountsCommand, now: datetime, trace_id: str | None = None) -> StoredJob:
    """A new job's fields: `accepted`, from the command, with the trace it runs in (when traced)."""
    return {
        "target": command.target,
        "accounts": list(command.accounts),
        "mode": command.mode,
        "propagate": command.propagate,
        "status": JobStatus.ACCEPTED.value,
        "requested_at": command.requested_at,
        "requested_by": command.requested_by,
        "redrive_of": command.redrive_of,
        "trace_id": trace_id,
        "created_at": now,
        "updated_at": now,
    }


def planning_fields(target_seq: int, accounts_before: list[str], members: int, now: datetime) -> StoredJob:
    """What `start_plan` writes."""
    return {
        "target_seq": target_seq,
        "accounts_before": accounts_before,
        "status": JobStatus.PLANNING.value,
        "expected": members,
        "planned": False,
        "updated_at": now,
    }


def aggregate_fields(job: Job, aggregate: Aggregate, now: datetime) -> StoredJob:
    """What `save_aggregate` writes: the fold's counts, a new `agg_rev`, and the end if the fold ended it."""
    fields: StoredJob = {
        "tallies": {p: t.model_dump() for p, t in aggregate.tallies.items()},
        "processed": aggregate.processed,
        "resources_updated": aggregate.resources_updated,
        "resources_changed": aggregate.resources_changed,
        "agg_rev": (job.agg_rev or 0) + 1,
        "updated_at": now,
    }
    if aggregate.status is not None:
        fields["status"] = aggregate.status.value
    if aggregate.outcome is not None:
        fields["outcome"] = aggregate.outcome
    return fields


class StaleJob(Exception):
    """Another aggregator wrote the job meanwhile; read it again and fold again."""


class PartitionTally(BaseModel):
    """The aggregator's count of one update partition for one command.

    Members reach a partition in increasing order, so `watermark` (the highest member counted) keeps
    repeats out of the counts. `applied` counts every member applied, gone and cancelled ones too: the
    planner paces the fan-out by it (`pacing.Lead`).
    """

    watermark: str = ""
    applied: int = 0
    processed: int = 0
    changed: int = 0
    done: bool = False


class Job(BaseModel):
    """A job as stored; unknown stored fields are ignored, missing ones take their defaults."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str = Field(alias="_id")
    status: JobStatus = JobStatus.ACCEPTED
    target: str | None = None
    accounts: list[str] = Field(default_factory=list)
    mode: str = "set"
    propagate: bool = False
    requested_at: datetime | None = None
    requested_by: str | None = None
    redrive_of: str | None = None
    trace_id: str | None = None  # the OpenTelemetry trace of the command (`setaccounts.telemetry`)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # planner
    target_seq: int | None = None
    accounts_before: list[str] = Field(default_factory=list)
    target_written: bool = False
    target_changed: bool = False
    cursor: str | None = None
    emitted: int = 0
    planned: bool = False
    expected: int | None = None
    partitions: list[int] = Field(default_factory=list)
    http_status: int | None = None
    rejected: bool = False  # created for an invalid command, to carry its 400
    # aggregator
    tallies: dict[str, PartitionTally] = Field(default_factory=dict)
    processed: int = 0
    resources_updated: int = 0
    resources_changed: int = 0
    outcome: dict[str, Any] | None = None
    agg_rev: int | None = None
    # API
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None
    # API or propagator: the broker lost the job's events
    lost_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def applied(self) -> int:
        """Member updates the applier has applied (whatever their effect), as the aggregator counted them;
        a tally stored before `applied` existed counts its processed ones."""
        return sum(max(t.applied, t.processed) for t in self.tallies.values())

    @property
    def progress(self) -> Progress:
        """Resources processed so far (target included once written) out of the planned total."""
        done = int(self.target_written) + self.processed
        return Progress(done, None if self.expected is None else self.expected + 1)

    def same_command(self, command: SetAccountsCommand) -> bool:
        """A second publish with this id must carry the same content (target, accounts, mode, propagate)."""
        return (self.target, self.accounts, self.mode, self.propagate) == (
            command.target,
            list(command.accounts),
            command.mode,
            command.propagate,
        )


@dataclass(frozen=True)
class Progress:
    done: int
    total: int | None


@dataclass(frozen=True)
class Aggregate:
    """What the aggregator writes after folding a batch of results (status only when it changes it)."""

    tallies: dict[str, PartitionTally]
    processed: int
    resources_updated: int
    resources_changed: int
    status: JobStatus | None = None
    outcome: dict[str, Any] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class JobStore:
    def __init__(self, db: AsyncDatabase[StoredJob]) -> None:
        self._jobs: AsyncCollection[StoredJob] = db.jobs
        self._sequences: AsyncCollection[StoredJob] = db.sequences
        self._losses: AsyncCollection[StoredJob] = db.broker_losses

    async def get(self, command_id: str) -> Job | None:
        found = await self._jobs.find_one({"_id": command_id})
        return None if found is None else Job.model_validate(found)

    async def listing(
        self,
        limit: int,
        *,
        statuses: Collection[str] = (),
        target: str | None = None,
        requester: str | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> list[Job]:
        """Up to `limit` jobs, newest first (`created_at`, then `_id`, both descending), matching every
        filter given (`statuses`: any of them); `before` is the (created_at, id) of the last job of the
        page before, so jobs created meanwhile shift no page. Read by the API's listing and the console."""
        if limit <= 0:
            return []
        query: StoredJob = {}
        if statuses:
            query["status"] = {"$in": sorted(statuses)}
        if target is not None:
            query["target"] = target
        if requester is not None:
            query["requested_by"] = requester
        if before is not None:
            at, command_id = before
            query["$or"] = [{"created_at": {"$lt": at}}, {"created_at": at, "_id": {"$lt": command_id}}]
        found = self._jobs.find(query).sort([("created_at", -1), ("_id", -1)]).limit(limit)
        return [Job.model_validate(doc) async for doc in found]

    async def cancelled_among(self, command_ids: list[str]) -> set[str]:
        found = self._jobs.find(
            {"_id": {"$in": command_ids}, "status": JobStatus.CANCELLED.value}, {"_id": 1}
        )
        return {doc["_id"] async for doc in found}

    # --- API or planner ------------------------------------------------------------------------------

    async def ensure(self, command: SetAccountsCommand, trace_id: str | None = None) -> Job:
        """The job for this command, created as `accepted` if no one created it before (in the trace
        `trace_id`, when the creator traces)."""
        now = _now()
        created = await self._jobs.find_one_and_update(
            {"_id": command.command_id},
            {"$setOnInsert": accepted_fields(command, now, trace_id)},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert created is not None
        return Job.model_validate(created)

    # --- API -----------------------------------------------------------------------------------------

    async def publish_failed(self, command_id: str) -> None:
        """The API could not publish the command: nothing will run it."""
        await self._set(command_id, {"status": JobStatus.ERROR.value, "http_status": 503})

    async def cancel(self, command_id: str, by: str | None) -> Job | None:
        """Mark a running job cancelled; returns the job as it is afterwards (None if unknown)."""
        now = _now()
        await self._set(
            command_id, {"status": JobStatus.CANCELLED.value, "cancelled_at": now, "cancelled_by": by}
        )
        return await self.get(command_id)

    # --- API or propagator: the broker lost its topics ------------------------------------------------

    async def fail_lost(self, whole_at: datetime, outcome: dict[str, Any], http_status: int) -> list[Job]:
        """End every running job created until now with `outcome`: their command, updates or results were
        on topics the broker lost, so they can never finish. Returns the jobs this call ended.

        Once per loss: `whole_at` is when the caller last saw the topics whole; if another service recorded
        a loss since (in `broker_losses`), that one was this loss, its jobs are ended already, and jobs
        created after it are not touched."""
        now = _now()
        try:
            recorded = await self._losses.update_one(
                {"_id": "broker", "at": {"$lt": whole_at}}, {"$set": {"at": now}}, upsert=True
            )
        except DuplicateKeyError:
            return []
        if recorded.matched_count == 0 and recorded.upserted_id is None:
            return []
        running = self._jobs.find({"status": _RUNNING, "created_at": {"$lt": now}}, {"_id": 1})
        ended: list[Job] = []
        for command_id in [doc["_id"] async for doc in running]:
            fields = {"status": JobStatus.ERROR.value, "outcome": outcome, "http_status": http_status}
            if await self._set(command_id, {**fields, "lost_at": _now()}):
                job = await self.get(command_id)
                if job is not None:
                    ended.append(job)
        return ended

    async def last_loss(self) -> datetime | None:
        """When a service last handled a loss of the broker's topics (`fail_lost`), if ever."""
        found = await self._losses.find_one({"_id": "broker"})
        return None if found is None else found["at"]

    # --- planner -------------------------------------------------------------------------------------

    async def next_seq(self, target: str) -> int:
        """A per-target, strictly increasing number: orders commands for the same target."""
        found = await self._sequences.find_one_and_update(
            {"_id": target}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        assert found is not None
        return int(found["seq"])

    async def start_plan(
        self, command_id: str, target_seq: int, accounts_before: list[str], members: int
    ) -> Job | None:
        """Fix what the target held before and the command's place in its order, once for every re-run;
        None when the job ended before it was planned (cancelled: the aggregator answers for it)."""
        await self._jobs.update_one(
            # a job cancelled meanwhile stays cancelled
            {"_id": command_id, "target_seq": {"$exists": False}, "status": _RUNNING},
            {"$set": planning_fields(target_seq, accounts_before, members, _now())},
        )
        job = await self.get(command_id)
        return None if job is None or job.finished else job

    async def mark_target_written(self, command_id: str, changed: bool) -> bool:
        """True unless the job ended meanwhile."""
        return await self._set(command_id, {"target_written": True, "target_changed": changed})

    async def checkpoint(self, command_id: str, cursor: str, emitted: int) -> bool:
        """Members up to `cursor` were emitted and acknowledged; False when the job ended meanwhile."""
        return await self._set(
            command_id, {"cursor": cursor, "emitted": emitted, "status": JobStatus.APPLYING.value}
        )

    async def finish_plan(self, command_id: str, expected: int, partitions: list[int]) -> Job | None:
        await self._set(command_id, {"planned": True, "expected": expected, "partitions": partitions})
        return await self.get(command_id)

    async def record_failure(self, command_id: str, http_status: int) -> None:
        """The HTTP status the failure answers with; the aggregator ends the job on `CommandFailed`."""
        await self._set(command_id, {"http_status": http_status})

    async def reject(self, command_id: str, target: str | None) -> bool:
        """An invalid command's job, created to carry the 400; False if the id belongs to a job of a valid
        command (a rejected event never touches a job it does not own)."""
        found = await self._jobs.find_one_and_update(
            {"_id": command_id},
            {
                "$setOnInsert": {
                    "status": JobStatus.ACCEPTED.value,
                    "target": target,
                    "created_at": _now(),
                    "http_status": 400,
                    "rejected": True,
                }
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return bool(found and found.get("rejected"))

    # --- aggregator ----------------------------------------------------------------------------------

    async def save_aggregate(self, job: Job, aggregate: Aggregate) -> None:
        """Write the fold's result if no other aggregator wrote the job since `job` was read (and, when it
        ends the job, if no one else ended it meanwhile); StaleJob otherwise."""
        fields = aggregate_fields(job, aggregate, _now())
        guard: StoredJob = {"_id": job.id, "agg_rev": job.agg_rev}
        if job.agg_rev is None:
            guard["agg_rev"] = {"$exists": False}
        if aggregate.status is not None:
            guard["status"] = _RUNNING  # a cancel that landed since the read wins: fold again
        result = await self._jobs.update_one(guard, {"$set": fields})
        if result.matched_count == 0:
            raise StaleJob(job.id)

    async def _set(self, command_id: str, fields: StoredJob) -> bool:
        """Set fields unless the job already ended; True when the job was updated."""
        result = await self._jobs.update_one(
            {"_id": command_id, "status": _RUNNING}, {"$set": {**fields, "updated_at": _now()}}
        )
        return result.matched_count == 1
