"""The exactly-once-in-effect hazards: redelivery, duplicates, deletes mid-job, overlapping commands."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import RESULTS, SetAccountsCommand
from setaccounts.settings import Settings
from setaccounts.store.meta import tombstone
from setaccounts.store.resources import now
from tests.helpers.groups import caught_up, rewind_group
from tests.helpers.jobs import wait_job
from tests.helpers.publishing import send_command
from tests.helpers.resources import Seed, member_accounts, patient_with_members, shared_member
from tests.helpers.roles import roles
from tests.helpers.topics import read_topic

pytestmark = pytest.mark.integration


def command(target: str, *accounts: str, propagate: bool = True) -> SetAccountsCommand:
    return SetAccountsCommand(
        command_id=str(uuid.uuid4()),
        target=target,
        accounts=list(accounts),
        propagate=propagate,
        requested_by="test",
    )


async def versions(db: AsyncDatabase[dict[str, Any]]) -> dict[str, str]:
    return {d["_id"]: d["resource"]["meta"]["versionId"] async for d in db.resources.find({"deleted": False})}


async def test_redelivered_batches_change_nothing_and_inflate_no_count(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    await seed(*patient_with_members("p1", 300))
    first = command("Patient/p1", "Organization/o1")
    async with roles(settings, "planner", "applier", "aggregator"):
        await send_command(settings, first)
        job = await wait_job(db, first.command_id)
    assert (job["resources_updated"], job["resources_changed"]) == (301, 301)
    before = await versions(db)
    assert set(before.values()) == {"2"}

    # Applier and aggregator both re-consume everything they had committed, as after a crash.
    await rewind_group(settings, "applier", settings.topics.updates)
    await rewind_group(settings, "aggregator", settings.topics.results)
    results_before = len(await read_topic(settings, settings.topics.results))
    async with roles(settings, "applier", "aggregator"):
        await caught_up(settings, "applier", settings.topics.updates)
        await caught_up(settings, "aggregator", settings.topics.results)
    job = await wait_job(db, first.command_id)
    assert (job["resources_updated"], job["resources_changed"]) == (301, 301)
    assert await versions(db) == before
    replayed = [RESULTS.decode(r.value) for r in await read_topic(settings, settings.topics.results)]
    assert len(replayed) > results_before, "the batches were not redelivered"


async def test_same_command_id_twice_is_one_job_and_one_effect(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    await seed(*patient_with_members("p1", 50))
    twice = command("Patient/p1", "Organization/o1")
    async with roles(settings, "planner", "applier", "aggregator"):
        await send_command(settings, twice, times=2)
        job = await wait_job(db, twice.command_id)
        # The planner has committed both records (the duplicate was consumed and handled), and whatever
        # it published for it has been applied and counted too.
        await caught_up(settings, "planner", settings.topics.commands)
        await caught_up(settings, "applier", settings.topics.updates)
        await caught_up(settings, "aggregator", settings.topics.results)
        job = await wait_job(db, twice.command_id)
    assert (job["resources_updated"], job["resources_changed"]) == (51, 51)
    assert await db.jobs.count_documents({}) == 1
    assert set((await versions(db)).values()) == {"2"}


async def test_member_deleted_between_planning_and_applying_is_not_counted(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    await seed(*patient_with_members("p1", 20))
    cmd = command("Patient/p1", "Organization/o1")
    async with roles(settings, "planner"):
        await send_command(settings, cmd)
        await wait_job(db, cmd.command_id, ("applying", "planning"), where={"planned": True})
    gone = await db.resources.find_one({"_id": "Observation/p1-obs-000007"})
    assert gone is not None
    await db.resources.replace_one({"_id": gone["_id"]}, tombstone(gone, now()))
    async with roles(settings, "applier", "aggregator"):
        job = await wait_job(db, cmd.command_id)
    assert (job["resources_updated"], job["resources_changed"]) == (20, 20)
    assert (await db.resources.find_one({"_id": gone["_id"]}) or {}).get("deleted") is True


@pytest.mark.smoke
async def test_two_commands_in_quick_succession_apply_in_order(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    await seed(*patient_with_members("p1", 200))
    first, second = command("Patient/p1", "Organization/a"), command("Patient/p1", "Organization/b")
    async with roles(settings, "planner", "applier", "aggregator"):
        await send_command(settings, first)
        await send_command(settings, second)
        await wait_job(db, first.command_id)
        job = await wait_job(db, second.command_id)
    assert job["resources_updated"] == 201
    accounts = await member_accounts(db, "")
    assert set(map(tuple, accounts.values())) == {("Organization/b",)}, "not the state of applying a then b"


async def test_shared_member_keeps_an_account_another_patient_still_holds(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    await seed(
        {"resourceType": "Patient", "id": "p1"},
        {"resourceType": "Patient", "id": "p2"},
        shared_member(),
        {
            "resourceType": "Observation",
            "id": "own2",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p2"},
        },
    )
    steps = [
        command("Patient/p1", "Organization/a"),
        command("Patient/p2", "Organization/a", "Organization/b"),
        command("Patient/p2"),
    ]
    async with roles(settings, "planner", "applier", "aggregator"):
        for step in steps:
            await send_command(settings, step)
            await wait_job(db, step.command_id)
    accounts = await member_accounts(db, "Observation/")
    assert accounts["Observation/shared"] == ["Organization/a"]  # p1 still holds a; b is gone
    assert accounts["Observation/own2"] == []
    shared = await db.resources.find_one({"_id": "Observation/shared"})
    assert shared is not None
    assert [c["reference"] for c in shared["resource"]["meta"]["compartment"]] == [
        "Patient/p1",
        "Patient/p2",
        "Organization/a",
    ]


async def test_two_appliers_share_the_work_and_one_leaving_mid_job_changes_no_count(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    small = settings.model_copy(update={"apply_batch_size": 50})
    await seed(*patient_with_members("p1", 2000))
    cmd = command("Patient/p1", "Organization/o1")
    async with roles(small, "planner", "aggregator"), roles(small, "applier"):
        second = roles(small, "applier")
        await second.__aenter__()
        try:
            await send_command(settings, cmd)
            for _ in range(600):  # leave once the job is under way: the group rebalances mid-job
                if await db.resources.count_documents({"marks.command_id": cmd.command_id}) >= 300:
                    break
                await asyncio.sleep(0.05)
        finally:
            await second.__aexit__(None, None, None)
        job = await wait_job(db, cmd.command_id, timeout=120)
    assert (job["resources_updated"], job["resources_changed"]) == (2001, 2001)
    assert set((await versions(db)).values()) == {"2"}
