"""Event contracts: one versioned, frozen pydantic model per event type, the channels that carry them, and
one codec for Kafka."""

from setaccounts.events.base import Event, EventError
from setaccounts.events.channels import (
    CHANNELS,
    COMMANDS,
    DEADLETTER,
    RESULTS,
    UPDATES,
    Channel,
    channel,
)
from setaccounts.events.codec import command_envelope, encode, headers_for
from setaccounts.events.commands import (
    CommandEvent,
    Mode,
    SetAccountsCommand,
    accounts_after,
    member_changes,
)
from setaccounts.events.results import (
    BatchApplied,
    CancelRequested,
    CommandFailed,
    CommandFinished,
    CommandPlanned,
    Effect,
    PartitionDone,
    ResultEvent,
)
from setaccounts.events.updates import EndOfCommand, MemberUpdate, UpdateEvent

__all__ = [
    "CHANNELS",
    "COMMANDS",
    "DEADLETTER",
    "RESULTS",
    "UPDATES",
    "BatchApplied",
    "CancelRequested",
    "Channel",
    "CommandEvent",
    "CommandFailed",
    "CommandFinished",
    "CommandPlanned",
    "Effect",
    "EndOfCommand",
    "Event",
    "EventError",
    "MemberUpdate",
    "Mode",
    "PartitionDone",
    "ResultEvent",
    "SetAccountsCommand",
    "UpdateEvent",
    "accounts_after",
    "channel",
    "command_envelope",
    "encode",
    "headers_for",
    "member_changes",
]
