"""The results topic (key: command id): planning, per-batch outcomes, completion and the final answer."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field

from setaccounts.events.base import CommandId, CommandScoped, Reference
from setaccounts.events.commands import Mode
from setaccounts.status import FinalStatus


class Effect(StrEnum):
    """What applying one member update did."""

    CHANGED = "changed"
    UNCHANGED = "unchanged"
    GONE = "gone"  # deleted or missing when applied: not counted as updated
    CANCELLED = "cancelled"  # the job was cancelled before this update was applied


class CommandPlanned(CommandScoped):
    """The planner set the target and emitted every member update (or stopped on cancel)."""

    type: Literal["CommandPlanned"] = "CommandPlanned"
    schema_version: Literal[1] = 1
    command_id: CommandId
    target: Reference
    target_seq: int = Field(ge=1)
    accounts_before: list[Reference]
    accounts_after: list[Reference] = Field(description="The target's accounts the command computed.")
    mode: Mode = Field("set", description="The command's mode (absent: `set`).")
    accounts: list[Reference] | None = Field(
        None, description="The command's given accounts (absent: the same as `accounts_after`)."
    )
    propagate: bool
    target_changed: bool
    expected: int = Field(ge=0, description="Member updates emitted (the target not included).")
    partitions: list[int] = Field(description="Update partitions that received an end marker.")
    requested_at: datetime
    requested_by: str | None = None
    redrive_of: CommandId | None = None


class BatchApplied(CommandScoped):
    """Outcomes of one applied batch for one command, in the partition's order."""

    type: Literal["BatchApplied"] = "BatchApplied"
    schema_version: Literal[1] = 1
    command_id: CommandId
    partition: int = Field(ge=0)
    entries: list[tuple[Reference, Effect]]


class PartitionDone(CommandScoped):
    """Every update of the command in this partition has been applied."""

    type: Literal["PartitionDone"] = "PartitionDone"
    schema_version: Literal[1] = 1
    command_id: CommandId
    partition: int = Field(ge=0)


class CommandFailed(CommandScoped):
    """The command could not run (unknown target, unsupported version…); carries the OperationOutcome."""

    type: Literal["CommandFailed"] = "CommandFailed"
    schema_version: Literal[1] = 1
    command_id: CommandId
    target: str | None = None
    outcome: dict[str, Any]


class CancelRequested(CommandScoped):
    type: Literal["CancelRequested"] = "CancelRequested"
    schema_version: Literal[1] = 1
    command_id: CommandId
    requested_at: datetime
    requested_by: str | None = None


class CommandFinished(CommandScoped):
    """The final answer for a command: what HTTP callers and other services wait for."""

    type: Literal["CommandFinished"] = "CommandFinished"
    schema_version: Literal[1] = 1
    command_id: CommandId
    status: FinalStatus
    resources_updated: int = Field(ge=0, description="Target plus members processed (deleted ones excluded).")
    resources_changed: int = Field(ge=0, description="Resources whose content (and version) changed.")
    outcome: dict[str, Any] | None = Field(None, description="OperationOutcome when status is error.")


ResultEvent = Annotated[
    CommandPlanned | BatchApplied | PartitionDone | CommandFailed | CancelRequested | CommandFinished,
    Field(discriminator="type"),
]
