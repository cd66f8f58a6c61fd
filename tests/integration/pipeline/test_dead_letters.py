"""Bad events never stop a consumer: invalid records are dead-lettered with the reason, commands with a
usable id but bad content get a failed result, and good events behind them still go through."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import RESULTS, CommandFailed, CommandFinished, SetAccountsCommand
from setaccounts.settings import Settings
from tests.helpers.jobs import wait_job
from tests.helpers.publishing import send_command, send_raw
from tests.helpers.resources import Seed, patient_with_members
from tests.helpers.roles import roles
from tests.helpers.topics import read_topic

pytestmark = pytest.mark.integration


@pytest.mark.smoke
async def test_malformed_records_on_every_topic_are_dead_lettered_and_the_loop_goes_on(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    await seed(*patient_with_members("p1", 10))
    topics = settings.topics
    async with roles(settings, "planner", "applier", "aggregator"):
        await send_raw(settings, topics.commands, b"{not json")
        await send_raw(
            settings, topics.commands, json.dumps({"type": "SetAccounts", "target": "Patient/p1"}).encode()
        )
        await send_raw(settings, topics.updates, json.dumps({"type": "MemberUpdate", "member": 7}).encode())
        await send_raw(settings, topics.results, b"\x00\x01binary")
        good = SetAccountsCommand(
            command_id=str(uuid.uuid4()), target="Patient/p1", accounts=["Organization/o1"], propagate=True
        )
        await send_command(settings, good)
        job = await wait_job(db, good.command_id)
        parked = await parked_records(settings, 4)  # while the roles run: a park in flight is not cut short
    assert job["resources_updated"] == 11
    assert len(parked) == 4, [(dict(r.headers)["dlq.topic"], dict(r.headers)["dlq.offset"]) for r in parked]
    for record in parked:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["dlq.topic"] in (topics.commands, topics.updates, topics.results)
        assert headers["dlq.reason"]
        assert int(headers["dlq.offset"]) >= 0 and int(headers["dlq.partition"]) >= 0
        assert headers["dlq.consumer"] in ("planner", "applier", "aggregator")
    reasons = " ".join(dict(r.headers)["dlq.reason"].decode() for r in parked)
    assert "command_id" in reasons and "member" in reasons


async def parked_records(settings: Settings, count: int, timeout: float = 15) -> list[Any]:
    """The dead-letter topic once it holds `count` records: the good command can finish before a consumer
    of another partition has parked its bad record."""
    deadline = time.monotonic() + timeout
    while True:
        parked = await read_topic(settings, settings.topics.deadletter)
        if len(parked) >= count or time.monotonic() > deadline:
            return parked
        await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    ("payload", "status", "diagnostics"),
    [
        ({"schema_version": 2, "type": "SetAccounts", "target": "Patient/p1"}, 400, "schema_version"),
        (
            {"schema_version": 1, "type": "SetAccounts", "target": "Patient/p1", "accounts": ["nope"]},
            400,
            "accounts",
        ),
        ({"schema_version": 1, "type": "SetAccounts", "target": "Patient/ghost"}, 404, "does not exist"),
    ],
)
async def test_commands_with_a_usable_id_get_a_failed_result_and_an_errored_job(
    settings: Settings,
    db: AsyncDatabase[dict[str, Any]],
    seed: Seed,
    payload: dict[str, Any],
    status: int,
    diagnostics: str,
) -> None:
    await seed(*patient_with_members("p1", 2))
    command_id = str(uuid.uuid4())
    async with roles(settings, "planner", "aggregator"):
        await send_raw(
            settings, settings.topics.commands, json.dumps({**payload, "command_id": command_id}).encode()
        )
        job = await wait_job(db, command_id, ("error",))
    assert job["http_status"] == status
    assert diagnostics in job["outcome"]["issue"][0]["diagnostics"]
    results = [RESULTS.decode(r.value) for r in await read_topic(settings, settings.topics.results)]
    assert [type(e) for e in results] == [CommandFailed, CommandFinished]
    assert results[1].status == "error" and results[1].outcome == job["outcome"]
    assert await read_topic(settings, settings.topics.deadletter) == []
    assert await db.resources.count_documents({"marks.command_id": command_id}) == 0


async def test_an_invalid_command_reusing_a_jobs_id_never_touches_that_job(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    await seed(*patient_with_members("p1", 300))
    good = SetAccountsCommand(
        command_id=str(uuid.uuid4()), target="Patient/p1", accounts=["Organization/o1"], propagate=True
    )
    async with roles(settings, "planner", "applier", "aggregator"):
        await send_command(settings, good)
        hijack = json.dumps({"command_id": good.command_id, "garbage": True}).encode()
        await send_raw(settings, settings.topics.commands, hijack, key=b"Patient/p1")
        job = await wait_job(db, good.command_id, ("completed", "error"))
    assert (job["status"], job["resources_updated"]) == ("completed", 301)
    assert "outcome" not in job or job["outcome"] is None
    parked = await read_topic(settings, settings.topics.deadletter)
    assert [r.value for r in parked] == [hijack]
