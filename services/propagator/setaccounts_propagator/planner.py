"""Planner (command → fan-out): sets the target's accounts (computed once per job from the accounts it held
before and the command's mode), then streams the target's compartment members
from MongoDB and emits one update per member, keyed by member so each member's updates stay in order.

Re-consuming a command resumes from the job's checkpoint; the members' marks make re-emitted updates
harmless and the aggregator's per-partition watermarks keep them out of the counts.

The consume loop runs several commands at once, one at a time per target, and each fan-out emits its
updates in pieces only as fast as the applier applies them (`pacing`), so a small command's few updates
never queue behind a large one's whole compartment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from setaccounts.events import (
    RESULTS,
    UPDATES,
    CommandFailed,
    CommandPlanned,
    Effect,
    EndOfCommand,
    EventError,
    SetAccountsCommand,
    accounts_after,
    command_envelope,
    member_changes,
)
from setaccounts.events.updates import MemberUpdateTemplate
from setaccounts.failures import PermanentFailure
from setaccounts.fhir.compartments import compartment_owner_types
from setaccounts.fhir.outcomes import operation_outcome
from setaccounts.jobs import Job
from setaccounts.store.meta import accounts_of
from setaccounts.store.propagation import Application
from setaccounts.telemetry import serving, trace_id_of
from setaccounts_propagator.pacing import FanOutPace, Lead
from setaccounts_propagator.ports import Jobs, Propagates, Publisher, Resources
from setaccounts_propagator.role import Item, Record, RoleHandler

log = structlog.get_logger(__name__)


@dataclass
class PlanPage:
    """The fan-out's running state: updates waiting to be sent, and how many were sent before."""

    command: SetAccountsCommand
    updates: MemberUpdateTemplate  # the command's update, encoded once for every member
    emitted: int
    pace: FanOutPace
    members: list[str] = field(default_factory=list)


class DuplicateCommandId(PermanentFailure):
    """A command id was reused for different content: refused, never retried."""


def fans_out(command: SetAccountsCommand) -> bool:
    """Only a propagating command on a compartment owner (Patient, Encounter, …) has members to update."""
    return command.propagate and command.target.split("/", 1)[0] in compartment_owner_types()


@dataclass
class Planner(RoleHandler):
    jobs: Jobs
    resources: Resources
    propagation: Propagates
    publisher: Publisher
    page_size: int  # members read per page, and checkpointed after each
    lead_seconds: float = 0.5  # how far a fan-out runs ahead of the applier (`pacing.Lead`)
    least_lead: int = 50
    most_lead: int = 4000

    async def __call__(self, items: Sequence[Item]) -> None:
        for item in items:  # the loop hands over one at a time; a target's commands strictly in order
            with serving(item.event.command_id):
                await self.plan(item.event)

    async def plan(self, command: SetAccountsCommand) -> None:
        job = await self.jobs.ensure(command, trace_id=trace_id_of())
        if not job.same_command(command):
            raise DuplicateCommandId(f"command id {command.command_id} was already used for another command")
        if job.finished:
            log.info("command already finished", command_id=command.command_id, status=job.status)
            return
        if not job.planned:
            prepared = await self._prepare(command, job)
            if prepared is None or not await self._write_target(command, prepared):
                return
            planned = await self._fan_out(command, prepared)
            if planned is None:
                return  # cancelled: the aggregator answers for it
            job = await self.jobs.finish_plan(command.command_id, *planned) or prepared
        assert job.target_seq is not None
        await self.publisher.publish(
            RESULTS,
            CommandPlanned(
                command_id=command.command_id,
                target=command.target,
                target_seq=job.target_seq,
                accounts_before=job.accounts_before,
                accounts_after=accounts_after(command.mode, job.accounts_before, command.accounts),
                mode=command.mode,
                accounts=list(command.accounts),
                propagate=command.propagate,
                target_changed=job.target_changed,
                expected=job.expected or 0,
                partitions=job.partitions,
                requested_at=command.requested_at,
                requested_by=command.requested_by,
                redrive_of=command.redrive_of,
            ),
        )
        log.info(
            "command planned", command_id=command.command_id, target=command.target, expected=job.expected
        )

    async def _prepare(self, command: SetAccountsCommand, job: Job) -> Job | None:
        """Check the target and record what it held before; the first run fixes these for every re-run."""
        if job.target_seq is not None:
            return job
        target = await self.resources.get(command.target)
        if target is None or target.get("deleted"):
            gone = "was deleted" if target is not None else "does not exist"
            await self._fail(
                command, 410 if target is not None else 404, "not-found", f"target {command.target} {gone}"
            )
            return None
        seq = await self.jobs.next_seq(command.target)
        members = await self.resources.count_members(command.target) if fans_out(command) else 0
        return await self.jobs.start_plan(command.command_id, seq, accounts_of(target["resource"]), members)

    async def _write_target(self, command: SetAccountsCommand, job: Job) -> bool:
        assert job.target_seq is not None
        after = accounts_after(command.mode, job.accounts_before, command.accounts)
        application = Application(
            command.target, command.target, job.target_seq, command.command_id, after, exact=True
        )
        [outcome] = await self.propagation.apply([application])
        if outcome == Effect.GONE:
            await self._fail(command, 410, "not-found", f"target {command.target} was deleted")
            return False
        return await self.jobs.mark_target_written(command.command_id, outcome == Effect.CHANGED)

    async def _fan_out(self, command: SetAccountsCommand, job: Job) -> tuple[int, list[int]] | None:
        """Emit every member's update, checkpointing after each flushed page; None when cancelled.

        Returns how many updates were emitted and the partitions that received an end marker.
        """
        partitions = await self.publisher.partitions(UPDATES)
        if not fans_out(command):
            return 0, []
        assert job.target_seq is not None
        add, remove = member_changes(command.mode, job.accounts_before, command.accounts)
        template = MemberUpdateTemplate.of(
            command_id=command.command_id,
            target=command.target,
            target_seq=job.target_seq,
            add=add,
            remove=remove,
            partitions=partitions,
        )
        lead = Lead(self.lead_seconds, self.least_lead, self.most_lead)
        pace = FanOutPace(self.jobs, command.command_id, lead)
        page = PlanPage(command=command, updates=template, emitted=job.emitted, pace=pace)
        members = self.resources.stream_members(command.target, after=job.cursor, batch_size=self.page_size)
        async for member in members:
            if member != command.target:
                page.members.append(member)
            if len(page.members) >= self.page_size and not await self._flush(page):
                await members.aclose()
                return None
        if page.members and not await self._flush(page):
            return None
        ends = [EndOfCommand(command_id=command.command_id, partition=p) for p in partitions]
        await self.publisher.publish(UPDATES, *ends)
        return page.emitted, partitions

    async def _flush(self, page: PlanPage) -> bool:
        """Send a page of updates in pieces as the applier makes room, wait for the broker, then checkpoint;
        False when the job has ended."""
        command = page.command
        unsent = page.members
        while unsent:
            room = await page.pace.room(page.emitted)
            if room is None:
                log.info("fan-out stopped: job ended", command_id=command.command_id, emitted=page.emitted)
                return False
            piece, unsent = unsent[:room], unsent[room:]
            await self.publisher.send_encoded(UPDATES, [page.updates.record(member) for member in piece])
            page.emitted += len(piece)
        cursor, page.members = page.members[-1], []
        if await self.jobs.checkpoint(command.command_id, cursor, page.emitted):
            return True
        log.info("fan-out stopped: job ended", command_id=command.command_id, emitted=page.emitted)
        return False

    async def on_invalid(self, record: Record, error: EventError) -> bool:
        """A command whose envelope names a usable command id gets a failed result (and an errored job);
        anything else, or an id that belongs to another command's job, is for the dead-letter topic."""
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
        if not await self.jobs.reject(command_id, target):
            log.warning("invalid command reuses a job's id", command_id=command_id, reason=reason)
            return False
        outcome = operation_outcome("invalid", reason)
        await self.publisher.publish(
            RESULTS, CommandFailed(command_id=command_id, target=target, outcome=outcome)
        )
        log.warning("command rejected", command_id=command_id, reason=reason)
        return True

    async def give_up(self, item: Item, error: BaseException | None) -> None:
        """A command that keeps failing ends its job with an error, so no caller waits forever."""
        if isinstance(error, DuplicateCommandId):
            return  # the job belongs to the first command with this id: leave it alone
        await self._fail(item.event, 500, "exception", f"the command could not be processed: {error!r}")

    async def _fail(self, command: SetAccountsCommand, status: int, code: str, diagnostics: str) -> None:
        outcome = operation_outcome(code, diagnostics)
        await self.jobs.record_failure(command.command_id, status)
        await self.publisher.publish(
            RESULTS, CommandFailed(command_id=command.command_id, target=command.target, outcome=outcome)
        )
        log.warning("command failed", command_id=command.command_id, reason=diagnostics)
