"""The commands topic (key: target reference): requests to set a resource's accounts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from setaccounts.events.base import CommandId, Event, Reference

Mode = Literal["set", "add", "remove"]


def accounts_after(mode: Mode, before: Sequence[str], given: Sequence[str]) -> list[str]:
    """The target's accounts after a command: `set` replaces them, `add` appends the new ones (order
    kept), `remove` drops the given ones."""
    if mode == "set":
        return list(dict.fromkeys(given))
    if mode == "add":
        return list(dict.fromkeys([*before, *given]))
    dropped = set(given)
    return [a for a in dict.fromkeys(before) if a not in dropped]


def member_changes(mode: Mode, before: Sequence[str], given: Sequence[str]) -> tuple[list[str], list[str]]:
    """What every member gains and loses (the latter unless another patient of the member holds it):
    `set` gives all the target's new accounts and takes those the target gave up; `add` gives the given
    accounts; `remove` takes them."""
    if mode == "set":
        after = accounts_after(mode, before, given)
        return after, sorted(set(before) - set(after))
    if mode == "add":
        return list(dict.fromkeys(given)), []
    return [], sorted(set(given))


class SetAccountsCommand(Event):
    """Set `target`'s `meta.accounts` to `accounts` (or add them, or remove them, by `mode`); with
    `propagate`, also its compartment's members."""

    type: Literal["SetAccounts"] = "SetAccounts"
    schema_version: Literal[1] = 1
    command_id: CommandId
    target: Reference
    accounts: list[Reference] = Field(
        default_factory=list,
        description=(
            "With mode `set`: the target's new accounts, in order (empty clears them). With `add`: the "
            "accounts to add. With `remove`: the accounts to remove."
        ),
    )
    mode: Mode = Field(
        "set",
        description=(
            "`set` ($set-accounts) replaces the target's accounts; `add` ($add-accounts) appends the given "
            "ones; `remove` ($remove-accounts) removes them. Members gain what the target gains and lose "
            "what it loses unless another patient of theirs still holds it. Absent means `set`."
        ),
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
