"""Export the event contracts: one JSON Schema per event type plus an AsyncAPI 3.0 document.

`python -m setaccounts.events.export docs/events` (`make contracts`) writes them; a snapshot test compares a
fresh export with the committed files, so every contract change shows up as a reviewable diff. Output is
deterministic (sorted keys, fixed indentation) so the same models always give the same bytes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from setaccounts.events.channels import CHANNELS, EVENT_TYPES, OPERATIONS, Channel
from setaccounts.events.codec import CONTENT_TYPE

ASYNCAPI_FILE = "asyncapi.yaml"
KAFKA_BINDING_VERSION = "0.5.0"


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
        "traceparent": {
            "type": "string",
            "description": "Optional W3C trace context (https://www.w3.org/TR/trace-context/): the span "
            "that published the record. Set it on a command to have its work join your trace; the "
            "services set it on every record they publish while tracing is on.",
        },
        "tracestate": {"type": "string", "description": "Optional W3C trace state, with `traceparent`."},
    }
    optional = {"traceparent", "tracestate"}
    if event is not None:
        properties["event-type"] = {**properties["event-type"], "const": event_type(event)}
        version = str(event.model_fields["schema_version"].default)
        properties["schema-version"] = {**properties["schema-version"], "const": version}
        return {"type": "object", "properties": properties, "required": sorted(properties.keys() - optional)}
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
    for op in OPERATIONS:
        name = op.channel.name
        names = [e.__name__ for e in op.events] or list(channels[name]["messages"])
        operations[op.id] = {
            "action": op.action,
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": op.role,
            "messages": [{"$ref": f"#/channels/{name}/messages/{n}"} for n in names],
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
