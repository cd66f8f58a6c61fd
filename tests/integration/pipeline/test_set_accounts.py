"""$set-accounts end to end: HTTP → commands → planner → updates → applier → results → aggregator."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tests.helpers.parameters import outputs, parameters
from tests.helpers.resources import Seed, patient_with_members

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


async def test_sync_propagation_updates_target_and_members(
    api: httpx.AsyncClient, propagator: None, seed: Seed, db: AsyncDatabase[dict[str, Any]]
) -> None:
    await seed(*patient_with_members("p1", 5))
    response = await api.post("/Patient/p1/$set-accounts", json=parameters("Organization/o1", propagate=True))
    assert response.status_code == 200, response.text
    assert outputs(response.json()) == {"resourcesUpdated": 6, "resourcesChanged": 6}
    stored = await db.resources.find({}).to_list()
    for doc in stored:
        meta = doc["resource"]["meta"]
        assert meta["accounts"] == [{"reference": "Organization/o1"}]
        assert {"reference": "Organization/o1"} in meta["compartment"]
        assert meta["versionId"] == "2"

    again = await api.post("/Patient/p1/$set-accounts", json=parameters("Organization/o1", propagate=True))
    assert outputs(again.json()) == {"resourcesUpdated": 6, "resourcesChanged": 0}
    assert {d["resource"]["meta"]["versionId"] for d in await db.resources.find({}).to_list()} == {"2"}


async def test_a_patient_linked_to_the_target_is_neither_updated_nor_counted(
    api: httpx.AsyncClient, propagator: None, seed: Seed, db: AsyncDatabase[dict[str, Any]]
) -> None:
    """Patient.link puts another patient in p1's compartment, but it keeps its own accounts."""
    linked = {"resourceType": "Patient", "id": "p1-other", "link": [{"other": {"reference": "Patient/p1"}}]}
    await seed(*patient_with_members("p1", 3), linked)
    assert "Patient/p1" in (await db.resources.find_one({"_id": "Patient/p1-other"}) or {})["members_of"]

    response = await api.post("/Patient/p1/$set-accounts", json=parameters("Organization/o1", propagate=True))
    assert response.status_code == 200, response.text
    assert outputs(response.json()) == {"resourcesUpdated": 4, "resourcesChanged": 4}
    other = await db.resources.find_one({"_id": "Patient/p1-other"})
    assert other is not None and "accounts" not in other["resource"].get("meta", {})
    assert other["version"] == 1
