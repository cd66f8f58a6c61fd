"""`dryRun`: the answer a real run would give, computed without writing anything or publishing a command;
then the real run that follows reports the same counts."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.settings import Settings
from tests.helpers.parameters import outputs, parameters
from tests.helpers.resources import Seed, patient_with_members, shared_member
from tests.helpers.topics import read_topic

pytestmark = [pytest.mark.integration]
A, B, C = "Organization/a", "Organization/b", "Organization/c"


def dry(*accounts: str, propagate: bool = True) -> dict[str, Any]:
    body = parameters(*accounts, propagate=propagate)
    body["parameter"].append({"name": "dryRun", "valueBoolean": True})
    return body


def read(body: dict[str, Any]) -> dict[str, Any]:
    """counts, accounts before/after and the member sample of a dry run's Parameters."""
    found: dict[str, Any] = {"accountsBefore": [], "accountsAfter": [], "member": []}
    for p in body["parameter"]:
        if "valueReference" in p:
            found[p["name"]].append(p["valueReference"]["reference"])
        else:
            found[p["name"]] = p.get("valueInteger", p.get("valueBoolean"))
    return found


async def versions(db: AsyncDatabase[dict[str, Any]]) -> dict[str, int]:
    return {d["_id"]: d["version"] async for d in db.resources.find({}, {"version": 1})}


async def seed_two_patients(seed: Seed, db: AsyncDatabase[dict[str, Any]]) -> None:
    """p1 holds a and b; three of its members hold a already; one member is also p2's, which holds b."""
    await seed(
        *patient_with_members("p1", 6, accounts=[A, B]),
        {"resourceType": "Patient", "id": "p2", "meta": {"accounts": [{"reference": B}]}},
        shared_member([A, B]),
    )
    for i in range(3):
        await db.resources.update_one(
            {"_id": f"Observation/p1-obs-{i:06d}"},
            {"$set": {"resource.meta.accounts": [{"reference": A}, {"reference": B}]}},
        )


@pytest.mark.parametrize(
    ("operation", "accounts", "after"),
    [("set-accounts", [C], [C]), ("add-accounts", [C], [A, B, C]), ("remove-accounts", [B], [A])],
)
async def test_dry_run_writes_nothing_and_predicts_the_real_run(
    api: httpx.AsyncClient,
    propagator: None,
    seed: Seed,
    settings: Settings,
    db: AsyncDatabase[dict[str, Any]],
    operation: str,
    accounts: list[str],
    after: list[str],
) -> None:
    await seed_two_patients(seed, db)
    before = await versions(db)

    response = await api.post(f"/Patient/p1/${operation}?_count=2", json=dry(*accounts))
    assert response.status_code == 200, response.text
    answer = read(response.json())
    assert answer["dryRun"] is True
    assert (answer["accountsBefore"], answer["accountsAfter"]) == ([A, B], after)
    assert 0 < len(answer["member"]) <= 2
    assert await versions(db) == before
    assert await db.jobs.count_documents({}) == 0
    assert await read_topic(settings, settings.topics.commands) == []

    real = await api.post(f"/Patient/p1/${operation}", json=parameters(*accounts, propagate=True))
    assert real.status_code == 200, real.text
    counts = outputs(real.json())
    assert counts == {k: answer[k] for k in ("resourcesUpdated", "resourcesChanged")}
    assert counts["resourcesUpdated"] == 8
    changed = {ref for ref, version in (await versions(db)).items() if version != before[ref]}
    assert len(changed) == counts["resourcesChanged"]
    assert set(answer["member"]) <= changed


async def test_a_large_compartment_is_previewed_asynchronously_from_memory(
    api: httpx.AsyncClient,
    app: FastAPI,
    seed: Seed,
    settings: Settings,
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    app.state.settings = settings.model_copy(update={"dry_run_async_above": 5})
    await seed_two_patients(seed, db)
    before = await versions(db)

    response = await api.post("/Patient/p1/$remove-accounts", json=dry(B))
    assert response.status_code == 202, response.text
    url = response.headers["Content-Location"]
    assert "/dry-run/" in url
    for _ in range(100):
        status = await api.get(url)
        if status.status_code != 202:
            break
        await asyncio.sleep(0.05)
    assert status.status_code == 200, status.text
    answer = read(status.json())
    # b goes from p1 and from the members that hold it, except the one p2 (holding b) shares
    assert (answer["resourcesUpdated"], answer["resourcesChanged"], answer["member"]) == (8, 4, [])
    assert await versions(db) == before
    assert await db.jobs.count_documents({}) == 0
    assert await read_topic(settings, settings.topics.commands) == []
    assert (await api.get(url.replace("/dry-run/", "/dry-run/x"))).status_code == 404
