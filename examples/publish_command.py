"""Another service asks for `$set-accounts` over Kafka, without the HTTP API, and waits for the answer.

    KAFKA_BOOTSTRAP_SERVERS=localhost:9092 SETACCOUNTS_TOPIC_PREFIX= \\
        python examples/publish_command.py Patient/123 Organization/acme Organization/beta --propagate

With `make run` going in this checkout no variables are needed: the addresses (and the embedded broker's
SASL credentials) are read from `.run/stack.json`, which `make run` writes while it runs. `--mode add` or
`--mode remove` asks for what `$add-accounts` or `$remove-accounts` do.

A secured cluster: `SETACCOUNTS_KAFKA_SECURITY_PROTOCOL` (`SASL_SSL`, `SASL_PLAINTEXT`, `SSL`),
`SETACCOUNTS_KAFKA_SASL_MECHANISM` (default `SCRAM-SHA-512`), `SETACCOUNTS_KAFKA_SASL_USERNAME`,
`SETACCOUNTS_KAFKA_SASL_PASSWORD` and `SETACCOUNTS_KAFKA_SSL_CAFILE`, as the services read them; the flags
`--security-protocol`, `--sasl-mechanism` and `--sasl-username` override them (the password is taken from
the environment only: a command line is visible to every user of the machine).

What it shows:
1. The command goes to `<prefix>set-accounts.commands`, keyed by the target reference (so commands for one
   target stay in order), with the headers `event-type`, `schema-version` and `content-type`.
2. The answer is the `CommandFinished` event for the command id on `<prefix>set-accounts.results` (keyed
   by command id). This example reads the results topic with its own consumer and no consumer group,
   starting at the end offsets taken *before* publishing, so it cannot miss the answer and never disturbs
   the propagator's groups.
3. A command that cannot run (unknown or deleted target) is answered too: `status` is `error` and
   `outcome` is a FHIR OperationOutcome. A malformed record is never answered: it goes to the
   dead-letter topic with the reason in the `dlq.reason` header.

It imports only `setaccounts.events`, the contract package, for the pydantic models. A service in another
language uses the JSON Schemas in `docs/events/` (and `docs/events/asyncapi.yaml`) instead: build the same
JSON, send it with the same key and headers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.helpers import create_ssl_context

from setaccounts.events import CommandFinished, Mode, SetAccountsCommand


def running_stack() -> dict[str, str]:
    """The addresses `make run` recorded in this checkout's `.run/stack.json` while it runs (else {})."""
    path = Path(__file__).resolve().parent.parent / ".run" / "stack.json"
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)  # a file left by a stack that was killed names a gone process
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {k: str(v) for k, v in info.items()}


def kafka_options(stack: Mapping[str, str], **given: str | None) -> dict[str, Any]:
    """How to connect: `given` (from flags) over the environment over the running stack's file."""

    def value(name: str, default: str = "") -> str:
        variable = f"SETACCOUNTS_KAFKA_{name.upper()}"
        return given.get(name) or os.environ.get(variable) or stack.get(f"kafka_{name}", default)

    protocol = value("security_protocol", "PLAINTEXT")
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=value("ssl_cafile") or None)
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = value("sasl_mechanism", "SCRAM-SHA-512")
        options["sasl_plain_username"] = value("sasl_username")
        options["sasl_plain_password"] = os.environ.get("SETACCOUNTS_KAFKA_SASL_PASSWORD") or stack.get(
            "kafka_sasl_password", ""
        )
    return options


def topic_names(prefix: str) -> tuple[str, str]:
    """(commands topic, results topic) for a topic prefix, as the service names them."""
    return f"{prefix}set-accounts.commands", f"{prefix}set-accounts.results"


def headers_of(event_type: str, schema_version: int) -> list[tuple[str, bytes]]:
    return [
        ("event-type", event_type.encode()),
        ("schema-version", str(schema_version).encode()),
        ("content-type", b"application/json"),
    ]


async def main(
    target: str,
    accounts: list[str],
    *,
    propagate: bool = False,
    mode: Mode = "set",
    bootstrap_servers: str | None = None,
    connection: Mapping[str, Any] | None = None,
    topic_prefix: str | None = None,
    requested_by: str = "example-service",
    wait_seconds: float = 120.0,
    out: IO[str] | None = None,
) -> CommandFinished:
    """Publish one command and return (and print) its CommandFinished.

    `connection`: aiokafka's security options (default: `kafka_options` from the environment or stack)."""
    stack = running_stack() if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ else {}
    servers = bootstrap_servers or os.environ.get(
        "KAFKA_BOOTSTRAP_SERVERS", stack.get("kafka_bootstrap_servers", "localhost:9092")
    )
    default_prefix = os.environ.get("SETACCOUNTS_TOPIC_PREFIX", stack.get("topic_prefix", ""))
    prefix = default_prefix if topic_prefix is None else topic_prefix
    secured = kafka_options(stack) if connection is None else connection
    commands_topic, results_topic = topic_names(prefix)
    out = out or sys.stdout

    # Validates the references and fills command_id/requested_at; plain JSON works just as well.
    command = SetAccountsCommand(
        command_id=str(uuid.uuid4()),
        target=target,
        accounts=accounts,
        mode=mode,
        propagate=propagate,
        requested_by=requested_by,
    )

    results = AIOKafkaConsumer(bootstrap_servers=servers, group_id=None, enable_auto_commit=False, **secured)
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", **secured)
    await results.start()
    await producer.start()
    try:
        numbers = sorted(await producer.partitions_for(results_topic))
        partitions = [TopicPartition(results_topic, p) for p in numbers]
        results.assign(partitions)
        for tp, offset in (await results.end_offsets(partitions)).items():
            results.seek(tp, offset)  # the answer comes after this point: taken before publishing

        await producer.send_and_wait(
            commands_topic,
            command.model_dump_json().encode(),
            key=command.target.encode(),
            headers=headers_of(command.type, command.schema_version),
        )
        print(f"published {command.command_id}: {target} {mode} {accounts} (propagate={propagate})", file=out)

        finished = await _wait_for_finish(results, command.command_id, wait_seconds)
    finally:
        await producer.stop()
        await results.stop()

    print(
        f"status={finished.status} resourcesUpdated={finished.resources_updated} "
        f"resourcesChanged={finished.resources_changed}",
        file=out,
    )
    if finished.outcome:
        print(f"outcome={finished.outcome}", file=out)
    return finished


async def _wait_for_finish(
    results: AIOKafkaConsumer, command_id: str, wait_seconds: float
) -> CommandFinished:
    """Skip other commands' events (key = command id) and progress events; stop at our CommandFinished."""
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        for records in (await results.getmany(timeout_ms=500)).values():
            for record in records:
                event_type = dict(record.headers or ()).get("event-type")
                if record.key == command_id.encode() and event_type == b"CommandFinished":
                    return CommandFinished.model_validate_json(record.value or b"")
    raise TimeoutError(f"no answer for command {command_id} within {wait_seconds:.0f}s")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("target", help="The resource whose accounts to set, e.g. Patient/123.")
    parser.add_argument("accounts", nargs="*", help="Its new accounts, e.g. Organization/acme (none clears).")
    parser.add_argument("--propagate", action="store_true", help="Also update its compartment's members.")
    parser.add_argument(
        "--mode", choices=("set", "add", "remove"), default="set", help="Set (default), add or remove them."
    )
    parser.add_argument("--security-protocol", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    parser.add_argument("--sasl-mechanism", choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    parser.add_argument("--sasl-username", help="The password comes from SETACCOUNTS_KAFKA_SASL_PASSWORD.")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _arguments(None)
    stack = running_stack() if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ else {}
    flags = {
        "security_protocol": args.security_protocol,
        "sasl_mechanism": args.sasl_mechanism,
        "sasl_username": args.sasl_username,
    }
    try:
        answer = asyncio.run(
            main(
                args.target,
                args.accounts,
                propagate=args.propagate,
                mode=args.mode,
                connection=kafka_options(stack, **flags),
            )
        )
    except KafkaConnectionError as exc:
        sys.exit(
            f"cannot reach Kafka ({exc}). Start the stack with `make run` in this checkout (found through "
            ".run/stack.json while it runs), or set KAFKA_BOOTSTRAP_SERVERS to your brokers."
        )
    sys.exit(0 if answer.status == "completed" else 1)
