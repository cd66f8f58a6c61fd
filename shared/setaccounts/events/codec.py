"""JSON on the wire, with the event type and schema version repeated in headers for routing and replay."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

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
