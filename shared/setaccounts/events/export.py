"""Export the event contracts: one JSON Schema per event type plus an AsyncAPI 3.0 document.

`python -m setaccounts.events.export docs/events` (`make contracts`) writes them; a snapshot test compares a
fresh export with the committed files, so every contract change shows up as a reviewable diff. Output is
deterministic (sorted keys, fixed indentation) so the same models always give the same bytes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from setaccounts.events.codec import CONTENT_TYPE
from setaccounts.events.commands import SetAccountsCommand
from setaccounts.events.results import (
    BatchApplied,
    CancelRequested,
    CommandFailed,
    CommandFinished,
    CommandPlanned,
    PartitionDone,
)
from setaccounts.events.updates import EndOfCommand, MemberUpdate

ASYNCAPI_FILE = "asyncapi.yaml"
KAFKA_BINDING_VERSION = "0.5.0"


@dataclass(frozen=True)
class Channel:
    """One topic: its address without the prefix, what its key is, and the events it carries."""

    name: str
    address: str
    key: str
    description: str
    events: tuple[type[BaseModel], ...]


CHANNELS: tuple[Channel, ...] = (
    Channel(
        "commands",
        "set-accounts.commands",
        "The target reference, e.g. `Patient/123`.",
        "Requests to set a resource's accounts. Keyed by target so commands for one target stay in order.",
        (SetAccountsCommand,),
    ),
    Channel(
        "updates",
        "set-accounts.updates",
        "The member reference for MemberUpdate; the command id for EndOfCommand.",
        "One update per compartment member, plus one end marker per partition and command. "
        "Internal to the propagator.",
        (MemberUpdate, EndOfCommand),
    ),
    Channel(
        "results",
        "set-accounts.results",
        "The command id.",
        "Progress and outcome of every command. Keyed by command id, so all events of one command are "
        "in one partition, in order. Other services wait here for `CommandFinished`.",
        (CommandPlanned, BatchApplied, PartitionDone, CommandFailed, CancelRequested, CommandFinished),
    ),
    Channel(
        "deadletter",
        "set-accounts.deadletter",
        "The key of the original record, unchanged.",
        "Records a consumer could not decode or kept failing on: the original value and headers, plus "
        "`dlq.*` headers saying why and where it came from.",
        (),
    ),
)

EVENT_TYPES: tuple[type[BaseModel], ...] = tuple(e for c in CHANNELS for e in c.events)

# (operation id, action, channel, role that performs it, events it covers; empty = every event of the channel)
OPERATIONS: tuple[tuple[str, str, str, str, tuple[type[BaseModel], ...]], ...] = (
    ("sendCommandFromApi", "send", "commands", "api: the HTTP `$set-accounts` operation", ()),
    (
        "sendCommandFromOtherService",
        "send",
        "commands",
        "other services: publish a command directly (see docs/other-services.md)",
        (),
    ),
    ("receiveCommand", "receive", "commands", "planner", ()),
    ("sendUpdates", "send", "updates", "planner", ()),
    ("receiveUpdates", "receive", "updates", "applier", ()),
    ("sendPlanned", "send", "results", "planner", (CommandPlanned, CommandFailed)),
    ("sendBatchResults", "send", "results", "applier", (BatchApplied, PartitionDone)),
    ("sendCancel", "send", "results", "api: `DELETE` on the job status URL", (CancelRequested,)),
    ("receiveResults", "receive", "results", "aggregator", ()),
    ("sendFinished", "send", "results", "aggregator", (CommandFinished,)),
    (
        "receiveFinished",
        "receive",
        "results",
        "other services and `setaccounts-audit`: wait for the final answer of a command",
        (CommandFinished,),
    ),
    (
        "sendDeadLetter",
        "send",
        "deadletter",
        "planner, applier, aggregator: any record they cannot handle",
        (),
    ),
)


def schema_file(event: type[BaseModel]) -> str:
    return f"{event.__name__}.schema.json"


def event_type(event: type[BaseModel]) -> str:
    """The `event-type` header value, which is also the payload's `type` field."""
    return str(event.model_fields["type"].default)


def _headers_schema(event: type[BaseModel] | None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "event-type": {"type": "string", "description": "The payload's `type`; routes without parsing."},
        "schema-version": {"type": "string", "description": "The payload's `schema_version`, as text."},
        "content-type": {"type": "string", "const": CONTENT_TYPE.decode()},
    }
    if event is not None:
        properties["event-type"] = {**properties["event-type"], "const": event_type(event)}
        version = str(event.model_fields["schema_version"].default)
        properties["schema-version"] = {**properties["schema-version"], "const": version}
        return {"type": "object", "properties": properties, "required": sorted(properties)}
    dlq = {
        "dlq.reason": "Why the record was parked (validation error or the last exception).",
        "dlq.topic": "Topic the record was read from.",
        "dlq.partition": "Its partition, as text.",
        "dlq.offset": "Its offset, as text.",
        "dlq.consumer": "Role that parked it: planner, applier or aggregator.",
    }
    properties.update({k: {"type": "string", "description": v} for k, v in dlq.items()})
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(dlq),
        "description": "The original headers (if any) followed by the dead-letter headers.",
    }


def _message(event: type[BaseModel], channel: Channel) -> dict[str, Any]:
    return {
        "name": event.__name__,
        "title": event.__name__,
        "summary": (event.__doc__ or event.__name__).strip().splitlines()[0],
        "contentType": CONTENT_TYPE.decode(),
        "headers": _headers_schema(event),
        "payload": {"$ref": f"./{schema_file(event)}"},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": channel.key},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _dead_letter_message(channel: Channel) -> dict[str, Any]:
    return {
        "name": "DeadLetter",
        "title": "DeadLetter",
        "summary": "A record some consumer could not handle, parked with the reason.",
        "headers": _headers_schema(None),
        "payload": {"description": "The original record value, byte for byte (it may not be valid JSON)."},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": channel.key},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _payload_schema(channel: Channel) -> dict[str, Any]:
    """What a consumer of the whole topic decodes: one schema, or `oneOf` discriminated by `type`."""
    refs = [{"$ref": f"./{schema_file(e)}"} for e in channel.events]
    if len(refs) == 1:
        return refs[0]
    return {
        "oneOf": refs,
        "discriminator": "type",
        "description": f"Any event of the {channel.name} topic; the `type` field (and the `event-type` "
        "header) says which.",
    }


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document for the four topics, their messages and who sends or receives them."""
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for channel in CHANNELS:
        if channel.events:
            for event in channel.events:
                messages[event.__name__] = _message(event, channel)
            schemas[f"{channel.name.capitalize()}Payload"] = _payload_schema(channel)
            names = [e.__name__ for e in channel.events]
        else:
            messages["DeadLetter"] = _dead_letter_message(channel)
            names = ["DeadLetter"]
        channels[channel.name] = {
            "address": channel.address,
            "title": channel.name,
            "description": f"{channel.description} The real topic name is `${{SETACCOUNTS_TOPIC_PREFIX}}"
            f"{channel.address}`: every topic name starts with the configurable prefix "
            "(empty by default).",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
            "bindings": {"kafka": {"topic": channel.address, "bindingVersion": KAFKA_BINDING_VERSION}},
        }
    operations: dict[str, Any] = {}
    by_name = {c.name: c for c in CHANNELS}
    for op_id, action, channel_name, role, events in OPERATIONS:
        channel = by_name[channel_name]
        names = [e.__name__ for e in events] or list(channels[channel_name]["messages"])
        operations[op_id] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel.name}"},
            "summary": role,
            "messages": [{"$ref": f"#/channels/{channel.name}/messages/{n}"} for n in names],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "FHIR $set-accounts events",
            "version": "1.0.0",
            "description": "Kafka contract of the `$set-accounts` service. Payloads are JSON; every record "
            "carries the headers `event-type`, `schema-version` and `content-type`. Payload "
            "schemas are the JSON Schema files next to this document (generated from the "
            "pydantic models with `make contracts`).",
        },
        "defaultContentType": CONTENT_TYPE.decode(),
        "servers": {
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "Set by `KAFKA_BOOTSTRAP_SERVERS`.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render_schema(event: type[BaseModel]) -> str:
    return json.dumps(event.model_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_asyncapi() -> str:
    import yaml  # type: ignore[import-untyped]  # dev dependency: only `make contracts` and the tests export

    return str(
        yaml.safe_dump(asyncapi(), sort_keys=True, allow_unicode=True, width=110, default_flow_style=False)
    )


def export(directory: Path) -> list[Path]:
    """Write every contract file into `directory` (created if missing); returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {schema_file(e): render_schema(e) for e in EVENT_TYPES}
    files[ASYNCAPI_FILE] = render_asyncapi()
    written = []
    for name, text in sorted(files.items()):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m setaccounts.events.export DIRECTORY", file=sys.stderr)
        return 2
    for path in export(Path(args[0])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
