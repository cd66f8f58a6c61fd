"""The updates topic (key: member reference): one event per member, plus an end marker per partition."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from setaccounts.events.base import CommandId, CommandScoped, Event, Reference


class MemberUpdate(Event):
    """Add `add` to the member's accounts and drop `remove` (unless another patient still holds it)."""

    type: Literal["MemberUpdate"] = "MemberUpdate"
    schema_version: Literal[1] = 1
    command_id: CommandId
    target: Reference
    target_seq: int = Field(ge=1, description="Order of the command among the target's commands.")
    member: Reference
    add: list[Reference] = Field(default_factory=list)
    remove: list[Reference] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return self.member


class EndOfCommand(CommandScoped):
    """Written by the planner to every partition once a command's fan-out is complete."""

    type: Literal["EndOfCommand"] = "EndOfCommand"
    schema_version: Literal[1] = 1
    command_id: CommandId
    partition: int = Field(ge=0)

    @property
    def pinned_partition(self) -> int:
        return self.partition


UpdateEvent = Annotated[MemberUpdate | EndOfCommand, Field(discriminator="type")]
