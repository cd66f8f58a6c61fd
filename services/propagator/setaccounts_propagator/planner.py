"""Planner (command → fan-out): sets the target's accounts, then streams the target's compartment members
from MongoDB and emits one update per member, keyed by member so each member's updates stay in order.

Re-consuming a command resumes from the job's checkpoint; the applier's marks make re-emitted updates
harmless and the aggregator's per-partition watermarks keep them out of the counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from setaccounts.events import (
    CommandFailed,
    CommandPlanned,
    EndOfCommand,
    EventError,
    MemberUpdate,
    SetAccountsCommand,
    command_envelope,
    encode,
    headers_for,
)
from setaccounts.fhir.compartments import compartment_owner_types
from setaccounts.fhir.outcomes import operation_outcome
from setaccounts.jobs import TERMINAL, Status, command_fields
from setaccounts.kafka import publish
from setaccounts.store.marks import apply_accounts, write_op
from setaccounts.store.meta import accounts_of
from setaccounts.store.resources import VersionConflict, now
from setaccounts_propagator.consumer import Item, Record, RoleHandler

log = structlog.get_logger(__name__)


@dataclass
class Page:
    """The fan-out's running state: updates waiting to be sent, and how many were sent before."""

    command: SetAccountsCommand
    target_seq: int
    add: list[str]
    remove: list[str]
    emitted: int
    members: list[str] = field(default_factory=list)


class DuplicateCommandId(ValueError):
    """A command id was reused for different content: refused, never retried."""

    retriable = False


def fans_out(command: SetAccountsCommand) -> bool:
    """Only a propagating command on a compartment owner (Patient, Encounter, …) has members to update."""
    return command.propagate and command.target.split("/", 1)[0] in compartment_owner_types()


class Planner(RoleHandler):
    async def __call__(self, items: Sequence[Item]) -> None:
        for item in items:  # commands of one partition share targets: strictly one after another
            await self.plan(item.event)

    async def plan(self, command: SetAccountsCommand) -> None:
        job = await self.jobs.ensure(command)
        if {k: job.get(k) for k in command_fields(command)} != command_fields(command):
            raise DuplicateCommandId(f"command id {command.command_id} was already used for another command")
        if job["status"] in TERMINAL:
            log.info("command already finished", command_id=command.command_id, status=job["status"])
            return
        if not job.get("planned"):
            prepared = await self._prepare(command, job)
            if prepared is None:
                return
            job = prepared
            if not await self._write_target(command, job):
                return
            emitted, partitions = await self._fan_out(command, job)
            if emitted is None:
                return  # cancelled: the aggregator answers for it
            await self.jobs.update(
                command.command_id, {"planned": True, "expected": emitted, "partitions": partitions}
            )
            job = await self.jobs.get(command.command_id) or job
        await publish(
            self.producer,
            self.settings.topics.results,
            command.command_id,
            CommandPlanned(
                command_id=command.command_id,
                target=command.target,
                target_seq=job["target_seq"],
                accounts_before=job["accounts_before"],
                accounts_after=list(command.accounts),
                propagate=command.propagate,
                target_changed=bool(job.get("target_changed")),
                expected=int(job.get("expected", 0)),
                partitions=list(job.get("partitions", [])),
                requested_at=command.requested_at,
                requested_by=command.requested_by,
                redrive_of=command.redrive_of,
            ),
        )
        log.info(
            "command planned",
            command_id=command.command_id,
            target=command.target,
            expected=job.get("expected"),
        )

    async def _prepare(self, command: SetAccountsCommand, job: dict[str, Any]) -> dict[str, Any] | None:
        """Check the target and record what it held before; the first run fixes these for every re-run."""
        if "target_seq" in job:
            return job
        target = await self.resources.get(command.target)
        if target is None or target.get("deleted"):
            gone = "was deleted" if target is not None else "does not exist"
            await self._fail(
                command, 410 if target is not None else 404, "not-found", f"target {command.target} {gone}"
            )
            return None
        seq = await self.jobs.next_seq(command.target)
        members = 0
        if fans_out(command):
            members = await self.resources.collection.count_documents(
                {"members_of": command.target, "_id": {"$ne": command.target}}
            )
        await self.jobs.collection.update_one(
            {
                "_id": command.command_id,
                "target_seq": {"$exists": False},
                "status": {"$nin": [s.value for s in TERMINAL]},  # cancelled meanwhile: stays cancelled
            },
            {
                "$set": {
                    "target_seq": seq,
                    "accounts_before": accounts_of(target["resource"]),
                    "status": Status.PLANNING.value,
                    "expected": members,
                    "planned": False,
                }
            },
        )
        prepared = await self.jobs.get(command.command_id)
        if prepared is None or prepared["status"] in TERMINAL:
            return None  # cancelled before planning: the aggregator answers for it
        return prepared

    async def _write_target(self, command: SetAccountsCommand, job: dict[str, Any]) -> bool:
        for _attempt in range(10):
            target = await self.resources.get(command.target)
            if target is None or target.get("deleted"):
                await self._fail(command, 410, "not-found", f"target {command.target} was deleted")
                return False
            applied = apply_accounts(
                target,
                list(command.accounts),
                target=command.target,
                seq=job["target_seq"],
                command_id=command.command_id,
                now=now(),
            )
            if applied.write:
                result = await self.resources.collection.bulk_write([write_op(target, applied)])
                if result.matched_count == 0:
                    continue  # written by someone else meanwhile: read again
            return await self.jobs.update(
                command.command_id, {"target_written": True, "target_changed": applied.changed}
            )
        raise VersionConflict(command.target)

    async def _fan_out(
        self, command: SetAccountsCommand, job: dict[str, Any]
    ) -> tuple[int | None, list[int]]:
        """Emit every member's update, checkpointing after each flushed page; None when cancelled.

        One streamed cursor over the members, sorted by id: paging with a fresh `$gt` query per page
        would make some stores re-scan every remaining member each time (quadratic in the compartment).
        """
        topic = self.settings.topics.updates
        partitions = sorted(await self.producer.partitions_for(topic))
        if not fans_out(command):
            return 0, []
        before = set(job["accounts_before"])
        page = Page(
            command=command,
            target_seq=job["target_seq"],
            add=list(command.accounts),
            remove=sorted(before - set(command.accounts)),
            emitted=int(job.get("emitted", 0)),
        )
        query: dict[str, Any] = {"members_of": command.target}
        if job.get("cursor"):
            query["_id"] = {"$gt": job["cursor"]}  # resume after the last flushed page
        members = self.resources.collection.find(
            query, {"_id": 1}, sort=[("_id", 1)], batch_size=self.settings.plan_page_size
        )
        async for doc in members:
            if doc["_id"] != command.target:
                page.members.append(doc["_id"])
            if len(page.members) >= self.settings.plan_page_size and not await self._flush(page):
                await members.close()
                return None, []
        if page.members and not await self._flush(page):
            return None, []
        ends = [
            await self.producer.send(
                topic,
                encode(end),
                partition=end.partition,
                key=command.command_id.encode(),
                headers=headers_for(end),
            )
            for end in (EndOfCommand(command_id=command.command_id, partition=p) for p in partitions)
        ]
        await asyncio.gather(*ends)
        return page.emitted, partitions

    async def _flush(self, page: Page) -> bool:
        """Send a page of updates, wait for the broker, then checkpoint; False when the job has ended."""
        topic, command = self.settings.topics.updates, page.command
        updates = [
            MemberUpdate(
                command_id=command.command_id,
                target=command.target,
                target_seq=page.target_seq,
                member=member,
                add=page.add,
                remove=page.remove,
            )
            for member in page.members
        ]
        sends = [
            await self.producer.send(topic, encode(u), key=u.member.encode(), headers=headers_for(u))
            for u in updates
        ]
        await asyncio.gather(*sends)
        page.emitted += len(page.members)
        checkpoint = {"cursor": page.members[-1], "emitted": page.emitted, "status": Status.APPLYING.value}
        page.members = []
        if await self.jobs.update(command.command_id, checkpoint):
            return True
        log.info("fan-out stopped: job ended", command_id=command.command_id, emitted=page.emitted)
        return False

    async def reject(self, record: Record, error: EventError) -> bool:
        """A command whose envelope names a usable command id gets a failed result (and an errored job);
        anything else is for the dead-letter topic."""
        envelope = command_envelope(record.value)
        if envelope is None:
            return False
        command_id: str = envelope["command_id"]
        target = envelope.get("target") if isinstance(envelope.get("target"), str) else None
        version = envelope.get("schema_version")
        reason = (
            f"unsupported schema_version {version!r}; this service reads version 1"
            if version not in (None, 1)
            else str(error)
        )
        await self.jobs.collection.update_one(
            {"_id": command_id},
            {
                "$setOnInsert": {
                    "status": Status.ACCEPTED.value,
                    "target": target,
                    "created_at": now(),
                    "http_status": 400,
                }
            },
            upsert=True,
        )
        await publish(
            self.producer,
            self.settings.topics.results,
            command_id,
            CommandFailed(command_id=command_id, target=target, outcome=operation_outcome("invalid", reason)),
        )
        log.warning("command rejected", command_id=command_id, reason=reason)
        return True

    async def give_up(self, item: Item, error: BaseException | None) -> None:
        """A command that keeps failing ends its job with an error, so no caller waits forever."""
        command = item.event
        if isinstance(error, DuplicateCommandId):
            return  # the job belongs to the first command with this id: leave it alone
        await self._fail(command, 500, "exception", f"the command could not be processed: {error!r}")

    async def _fail(self, command: SetAccountsCommand, status: int, code: str, diagnostics: str) -> None:
        outcome = operation_outcome(code, diagnostics)
        await self.jobs.update(command.command_id, {"http_status": status})
        await publish(
            self.producer,
            self.settings.topics.results,
            command.command_id,
            CommandFailed(command_id=command.command_id, target=command.target, outcome=outcome),
        )
        log.warning("command failed", command_id=command.command_id, reason=diagnostics)
