"""JSON on the wire, with the event type and schema version repeated in headers for routing and replay."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

from setaccounts.events.base import COMMAND_ID_PATTERN

CONTENT_TYPE = b"application/json"


def encode(event: BaseModel) -> bytes:
    return event.model_dump_json().encode()


def headers_for(event: BaseModel) -> list[tuple[str, bytes]]:
    return [
        ("event-type", str(getattr(event, "type", type(event).__name__)).encode()),
        ("schema-version", str(getattr(event, "schema_version", 1)).encode()),
        ("content-type", CONTENT_TYPE),
    ]


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
