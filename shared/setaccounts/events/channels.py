"""Every Kafka channel declared once: its topic, its key rule, the events it carries, and who sends and
receives them. Topic names, decoding, the consume loops' inputs and the AsyncAPI document derive from here.

Each event says its own key (`Event.key`); the channel's `key` text documents that rule for other services.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import TypeAdapter, ValidationError

from setaccounts.events.base import Event, EventError
from setaccounts.events.commands import CommandEvent, SetAccountsCommand
from setaccounts.events.results import (
    BatchApplied,
    CancelRequested,
    CommandFailed,
    CommandFinished,
    CommandPlanned,
    PartitionDone,
    ResultEvent,
)
from setaccounts.events.updates import EndOfCommand, MemberUpdate, UpdateEvent


@dataclass(frozen=True)
class Channel:
    """One topic: its name, its address without the configurable prefix, its key and its events."""

    name: str
    address: str
    key: str
    description: str
    events: tuple[type[Event], ...]
    union: Any = field(default=None, repr=False)  # the discriminated union a consumer decodes

    @cached_property
    def _adapter(self) -> TypeAdapter[Any]:
        return TypeAdapter(self.union)

    def decode(self, value: bytes | None) -> Any:
        """Parse a record of this channel into its event, or raise EventError."""
        if value is None:
            raise EventError("record has no value")
        try:
            return self._adapter.validate_json(value)
        except ValidationError as exc:
            raise EventError(_describe(exc)) from exc


@dataclass(frozen=True)
class Operation:
    """Who sends or receives which events of a channel (empty `events`: every event of the channel)."""

    id: str
    action: str  # "send" or "receive"
    channel: Channel
    role: str
    events: tuple[type[Event], ...] = ()


COMMANDS = Channel(
    "commands",
    "set-accounts.commands",
    "The target reference, e.g. `Patient/123`.",
    "Requests to set a resource's accounts. Keyed by target so commands for one target stay in order.",
    (SetAccountsCommand,),
    CommandEvent,
)
UPDATES = Channel(
    "updates",
    "set-accounts.updates",
    "The member reference for MemberUpdate; the command id for EndOfCommand.",
    "One update per compartment member, plus one end marker per partition and command. "
    "Internal to the propagator.",
    (MemberUpdate, EndOfCommand),
    UpdateEvent,
)
RESULTS = Channel(
    "results",
    "set-accounts.results",
    "The command id.",
    "Progress and outcome of every command. Keyed by command id, so all events of one command are "
    "in one partition, in order. Other services wait here for `CommandFinished`.",
    (CommandPlanned, BatchApplied, PartitionDone, CommandFailed, CancelRequested, CommandFinished),
    ResultEvent,
)
DEADLETTER = Channel(
    "deadletter",
    "set-accounts.deadletter",
    "The key of the original record, unchanged.",
    "Records a consumer could not decode or kept failing on: the original value and headers, plus "
    "`dlq.*` headers saying why and where it came from.",
    (),
)
CHANNELS: tuple[Channel, ...] = (COMMANDS, UPDATES, RESULTS, DEADLETTER)

OPERATIONS: tuple[Operation, ...] = (
    Operation("sendCommandFromApi", "send", COMMANDS, "api: the HTTP `$set-accounts` operation"),
    Operation(
        "sendCommandFromOtherService",
        "send",
        COMMANDS,
        "other services: publish a command directly (see docs/other-services.md)",
    ),
    Operation("receiveCommand", "receive", COMMANDS, "planner"),
    Operation("sendUpdates", "send", UPDATES, "planner"),
    Operation("receiveUpdates", "receive", UPDATES, "applier"),
    Operation("sendPlanned", "send", RESULTS, "planner", (CommandPlanned, CommandFailed)),
    Operation("sendBatchResults", "send", RESULTS, "applier", (BatchApplied, PartitionDone)),
    Operation("sendCancel", "send", RESULTS, "api: `DELETE` on the job status URL", (CancelRequested,)),
    Operation("receiveResults", "receive", RESULTS, "aggregator"),
    Operation("sendFinished", "send", RESULTS, "aggregator", (CommandFinished,)),
    Operation(
        "receiveFinished",
        "receive",
        RESULTS,
        "other services and `setaccounts-audit`: wait for the final answer of a command",
        (CommandFinished,),
    ),
    Operation(
        "sendDeadLetter", "send", DEADLETTER, "planner, applier, aggregator: any record they cannot handle"
    ),
)

EVENT_TYPES: tuple[type[Event], ...] = tuple(e for c in CHANNELS for e in c.events)


def channel(name: str) -> Channel:
    """The channel called `name` ("commands", "updates", "results", "deadletter")."""
    return next(c for c in CHANNELS if c.name == name)


def _describe(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:10]]
    return "invalid event: " + "; ".join(parts)
