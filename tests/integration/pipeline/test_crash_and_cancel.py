"""Crash the propagator process (SIGKILL) mid-job and restart it; cancel a job mid-way."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import RESULTS, CommandFinished, SetAccountsCommand
from setaccounts.settings import Settings
from tests.helpers.jobs import wait_job
from tests.helpers.processes import propagator_process
from tests.helpers.publishing import send_command
from tests.helpers.resources import Seed, patient_with_members
from tests.helpers.roles import roles
from tests.helpers.topics import read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MEMBERS = 3000


async def wait_for(
    db: AsyncDatabase[dict[str, Any]],
    query: dict[str, Any],
    count: int,
    collection: str = "resources",
    timeout: float = 60,
) -> int:
    for _ in range(int(timeout * 20)):
        found = await db[collection].count_documents(query)
        if found >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} documents match {query}")


async def assert_exactly_once(db: AsyncDatabase[dict[str, Any]], command_id: str) -> None:
    job = await wait_job(db, command_id, timeout=180)
    assert (job["resources_updated"], job["resources_changed"]) == (MEMBERS + 1, MEMBERS + 1)
    versions = {d["resource"]["meta"]["versionId"] async for d in db.resources.find({}, {"resource.meta": 1})}
    assert versions == {"2"}, "a resource got more than one new version"
    assert (
        await db.resources.count_documents({"resource.meta.accounts.reference": "Organization/o1"})
        == MEMBERS + 1
    )


async def seeded_command(seed: Seed) -> SetAccountsCommand:
    """A patient with MEMBERS members, and the command that propagates an account to all of them."""
    await seed(*patient_with_members("p1", MEMBERS))
    return SetAccountsCommand(
        command_id=str(uuid.uuid4()), target="Patient/p1", accounts=["Organization/o1"], propagate=True
    )


async def test_kill_9_mid_apply_then_restart_completes_with_the_true_count(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    slow = settings.model_copy(update={"apply_batch_size": 100})
    cmd = await seeded_command(seed)
    with propagator_process(slow) as proc:
        await send_command(settings, cmd)
        applied = await wait_for(db, {"marks.command_id": cmd.command_id}, 1000)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    partial = await db.resources.count_documents({"marks.command_id": cmd.command_id})
    assert applied <= partial < MEMBERS + 1, "the crash did not land mid-job"
    with propagator_process(slow):
        await assert_exactly_once(db, cmd.command_id)


async def test_kill_9_mid_fan_out_then_restart_completes_with_the_true_count(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    slow = settings.model_copy(update={"plan_page_size": 25})
    cmd = await seeded_command(seed)
    with propagator_process(slow) as proc:  # the fan-out keeps pace with the applier: it lasts the job
        await send_command(settings, cmd)
        await wait_for(db, {"_id": cmd.command_id, "emitted": {"$gte": 500}}, 1, collection="jobs")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    job = await db.jobs.find_one({"_id": cmd.command_id})
    assert job is not None and not job.get("planned"), "the crash did not land mid-fan-out"
    with propagator_process(slow):
        await assert_exactly_once(db, cmd.command_id)


@pytest.mark.smoke
async def test_cancel_mid_job_stops_writes_and_reports_cancelled(
    settings: Settings, api: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    slow = settings.model_copy(update={"apply_batch_size": 50, "plan_page_size": 50})
    await seed(*patient_with_members("p1", 3000))
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "accounts", "valueReference": {"reference": "Organization/o1"}},
            {"name": "propagate", "valueBoolean": True},
        ],
    }
    async with roles(slow, "planner", "applier", "aggregator"):
        started = await api.post("/Patient/p1/$set-accounts", json=body, headers={"Prefer": "respond-async"})
        assert started.status_code == 202
        status_url = started.headers["Content-Location"]
        command_id = status_url.split("/")[-2]
        await wait_for(db, {"marks.command_id": command_id}, 100)
        cancelled = await api.delete(status_url)
        assert cancelled.status_code == 202, cancelled.text
        await asyncio.sleep(2)  # at most one batch in flight finishes
        settled = await db.resources.count_documents({"marks.command_id": command_id})
        await asyncio.sleep(2)
        assert await db.resources.count_documents({"marks.command_id": command_id}) == settled, (
            "writes went on"
        )
        assert settled < 3001
        status = await api.get(status_url)
        assert status.status_code == 410
        assert "cancelled" in status.json()["issue"][0]["diagnostics"]
        again = await api.delete(status_url)
        assert again.status_code == 202
    finished = [RESULTS.decode(r.value) for r in await read_topic(settings, settings.topics.results)]
    assert any(
        isinstance(e, CommandFinished) and e.command_id == command_id and e.status == "cancelled"
        for e in finished
    )


async def test_kill_9_mid_aggregation_then_restart_completes_with_the_true_count(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    slow = settings.model_copy(update={"apply_batch_size": 100})
    cmd = await seeded_command(seed)
    with propagator_process(slow, "planner", "applier"):
        with propagator_process(slow, "aggregator") as aggregator:
            await send_command(settings, cmd)
            await wait_for(db, {"_id": cmd.command_id, "processed": {"$gte": 1000}}, 1, collection="jobs")
            os.killpg(aggregator.pid, signal.SIGKILL)
            aggregator.wait(10)
        job = await db.jobs.find_one({"_id": cmd.command_id})
        assert job is not None and job["status"] != "completed", "the crash did not land mid-aggregation"
        with propagator_process(slow, "aggregator"):
            await assert_exactly_once(db, cmd.command_id)
    answers = [
        e
        for e in (RESULTS.decode(r.value) for r in await read_topic(slow, slow.topics.results))
        if isinstance(e, CommandFinished)
    ]
    assert answers and {(e.status, e.resources_updated) for e in answers} == {("completed", MEMBERS + 1)}
