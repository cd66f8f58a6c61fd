"""What every event shares: frozen, strict about unknown fields, and versioned."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from setaccounts.failures import PermanentFailure
from setaccounts.fhir.references import RESOURCE_TYPES

COMMAND_ID_PATTERN = r"^[A-Za-z0-9\-\._:]{1,128}$"
REFERENCE_PATTERN = r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-\.]{1,64}$"


def _known_type(value: str) -> str:
    if value[: value.index("/")] not in RESOURCE_TYPES:  # the pattern has checked there is a "/"
        raise ValueError(f"unknown resource type in reference {value!r}")
    return value


_REFERENCE = re.compile(REFERENCE_PATTERN)


def is_reference(value: str) -> bool:
    """What `Reference` accepts, checked without building a model (for one field in a loop over many)."""
    return _REFERENCE.fullmatch(value) is not None and value[: value.index("/")] in RESOURCE_TYPES


Reference = Annotated[
    str,
    Field(
        pattern=REFERENCE_PATTERN,
        description="A relative FHIR reference `Type/id`.",
        examples=["Patient/123", "Organization/acme"],
    ),
    AfterValidator(_known_type),
]
CommandId = Annotated[
    str,
    Field(
        pattern=COMMAND_ID_PATTERN,
        description="Identifies one set-accounts command end to end; publishing it twice has one effect.",
        examples=["3f2b9c1e-6d0a-4f55-9a57-1b2f0c8d7e64"],
    ),
]


class EventError(PermanentFailure, ValueError):
    """A record that is not a valid event for its topic: never retried, so it is dead-lettered."""


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(
        1, description="Contract version; consumers refuse versions they do not know."
    )

    @property
    def key(self) -> str:
        """The Kafka key this event is published under (see its channel's key rule)."""
        raise NotImplementedError

    @property
    def pinned_partition(self) -> int | None:
        """The partition this event must go to; None lets the key choose."""
        return None


class CommandScoped(Event):
    """An event about one command, keyed by its command id (so all of them share a partition)."""

    if TYPE_CHECKING:  # each subclass declares the field itself, where its contract lists it
        command_id: str

    @property
    def key(self) -> str:
        return self.command_id
