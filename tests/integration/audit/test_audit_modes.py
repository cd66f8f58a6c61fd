"""The audit against $add-accounts and $remove-accounts: the log shows the planned result, verify finds
the store clean, and a member that lost an added account is reported."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.settings import Settings
from setaccounts_audit.command_log import CommandRecord
from setaccounts_audit.replay import load_log
from setaccounts_audit.verify import verify_store
from tests.helpers.parameters import parameters
from tests.helpers.resources import Seed, patient_with_members

pytestmark = [pytest.mark.integration]
O1, O2, O3 = "Organization/o1", "Organization/o2", "Organization/o3"


async def finished_records(settings: Settings, count: int) -> list[CommandRecord]:
    deadline = time.monotonic() + 30
    while True:
        records = (await load_log(settings, progress=False)).log.records()
        if sum(r.status == "completed" for r in records) >= count or time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.3)


async def test_verify_follows_adds_and_removes(
    api: httpx.AsyncClient,
    propagator: None,
    seed: Seed,
    settings: Settings,
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    await seed(*patient_with_members("p1", 5))
    steps = [("set", [O1]), ("add", [O2, O3]), ("remove", [O1])]
    for mode, accounts in steps:
        response = await api.post(f"/Patient/p1/${mode}-accounts", json=parameters(*accounts, propagate=True))
        assert response.status_code == 200, response.text

    records = await finished_records(settings, len(steps))
    assert [(r.mode, r.accounts, r.accounts_before, r.accounts_after) for r in records] == [
        ("set", [O1], [], [O1]),
        ("add", [O2, O3], [O1], [O1, O2, O3]),
        ("remove", [O1], [O1, O2, O3], [O2, O3]),
    ]
    report = await verify_store(db, records)
    assert report.clean, report.drifts
    assert report.members_checked == 5

    await db.resources.update_one(  # an added account lost behind the service's back
        {"_id": "Observation/p1-obs-000002"}, {"$set": {"resource.meta.accounts": [{"reference": O2}]}}
    )
    report = await verify_store(db, records)
    member = [d for d in report.drifts if d.kind == "member-accounts"]
    assert [(d.ref, d.expected) for d in member] == [("Observation/p1-obs-000002", [O2, O3])]
