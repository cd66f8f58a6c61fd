"""The `jobs` collection: one document per command id, written by the API, planner and aggregator.

Each writer sets only its own fields, so no writer overwrites another's: the API creates and cancels,
the planner records planning progress, the aggregator records counts and the terminal status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import SetAccountsCommand

Document = dict[str, Any]


class Status(StrEnum):
    ACCEPTED = "accepted"
    PLANNING = "planning"
    APPLYING = "applying"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"


TERMINAL = (Status.COMPLETED, Status.ERROR, Status.CANCELLED)


def _now() -> datetime:
    return datetime.now(UTC)


def command_fields(command: SetAccountsCommand) -> Document:
    """What identifies a command's content: a second publish with the same id must match it."""
    return {
        "target": command.target,
        "accounts": list(command.accounts),
        "propagate": command.propagate,
    }


@dataclass(frozen=True)
class Progress:
    done: int
    total: int | None


def progress_of(job: Document) -> Progress:
    """Resources processed so far (target included once written) out of the planned total."""
    done = (1 if job.get("target_written") else 0) + int(job.get("processed", 0))
    expected = job.get("expected")
    return Progress(done, None if expected is None else int(expected) + 1)


def result_of(job: Document) -> tuple[int, int]:
    """(resourcesUpdated, resourcesChanged) as the aggregator recorded them."""
    return int(job.get("resources_updated", 0)), int(job.get("resources_changed", 0))


class JobStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection: AsyncCollection[Document] = db.jobs
        self.sequences: AsyncCollection[Document] = db.sequences

    async def get(self, command_id: str) -> Document | None:
        return await self.collection.find_one({"_id": command_id})

    async def ensure(self, command: SetAccountsCommand) -> Document:
        """The job for this command, created as `accepted` if no one created it before."""
        now = _now()
        created = await self.collection.find_one_and_update(
            {"_id": command.command_id},
            {
                "$setOnInsert": {
                    **command_fields(command),
                    "status": Status.ACCEPTED.value,
                    "requested_at": command.requested_at,
                    "requested_by": command.requested_by,
                    "redrive_of": command.redrive_of,
                    "created_at": now,
                    "updated_at": now,
                }
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert created is not None
        return created

    async def update(self, command_id: str, fields: Document, unless_terminal: bool = True) -> bool:
        """Set fields unless the job already ended; True when the job was updated."""
        query: Document = {"_id": command_id}
        if unless_terminal:
            query["status"] = {"$nin": [s.value for s in TERMINAL]}
        result = await self.collection.update_one(query, {"$set": {**fields, "updated_at": _now()}})
        return result.matched_count == 1

    async def next_seq(self, target: str) -> int:
        """A per-target, strictly increasing number: orders commands for the same target."""
        found = await self.sequences.find_one_and_update(
            {"_id": target}, {"$inc": {"seq": 1}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        assert found is not None
        return int(found["seq"])

    async def cancel(self, command_id: str, by: str | None) -> Document | None:
        """Mark a running job cancelled; returns the job as it is afterwards (None if unknown)."""
        await self.collection.update_one(
            {"_id": command_id, "status": {"$nin": [s.value for s in TERMINAL]}},
            {
                "$set": {
                    "status": Status.CANCELLED.value,
                    "cancelled_at": _now(),
                    "cancelled_by": by,
                    "updated_at": _now(),
                }
            },
        )
        return await self.get(command_id)

    async def cancelled_among(self, command_ids: list[str]) -> set[str]:
        found = self.collection.find(
            {"_id": {"$in": command_ids}, "status": Status.CANCELLED.value}, {"_id": 1}
        )
        return {doc["_id"] async for doc in found}
