"""$add-accounts and $remove-accounts end to end: the same pipeline as $set-accounts with another mode."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tests.helpers.auth import ClientAs, Issuer
from tests.helpers.jobs import wait_job
from tests.helpers.parameters import outputs, parameters
from tests.helpers.resources import Seed, member_accounts, patient_with_members, shared_member

pytestmark = [pytest.mark.integration]

A, B, C = "Organization/a", "Organization/b", "Organization/c"


async def test_add_appends_to_target_and_members_and_keeps_what_they_had(
    api: httpx.AsyncClient, propagator: None, seed: Seed, db: AsyncDatabase[dict[str, Any]]
) -> None:
    await seed(*patient_with_members("p1", 4, accounts=[A]))
    await db.resources.update_one(  # one member already holds c (through some earlier write)
        {"_id": "Observation/p1-obs-000000"},
        {"$set": {"resource.meta.accounts": [{"reference": C}]}},
    )
    response = await api.post("/Patient/p1/$add-accounts", json=parameters(B, A, propagate=True))
    assert response.status_code == 200, response.text
    assert outputs(response.json()) == {"resourcesUpdated": 5, "resourcesChanged": 5}
    accounts = await member_accounts(db, "")
    assert accounts["Patient/p1"] == [A, B]  # a stays first, b appended
    assert accounts["Observation/p1-obs-000000"] == [C, B, A]
    assert {tuple(v) for k, v in accounts.items() if k != "Patient/p1" and not k.endswith("0")} == {(B, A)}

    again = await api.post("/Patient/p1/$add-accounts", json=parameters(B, propagate=True))
    assert outputs(again.json()) == {"resourcesUpdated": 5, "resourcesChanged": 0}


async def test_remove_drops_from_target_and_members_unless_another_patient_holds_it(
    api: httpx.AsyncClient, propagator: None, seed: Seed, db: AsyncDatabase[dict[str, Any]]
) -> None:
    await seed(
        *patient_with_members("p1", 2),
        {"resourceType": "Patient", "id": "p2"},
        shared_member(),
    )
    await api.post("/Patient/p2/$set-accounts", json=parameters(B))
    set_ = await api.post("/Patient/p1/$set-accounts", json=parameters(A, B, C, propagate=True))
    assert outputs(set_.json()) == {"resourcesUpdated": 4, "resourcesChanged": 4}

    response = await api.post("/Patient/p1/$remove-accounts", json=parameters(B, C, propagate=True))
    assert response.status_code == 200, response.text
    assert outputs(response.json()) == {"resourcesUpdated": 4, "resourcesChanged": 4}
    accounts = await member_accounts(db, "")
    assert accounts["Patient/p1"] == [A]
    assert accounts["Observation/p1-obs-000000"] == [A]
    assert accounts["Observation/shared"] == [A, B]  # p2 still holds b
    job = await db.jobs.find_one({"mode": "remove"})
    assert job is not None and job["accounts"] == [B, C] and job["accounts_before"] == [A, B, C]


async def test_add_and_remove_need_an_account(
    api: httpx.AsyncClient, seed: Seed, db: AsyncDatabase[dict[str, Any]]
) -> None:
    await seed({"resourceType": "Patient", "id": "p1"})
    for operation in ("add-accounts", "remove-accounts"):
        response = await api.post(f"/Patient/p1/${operation}", json=parameters(propagate=True))
        assert response.status_code == 400, response.text
        assert "at least one" in response.text
    assert await db.jobs.count_documents({}) == 0


async def test_concurrent_adds_from_two_callers_both_survive_on_target_and_members(
    client_as: ClientAs, issuer: Issuer, propagator: None, seed: Seed, db: AsyncDatabase[dict[str, Any]]
) -> None:
    """Two admins add different accounts to one patient at the same moment: neither undoes the other."""
    await seed(*patient_with_members("p1", 300, accounts=[A]))
    async with (
        client_as(issuer.token("alice", admin=True)) as alice,
        client_as(issuer.token("bob", admin=True)) as bob,
    ):

        async def add(client: httpx.AsyncClient, account: str) -> str:
            response = await client.post(
                "/Patient/p1/$add-accounts",
                json=parameters(account, propagate=True),
                headers={"Prefer": "respond-async"},
            )
            assert response.status_code == 202, response.text
            return response.headers["Content-Location"].rstrip("/").split("/")[-2]

        ids = await asyncio.gather(add(alice, B), add(bob, C))
        jobs = [await wait_job(db, command_id) for command_id in ids]
        for client, command_id in zip((alice, bob), ids, strict=True):
            answer = await client.get(f"/job/{command_id}/status")
            assert answer.status_code == 200, answer.text
            assert outputs(answer.json())["resourcesUpdated"] == 301
    assert {j["requested_by"] for j in jobs} == {"alice", "bob"}
    accounts = await member_accounts(db, "")
    assert len(accounts) == 301
    assert accounts["Patient/p1"][0] == A and set(accounts["Patient/p1"]) == {A, B, C}
    members = {ref: held for ref, held in accounts.items() if ref != "Patient/p1"}
    assert {frozenset(held) for held in members.values()} == {frozenset({B, C})}  # seeded without a
