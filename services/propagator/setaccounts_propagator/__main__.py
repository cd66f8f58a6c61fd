"""`python -m setaccounts_propagator`: run the consumer roles, or create the topics."""

from __future__ import annotations

import asyncio
import gc
import signal
from enum import StrEnum
from typing import Annotated

import typer

from setaccounts.logs import configure_logging
from setaccounts.metrics import serve as serve_metrics
from setaccounts.settings import Settings
from setaccounts.telemetry import tracing_from_env
from setaccounts.topics import create_topics
from setaccounts_propagator.bootstrap import ROLES, StoresFactory, build_stores, run

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

# Collect garbage after 50,000 net new container objects instead of 700 (and older generations rarely):
# applying a batch decodes a thousand documents into short-lived dicts, which otherwise set off about 40
# collections per batch, a fifth of the applier's CPU (about 20 µs per member, benchmarks in
# docs/benchmarks.md). What the process holds from its start is frozen out of every collection.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class RoleChoice(StrEnum):
    ALL = "all"
    PLANNER = "planner"
    APPLIER = "applier"
    AGGREGATOR = "aggregator"


@cli.command("run")
def run_command(
    role: Annotated[
        list[RoleChoice] | None, typer.Option(help="Roles to run; repeat the flag for several. Default: all.")
    ] = None,
) -> None:
    """Consume until SIGINT/SIGTERM, then finish the current batch and stop."""
    serve([] if not role or RoleChoice.ALL in role else [r.value for r in role])


def serve(roles: list[str], stores_for: StoresFactory = build_stores) -> None:
    """The process: settings from the environment, logs, metrics, then the roles (all when none are given)
    until SIGINT/SIGTERM."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    serve_metrics(settings.metrics_port)
    names = roles or list(ROLES)
    tracing = tracing_from_env("setaccounts-propagator")
    tune_gc()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, names, stop, stores_for=stores_for, tracing=tracing)

    try:
        asyncio.run(main())
    finally:
        tracing.shutdown()


@cli.command("create-topics")
def create_topics_command() -> None:
    """Create the commands, updates, results and dead-letter topics if they are missing."""
    settings = Settings()
    created = asyncio.run(create_topics(settings))
    typer.echo(f"created: {', '.join(created) or 'nothing (all exist)'}")


if __name__ == "__main__":
    cli()
