"""Tools for pipeline tests: run chosen roles, publish commands straight to Kafka, wait for jobs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import SetAccountsCommand
from setaccounts.kafka import make_producer, publish
from setaccounts.settings import Settings
from setaccounts_propagator.bootstrap import run


@contextlib.asynccontextmanager
async def roles(settings: Settings, *names: str) -> AsyncIterator[None]:
    """Run some propagator roles in-process for the duration of the block."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run(settings, list(names), stop, ready))
    await asyncio.wait([asyncio.ensure_future(ready.wait()), task], return_when=asyncio.FIRST_COMPLETED)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def send_command(settings: Settings, command: SetAccountsCommand, times: int = 1) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for _ in range(times):
            await publish(producer, settings.topics.commands, command)
    finally:
        await producer.stop()


async def send_raw(settings: Settings, topic: str, value: bytes, key: bytes = b"k") -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def wait_job(
    db: AsyncDatabase[dict[str, Any]],
    command_id: str,
    statuses: tuple[str, ...] = ("completed",),
    timeout: float = 60,
    where: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Poll the job until its status is one of `statuses` (and it matches `where`)."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        job = await db.jobs.find_one({"_id": command_id, **(where or {})})
        if job is not None and job.get("status") in statuses:
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {command_id} did not reach {statuses} within {timeout}s: {job}")


async def member_accounts(db: AsyncDatabase[dict[str, Any]], prefix: str) -> dict[str, list[str]]:
    found = db.resources.find({"_id": {"$regex": f"^{prefix}"}, "deleted": False})
    return {
        d["_id"]: [a["reference"] for a in d["resource"].get("meta", {}).get("accounts", [])]
        async for d in found
    }
