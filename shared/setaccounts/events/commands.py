"""The commands topic (key: target reference): requests to set a resource's accounts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from setaccounts.events.base import CommandId, Event, Reference


class SetAccountsCommand(Event):
    """Set `target`'s `meta.accounts` to `accounts`; with `propagate`, also its compartment's members."""

    type: Literal["SetAccounts"] = "SetAccounts"
    schema_version: Literal[1] = 1
    command_id: CommandId
    target: Reference
    accounts: list[Reference] = Field(
        default_factory=list, description="The target's new accounts, in order; empty clears them."
    )
    propagate: bool = Field(False, description="Also update every member of the target's compartment.")
    requested_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    requested_by: str | None = Field(None, max_length=256, description="Who asked, for the audit log.")
    redrive_of: CommandId | None = Field(
        None, description="Set when this command re-applies an earlier one (audit re-drive)."
    )

    @property
    def key(self) -> str:
        return self.target

    @field_validator("accounts")
    @classmethod
    def _dedupe_keep_order(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


CommandEvent = Annotated[SetAccountsCommand, Field(discriminator="type")]
