"""A small command is not held up by a large one running: it completes while the large job has most of its
members still to apply, even when both commands land on the same commands partition."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import SetAccountsCommand
from setaccounts.events.wire import partition_for
from setaccounts.jobs import Job
from setaccounts.settings import Settings
from tests.helpers.jobs import wait_job
from tests.helpers.publishing import send_command
from tests.helpers.resources import Seed, patient_with_members
from tests.helpers.roles import roles

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LARGE, SMALL = 3000, 10


def command(target: str, account: str) -> SetAccountsCommand:
    return SetAccountsCommand(command_id=str(uuid.uuid4()), target=target, accounts=[account], propagate=True)


def small_patient_sharing_the_partition(settings: Settings, large: str) -> str:
    """A patient id whose commands go to the same commands partition as `large`'s."""
    partitions = list(range(settings.partitions))
    wanted = partition_for(large.encode(), partitions)
    return next(
        f"small{i}" for i in range(1000) if partition_for(f"Patient/small{i}".encode(), partitions) == wanted
    )


async def job(db: AsyncDatabase[dict[str, Any]], command_id: str) -> Job:
    found = await db.jobs.find_one({"_id": command_id})
    assert found is not None
    return Job.model_validate(found)


async def test_a_small_command_completes_while_a_large_one_has_most_members_unapplied(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    small = small_patient_sharing_the_partition(settings, "Patient/large")
    await seed(*patient_with_members("large", LARGE), *patient_with_members(small, SMALL))
    large_cmd = command("Patient/large", "Organization/big")
    small_cmd = command(f"Patient/{small}", "Organization/little")
    async with roles(settings, "planner", "applier", "aggregator"):
        await send_command(settings, large_cmd)
        await wait_job(db, large_cmd.command_id, ("applying",), where={"processed": {"$gte": 50}})
        await send_command(settings, small_cmd)
        done = await wait_job(db, small_cmd.command_id, timeout=60)
        large_then = await job(db, large_cmd.command_id)
        assert done["resources_updated"] == SMALL + 1
        assert not large_then.finished
        assert large_then.applied < LARGE / 2, (
            f"the small command waited for {large_then.applied} of the large one's {LARGE} members"
        )
        # the large job was only overtaken, never stopped
        finished = await wait_job(db, large_cmd.command_id, timeout=240)
        assert finished["resources_updated"] == LARGE + 1
    stored = await db.resources.count_documents({"resource.meta.accounts.reference": "Organization/little"})
    assert stored == SMALL + 1


async def test_a_fan_out_runs_only_a_little_ahead_of_the_applier(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    """Memory and queues stay flat: the large job's emitted but unapplied updates stay a small share of the
    compartment all through the job, not the whole compartment at once."""
    await seed(*patient_with_members("large", LARGE))
    large_cmd = command("Patient/large", "Organization/big")
    ahead: list[int] = []
    async with roles(settings, "planner", "applier", "aggregator"):
        await send_command(settings, large_cmd)
        await wait_job(db, large_cmd.command_id, ("planning", "applying", "completed"))
        while not (current := await job(db, large_cmd.command_id)).finished:
            if current.emitted:
                ahead.append(current.emitted - current.applied)
            await asyncio.sleep(0.1)
    assert current.resources_updated == LARGE + 1
    assert len(ahead) >= 5, "the job ended before it could be watched"
    assert max(ahead) < LARGE / 2, f"the fan-out ran {max(ahead)} updates ahead of the applier"
