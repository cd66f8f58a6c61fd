"""Planner (command → fan-out): sets the target's accounts, then streams the target's compartment members
from MongoDB and emits one update per member, keyed by member so each member's updates stay in order.

Re-consuming a command resumes from the job's checkpoint; the applier's marks make re-emitted updates
harmless and the aggregator's per-partition watermarks keep them out of the counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
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


class DuplicateCommandId(ValueError):
    """A command id was reused for different content: refused, never retried."""

    retriable = False


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
            job = await self.jobs.get(command.command_id) or job
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
        if command.propagate and command.target.split("/", 1)[0] in compartment_owner_types():
            members = await self.resources.collection.count_documents(
                {"members_of": command.target, "_id": {"$ne": command.target}}
            )
        await self.jobs.collection.update_one(
            {"_id": command.command_id, "target_seq": {"$exists": False}},
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
        return await self.jobs.get(command.command_id)

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
        """Emit every member's update, checkpointing after each flushed page; None when cancelled."""
        topic = self.settings.topics.updates
        partitions = sorted(await self.producer.partitions_for(topic))
        if not command.propagate or command.target.split("/", 1)[0] not in compartment_owner_types():
            return 0, []
        cursor, emitted = job.get("cursor", ""), int(job.get("emitted", 0))
        before = set(job["accounts_before"])
        add, remove = list(command.accounts), sorted(before - set(command.accounts))
        page_size = self.settings.plan_page_size
        while True:
            page = await self.resources.collection.find(
                {"members_of": command.target, "_id": {"$gt": cursor, "$ne": command.target}},
                {"_id": 1},
                sort=[("_id", 1)],
                limit=page_size,
            ).to_list()
            if not page:
                break
            sends = [
                await self.producer.send(
                    topic, encode(update), key=update.member.encode(), headers=headers_for(update)
                )
                for update in (
                    MemberUpdate(
                        command_id=command.command_id,
                        target=command.target,
                        target_seq=job["target_seq"],
                        member=doc["_id"],
                        add=add,
                        remove=remove,
                    )
                    for doc in page
                )
            ]
            await asyncio.gather(*sends)
            cursor, emitted = page[-1]["_id"], emitted + len(page)
            if not await self.jobs.update(
                command.command_id, {"cursor": cursor, "emitted": emitted, "status": Status.APPLYING.value}
            ):
                log.info("fan-out stopped: job ended", command_id=command.command_id, emitted=emitted)
                return None, []
            if len(page) < page_size:
                break
        ends = [
            await self.producer.send(
                topic,
                encode(EndOfCommand(command_id=command.command_id, partition=p)),
                partition=p,
                key=command.command_id.encode(),
                headers=headers_for(EndOfCommand(command_id=command.command_id, partition=p)),
            )
            for p in partitions
        ]
        await asyncio.gather(*ends)
        return emitted, partitions

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
