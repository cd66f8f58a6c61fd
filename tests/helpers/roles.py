"""Run chosen propagator roles in-process, on a test's own topics and groups."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from setaccounts.settings import Settings
from setaccounts.telemetry import OFF, Tracing
from setaccounts_propagator.bootstrap import run


@contextlib.asynccontextmanager
async def roles(settings: Settings, *names: str, tracing: Tracing = OFF) -> AsyncIterator[None]:
    """Run some propagator roles in-process for the duration of the block."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, list(names), stop, ready, tracing=tracing))
    await asyncio.wait([asyncio.ensure_future(ready.wait()), task], return_when=asyncio.FIRST_COMPLETED)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
