"""What every fault test waits for and checks: a job in flight, its end, and that nothing was lost."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.settings import Settings
from tests.helpers.topics import read_topic

Db = AsyncDatabase[dict[str, Any]]


async def wait_marked(db: Db, command_id: str, at_least: int, timeout: float = 120) -> None:
    """Until at least `at_least` members carry the command's mark (the job is mid-apply)."""
    deadline = time.monotonic() + timeout
    while await db.resources.count_documents({"marks.command_id": command_id}) < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} members applied in {timeout}s"
        await asyncio.sleep(0.1)


async def assert_nothing_lost(
    db: Db, settings: Settings, job: dict[str, Any], members: int, account: str = "Organization/a"
) -> None:
    """The true count, one new version per member, every resource holding the account, no dead letter."""
    assert job["status"] == "completed"
    assert (job["resources_updated"], job["resources_changed"]) == (members + 1, members + 1)
    versions = [
        d["version"] async for d in db.resources.find({"_id": {"$regex": "^Observation/"}}, {"version": 1})
    ]
    assert versions == [2] * members, "every member has exactly one new version"
    assert await db.resources.count_documents({"compartments": account}) == members + 1
    assert await read_topic(settings, settings.topics.deadletter) == []
