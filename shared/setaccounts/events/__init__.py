"""Event contracts: one versioned, frozen pydantic model per event type, one envelope codec for Kafka."""

from setaccounts.events.codec import EventError, command_envelope, decode, encode, headers_for
from setaccounts.events.commands import CommandEvent, SetAccountsCommand
from setaccounts.events.results import (
    BatchApplied,
    CancelRequested,
    CommandFailed,
    CommandFinished,
    CommandPlanned,
    Outcome,
    PartitionDone,
    ResultEvent,
)
from setaccounts.events.updates import EndOfCommand, MemberUpdate, UpdateEvent

__all__ = [
    "BatchApplied",
    "CancelRequested",
    "CommandEvent",
    "CommandFailed",
    "CommandFinished",
    "CommandPlanned",
    "EndOfCommand",
    "EventError",
    "MemberUpdate",
    "Outcome",
    "PartitionDone",
    "ResultEvent",
    "SetAccountsCommand",
    "UpdateEvent",
    "command_envelope",
    "decode",
    "encode",
    "headers_for",
]
