"""The `setaccounts-audit` commands: async functions taking Settings, and thin typer wrappers around them.

The async functions return the exit code, so tests (already inside an event loop) await them directly;
the typer wrappers only build Settings, run them with `asyncio.run` and exit.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import IO, Annotated, Any

import typer
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from pymongo.errors import PyMongoError

from setaccounts import stack_file
from setaccounts.mongo import make_client
from setaccounts.settings import Settings
from setaccounts_audit.command_log import since as since_filter
from setaccounts_audit.redrive import RedriveRefused, redrive, requester
from setaccounts_audit.render import Format, print_log, print_redrive, print_report
from setaccounts_audit.replay import ReplayStalled, load_log
from setaccounts_audit.verify import verify_store

EXIT_DRIFT = 1
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Audit the set-accounts command log.",
    pretty_exceptions_enable=False,
)


async def audit_log(
    settings: Settings,
    out: IO[str],
    *,
    since: datetime | None = None,
    fmt: Format = Format.TABLE,
    progress: bool | None = None,
) -> int:
    """Print one line per command (requested at or after `since`); never writes anything."""
    loaded = await load_log(settings, progress=progress)
    print_log(since_filter(loaded.log.records(), since), fmt, out, loaded.undecodable)
    return 0


async def audit_verify(
    settings: Settings, out: IO[str], *, limit: int = 1000, progress: bool | None = None
) -> int:
    """Check the store against the log; EXIT_DRIFT when anything differs. Never writes anything."""
    loaded = await load_log(settings, progress=progress)
    client = make_client(settings)
    try:
        report = await verify_store(client[settings.mongodb_database], loaded.log.records(), limit=limit)
    finally:
        await client.close()
    print_report(report, out)
    return 0 if report.clean else EXIT_DRIFT


async def audit_redrive(
    settings: Settings,
    out: IO[str],
    command_id: str,
    *,
    token: str | None,
    force: bool = False,
    wait_seconds: float = 120.0,
) -> int:
    """Publish a re-drive of `command_id` and print its final answer; EXIT_REFUSED when unsafe or when the
    token is not an administrator's (its verified subject is recorded as `requested_by`)."""
    try:
        by = await requester(settings, token)
        command, finished = await redrive(settings, command_id, by=by, force=force, wait_seconds=wait_seconds)
    except RedriveRefused as refused:
        print(f"refused: {refused}", file=sys.stderr)
        return EXIT_REFUSED
    print_redrive(command, finished, out)
    return 0


def parse_since(value: str | None) -> datetime | None:
    """An ISO 8601 instant; without an offset it is taken as UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 date or date-time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _settings(topic_prefix: str | None, database: str | None) -> Settings:
    stack = stack_file.use_running_stack()
    if stack is not None:
        typer.echo(
            f"using the stack `make run` started (kafka {stack.get('kafka_bootstrap_servers')}, "
            f"mongodb {stack.get('mongodb_uri')}; from .run/stack.json)",
            err=True,
        )
    try:
        base = Settings()
    except ValidationError as exc:
        typer.echo(
            f"invalid settings (check the SETACCOUNTS_*, KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI "
            f"environment variables):\n{exc}",
            err=True,
        )
        raise typer.Exit(EXIT_REFUSED) from exc
    overrides = {
        k: v for k, v in {"topic_prefix": topic_prefix, "mongodb_database": database}.items() if v is not None
    }
    return Settings(**{**base.model_dump(), **overrides}) if overrides else base


def _run(settings: Settings, work: Coroutine[Any, Any, int]) -> None:
    """Run one command; unreachable engines end with a message saying what to check, not a traceback."""
    try:
        code = asyncio.run(work)
    except (KafkaError, ReplayStalled, PyMongoError) as exc:
        if stack_file.engines_unset():  # nothing named the servers: most likely nothing is running
            typer.echo(stack_file.HINT, err=True)
            raise typer.Exit(EXIT_UNREACHABLE) from exc
        if isinstance(exc, PyMongoError):
            typer.echo(f"MongoDB problem: {exc}; check MONGODB_URI and that the server is up", err=True)
            raise typer.Exit(EXIT_UNREACHABLE) from exc
        typer.echo(
            f"Kafka problem at {settings.kafka_bootstrap_servers}: {exc!r}; check "
            "KAFKA_BOOTSTRAP_SERVERS, the SETACCOUNTS_KAFKA_SECURITY_PROTOCOL and SASL credentials, "
            "and that the broker is up",
            err=True,
        )
        raise typer.Exit(EXIT_UNREACHABLE) from exc
    except TimeoutError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_UNREACHABLE) from exc
    raise typer.Exit(code)


TopicPrefix = Annotated[str | None, typer.Option("--topic-prefix", help="Override SETACCOUNTS_TOPIC_PREFIX.")]
Database = Annotated[str | None, typer.Option("--database", help="Override SETACCOUNTS_MONGODB_DATABASE.")]


@app.command("log")
def log_command(
    since: Annotated[
        str | None, typer.Option(help="Only commands requested at or after this ISO time.")
    ] = None,
    fmt: Annotated[
        Format, typer.Option("--format", help="table for people, jsonl or csv for scripts.")
    ] = Format.TABLE,
    topic_prefix: TopicPrefix = None,
    database: Database = None,
) -> None:
    """Every command with who, when, accounts before → after, counts and outcome (read-only)."""
    settings = _settings(topic_prefix, database)
    _run(settings, audit_log(settings, sys.stdout, since=parse_since(since), fmt=fmt))


@app.command("verify")
def verify_command(
    limit: Annotated[int, typer.Option(min=1, help="Most drifts listed (all are counted).")] = 1000,
    topic_prefix: TopicPrefix = None,
    database: Database = None,
) -> None:
    """Check the store against the log; exit code 1 on drift, 0 when clean (read-only)."""
    settings = _settings(topic_prefix, database)
    _run(settings, audit_verify(settings, sys.stdout, limit=limit))


@app.command("redrive")
def redrive_command(
    command: Annotated[str, typer.Option("--command", help="Id of the command to re-apply.")],
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="SETACCOUNTS_TOKEN",
            help="An administrator's bearer token; its subject is recorded as requested_by.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Re-drive even if newer commands for the target exist.")
    ] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the CommandFinished.")] = 120.0,
    topic_prefix: TopicPrefix = None,
    database: Database = None,
) -> None:
    """Publish the command again under a new id (`redrive_of` = the original) and wait for its answer."""
    settings = _settings(topic_prefix, database)
    _run(settings, audit_redrive(settings, sys.stdout, command, token=token, force=force, wait_seconds=wait))
