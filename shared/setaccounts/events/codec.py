"""JSON on the wire, with the event type and schema version repeated in headers for routing and replay."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from setaccounts.events.base import COMMAND_ID_PATTERN
from setaccounts.events.commands import CommandEvent
from setaccounts.events.results import ResultEvent
from setaccounts.events.updates import UpdateEvent

CONTENT_TYPE = b"application/json"
_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "commands": TypeAdapter(CommandEvent),
    "updates": TypeAdapter(UpdateEvent),
    "results": TypeAdapter(ResultEvent),
}


class EventError(ValueError):
    """A record that is not a valid event for its topic: never retriable, so it is dead-lettered."""

    retriable = False


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json().encode()


def headers_for(event: BaseModel) -> list[tuple[str, bytes]]:
    return [
        ("event-type", str(getattr(event, "type", type(event).__name__)).encode()),
        ("schema-version", str(getattr(event, "schema_version", 1)).encode()),
        ("content-type", CONTENT_TYPE),
    ]


def decode(kind: str, value: bytes | None) -> Any:
    """Parse a record of the `kind` topic ("commands", "updates", "results") or raise EventError."""
    if value is None:
        raise EventError("record has no value")
    try:
        return _ADAPTERS[kind].validate_json(value)
    except ValidationError as exc:
        raise EventError(_describe(exc)) from exc


def _describe(exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()[:10]]
    return "invalid event: " + "; ".join(parts)


_COMMAND_ID = re.compile(COMMAND_ID_PATTERN)


def command_envelope(value: bytes | None) -> dict[str, Any] | None:
    """The JSON object of a record that is not a valid event but still names a usable command id.

    Such a command is answered with a failed result; anything without a usable id is dead-lettered.
    """
    try:
        envelope = json.loads(value or b"")
    except ValueError:
        return None
    command_id = envelope.get("command_id") if isinstance(envelope, dict) else None
    if not isinstance(command_id, str) or not _COMMAND_ID.match(command_id):
        return None
    found: dict[str, Any] = envelope
    return found
