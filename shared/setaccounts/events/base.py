"""What every event shares: frozen, strict about unknown fields, and versioned."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

COMMAND_ID_PATTERN = r"^[A-Za-z0-9\-\._:]{1,128}$"
REFERENCE_PATTERN = r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-\.]{1,64}$"


def _known_type(value: str) -> str:
    from setaccounts.fhir.references import RESOURCE_TYPES

    if value.split("/", 1)[0] not in RESOURCE_TYPES:
        raise ValueError(f"unknown resource type in reference {value!r}")
    return value


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


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(
        1, description="Contract version; consumers refuse versions they do not know."
    )
