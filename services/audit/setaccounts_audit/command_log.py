"""Fold the commands and results topics into one record per command: the audit log's data.

Pure (no I/O), so the rules are unit-tested without engines. The two topics can be folded in any order:
results are joined to their command only when the records are built.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from setaccounts.events import (
    CancelRequested,
    CommandFailed,
    CommandFinished,
    CommandPlanned,
    Mode,
    SetAccountsCommand,
)

RecordStatus = Literal["pending", "completed", "error", "cancelled"]
Position = tuple[int, int]  # (partition, offset) on the commands topic


@dataclass(frozen=True)
class CommandRecord:
    """Everything the log knows about one command, as the topics tell it."""

    command_id: str
    target: str
    accounts_after: list[str] | None  # None: an add or remove not planned yet (its result is not known)
    propagate: bool
    requested_at: datetime
    requested_by: str | None
    redrive_of: str | None
    position: Position | None  # None when only the results topic knows the command
    accounts_before: list[str] | None = None  # None until planned (known from CommandPlanned)
    expected: int | None = None  # member updates emitted by the planner
    status: RecordStatus = "pending"
    resources_updated: int | None = None
    resources_changed: int | None = None
    diagnostics: str | None = None
    cancel_requested_by: str | None = None
    copies: int = 1  # the same command published more than once (same id and content)
    rejected: bool = False  # invalid content: nothing was applied and nothing can be re-applied
    mode: Mode = "set"  # set | add | remove ($set-accounts, $add-accounts, $remove-accounts)
    accounts: list[str] = field(default_factory=list)  # the command's given accounts
    trace_id: str | None = None  # the trace the command was published in (its `traceparent` header)

    @property
    def log_order(self) -> tuple[bool, Position, datetime]:
        """Order among the target's commands: one target's commands share one partition, so its offsets."""
        return (self.position is None, self.position or (0, 0), self.requested_at)


@dataclass
class _Results:
    planned: CommandPlanned | None = None
    finished: CommandFinished | None = None
    failed: CommandFailed | None = None
    cancel: CancelRequested | None = None


@dataclass(frozen=True)
class Rejected:
    """A command record that failed validation but named its command id: the planner answered it with a
    failed result, so the log lists it (as an error) instead of dropping it."""

    command_id: str
    target: str | None
    requested_at: datetime  # from the payload when it has a readable one, else the broker's timestamp
    requested_by: str | None
    position: Position


@dataclass
class CommandLog:
    """Accumulates events from both topics; `records()` joins them. Bounded by the number of commands."""

    commands: dict[str, tuple[SetAccountsCommand, Position]] = field(default_factory=dict)
    traces: dict[str, str] = field(default_factory=dict)
    copies: dict[str, int] = field(default_factory=dict)
    conflicting: list[tuple[str, Position]] = field(default_factory=list)
    results: dict[str, _Results] = field(default_factory=dict)
    rejected: dict[str, Rejected] = field(default_factory=dict)

    def add_command(
        self, command: SetAccountsCommand, position: Position, trace_id: str | None = None
    ) -> None:
        """The first publication of an id wins, as in the planner; a reuse with other content is noted."""
        known = self.commands.get(command.command_id)
        if known is None:
            self.commands[command.command_id] = (command, position)
            self.copies[command.command_id] = 1
            if trace_id is not None:
                self.traces[command.command_id] = trace_id
        elif _content(known[0]) == _content(command):
            self.copies[command.command_id] += 1
        else:
            self.conflicting.append((command.command_id, position))

    def add_rejected(self, rejected: Rejected) -> None:
        self.rejected.setdefault(rejected.command_id, rejected)

    def add_result(self, event: Any) -> None:
        """Keep what the log shows; per-batch events are the aggregator's business (its counts are final)."""
        if not isinstance(event, CommandPlanned | CommandFinished | CommandFailed | CancelRequested):
            return
        state = self.results.setdefault(event.command_id, _Results())
        if isinstance(event, CommandPlanned):
            state.planned = state.planned or event  # a re-plan repeats the same facts
        elif isinstance(event, CommandFinished):
            state.finished = event  # a re-publish after a crash carries the same answer
        elif isinstance(event, CommandFailed):
            state.failed = state.failed or event
        else:
            state.cancel = state.cancel or event

    def records(self) -> list[CommandRecord]:
        """One record per command, in event-time order (`requested_at`, then position)."""
        ids = self.commands.keys() | self.results.keys() | self.rejected.keys()
        built = [self._record(cid) for cid in ids]
        return sorted(
            (r for r in built if r is not None), key=lambda r: (r.requested_at, r.log_order[1], r.command_id)
        )

    def _record(self, command_id: str) -> CommandRecord | None:
        state = self.results.get(command_id, _Results())
        known = self.commands.get(command_id)
        if known is not None:
            command, position = known
            record = CommandRecord(
                command_id=command_id,
                target=command.target,
                accounts_after=list(command.accounts) if command.mode == "set" else None,
                propagate=command.propagate,
                requested_at=_utc(command.requested_at),
                requested_by=command.requested_by,
                redrive_of=command.redrive_of,
                position=position,
                copies=self.copies[command_id],
                mode=command.mode,
                accounts=list(command.accounts),
                trace_id=self.traces.get(command_id),
            )
        elif state.planned is not None:  # the command itself is gone (retention): the plan repeats it
            p = state.planned
            record = CommandRecord(
                command_id=command_id,
                target=p.target,
                accounts_after=list(p.accounts_after),
                propagate=p.propagate,
                requested_at=_utc(p.requested_at),
                requested_by=p.requested_by,
                redrive_of=p.redrive_of,
                position=None,
                mode=p.mode,
                accounts=list(p.accounts_after if p.accounts is None else p.accounts),
            )
        elif command_id in self.rejected:
            r = self.rejected[command_id]
            record = CommandRecord(
                command_id=command_id,
                target=r.target or "?",
                accounts_after=[],
                propagate=False,
                requested_at=_utc(r.requested_at),
                requested_by=r.requested_by,
                redrive_of=None,
                position=r.position,
                rejected=True,
            )
        else:
            return None  # results of a command the log cannot describe
        return _with_results(record, state)


def _utc(moment: datetime) -> datetime:
    """Another service may send a time without an offset: read it as UTC so times stay comparable."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _content(command: SetAccountsCommand) -> tuple[str, tuple[str, ...], str, bool]:
    return command.target, tuple(command.accounts), command.mode, command.propagate


def _with_results(record: CommandRecord, state: _Results) -> CommandRecord:
    changes: dict[str, Any] = {}
    if state.planned is not None:
        planned = state.planned
        changes.update(
            accounts_before=list(planned.accounts_before),
            accounts_after=list(planned.accounts_after),  # what the planner computed (add, remove)
            expected=planned.expected,
        )
    if state.cancel is not None:
        changes["cancel_requested_by"] = state.cancel.requested_by or "unknown"
    finished = state.finished
    if finished is not None:
        changes.update(
            status=finished.status,
            resources_updated=finished.resources_updated,
            resources_changed=finished.resources_changed,
        )
        outcome = finished.outcome or (state.failed.outcome if state.failed else None)
        if finished.status == "error":
            changes["diagnostics"] = diagnostics_of(outcome)
    return replace(record, **changes)


def diagnostics_of(outcome: dict[str, Any] | None) -> str:
    """The OperationOutcome's issue diagnostics (or codes), joined: what a reader needs to see."""
    issues = (outcome or {}).get("issue") or []
    texts = [str(i.get("diagnostics") or i.get("code") or "") for i in issues if isinstance(i, dict)]
    return "; ".join(t for t in texts if t) or "no diagnostics"


def fold_log(
    commands: Iterable[tuple[SetAccountsCommand, Position]], results: Iterable[Any]
) -> list[CommandRecord]:
    """Convenience for tests and small logs: fold both streams and return the records."""
    log = CommandLog()
    for command, position in commands:
        log.add_command(command, position)
    for event in results:
        log.add_result(event)
    return log.records()


def by_target(records: Sequence[CommandRecord]) -> dict[str, list[CommandRecord]]:
    """Each target's commands in log order (the order the planner applied them in); rejected records
    are left out: they never ran, so they neither set a target nor make an earlier command stale."""
    grouped: dict[str, list[CommandRecord]] = {}
    for record in sorted((r for r in records if not r.rejected), key=lambda r: r.log_order):
        grouped.setdefault(record.target, []).append(record)
    return grouped


def since(records: Sequence[CommandRecord], moment: datetime | None) -> list[CommandRecord]:
    """Commands requested at or after `moment` (event time from the payload, never broker time)."""
    return [r for r in records if moment is None or r.requested_at >= moment]
