"""The $set-accounts HTTP surface: validation, sync and async answers, job status, OperationDefinition."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.settings import Settings
from setaccounts.store.meta import tombstone
from setaccounts.store.resources import now
from tests.helpers.parameters import outputs, parameters
from tests.helpers.resources import Seed, patient_with_members
from tests.helpers.topics import read_topic

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/Patient/p1/$set-accounts", {"resourceType": "Patient"}, 400, "Parameters"),
        ("/Patient/p1/$set-accounts", parameters("Organization"), 400, "Type/id"),
        ("/Patient/p1/$set-accounts", parameters("Nonsense/1"), 400, "known resource type"),
        (
            "/Patient/p1/$set-accounts",
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "accounts", "valueString": "Organization/1"}],
            },
            400,
            "valueReference",
        ),
        ("/Patient/p1/$set-accounts", parameters(propagate="yes"), 400, "valueBoolean"),
        (
            "/Patient/p1/$set-accounts",
            {"resourceType": "Parameters", "parameter": [{"name": "x"}]},
            400,
            "unknown",
        ),
        ("/Nonsense/p1/$set-accounts", parameters("Organization/1"), 400, "unknown resource type"),
        ("/Patient/ghost/$set-accounts", parameters("Organization/1"), 404, "not found"),
        ("/Patient/gone/$set-accounts", parameters("Organization/1"), 410, "deleted"),
    ],
)
async def test_bad_requests_answer_an_operation_outcome_and_publish_nothing(
    api: httpx.AsyncClient,
    settings: Settings,
    db: AsyncDatabase[dict[str, Any]],
    seed: Seed,
    path: str,
    body: dict[str, Any],
    status: int,
    says: str,
) -> None:
    await seed(*patient_with_members("p1", 1), {"resourceType": "Patient", "id": "gone"})
    gone = await db.resources.find_one({"_id": "Patient/gone"})
    assert gone is not None
    await db.resources.replace_one({"_id": "Patient/gone"}, tombstone(gone, now()))
    response = await api.post(path, json=body)
    assert response.status_code == status
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert says in outcome["issue"][0]["diagnostics"]
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert await read_topic(settings, settings.topics.commands) == []
    assert await db.jobs.count_documents({}) == 0


async def test_malformed_json_is_a_400(api: httpx.AsyncClient, seed: Seed) -> None:
    await seed(*patient_with_members("p1", 0))
    response = await api.post(
        "/Patient/p1/$set-accounts", content=b"{nope", headers={"Content-Type": "application/fhir+json"}
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.smoke
async def test_respond_async_answers_202_then_the_status_url_reports_progress_and_result(
    api: httpx.AsyncClient, propagator: None, seed: Seed
) -> None:
    await seed(*patient_with_members("p1", 40, accounts=["Organization/old"]))
    response = await api.post(
        "/Patient/p1/$set-accounts",
        json=parameters("Organization/a", "Organization/a"),
        headers={"Prefer": "respond-async"},
    )
    assert response.status_code == 202
    url = response.headers["Content-Location"]
    assert url.startswith("http://testserver/fhir/R4/job/") and url.endswith("/status")
    seen_running = False
    for _ in range(300):
        status = await api.get(url)
        if status.status_code == 202:
            seen_running = True
            assert status.headers["Retry-After"] == "1"
            assert "X-Progress" in status.headers
            await asyncio.sleep(0.05)
            continue
        break
    assert status.status_code == 200, status.text
    assert outputs(status.json()) == {
        "resourcesUpdated": 1,
        "resourcesChanged": 1,
    }  # propagate defaults to false
    assert seen_running or status.status_code == 200
    target = await api.get("/Patient/p1")
    assert target.json()["meta"]["accounts"] == [{"reference": "Organization/a"}]
    member = await api.get("/Observation/p1-obs-000000")
    assert "accounts" not in member.json()["meta"]  # not propagated


async def test_sync_call_degrades_to_202_when_the_result_takes_longer_than_the_bound(
    api: httpx.AsyncClient, seed: Seed, settings: Settings
) -> None:
    await seed(*patient_with_members("p1", 1))
    api_app = api._transport.app  # type: ignore[attr-defined]
    api_app.state.settings = settings.model_copy(update={"sync_wait_seconds": 0.3})
    response = await api.post("/Patient/p1/$set-accounts", json=parameters("Organization/a"))  # no propagator
    assert response.status_code == 202
    progress = await api.get(response.headers["Content-Location"])
    assert progress.status_code == 202
    assert progress.headers["X-Progress"] == "0"  # nothing planned yet: no total to report


async def test_unknown_job_is_404_and_finished_job_cannot_be_cancelled(
    api: httpx.AsyncClient, propagator: None, seed: Seed, db: AsyncDatabase[dict[str, Any]]
) -> None:
    assert (await api.get("/job/nope/status")).status_code == 404
    assert (await api.delete("/job/nope/status")).status_code == 404
    await seed(*patient_with_members("p1", 3))
    done = await api.post("/Patient/p1/$set-accounts", json=parameters("Organization/a", propagate=True))
    assert outputs(done.json()) == {"resourcesUpdated": 4, "resourcesChanged": 4}
    job = await db.jobs.find_one({})
    assert job is not None
    refused = await api.delete(f"/job/{job['_id']}/status")
    assert refused.status_code == 409


async def test_empty_accounts_clear_the_target_and_propagate_removal(
    api: httpx.AsyncClient, propagator: None, seed: Seed
) -> None:
    await seed(*patient_with_members("p1", 3))
    await api.post(
        "/Patient/p1/$set-accounts", json=parameters("Organization/a", "Organization/b", propagate=True)
    )
    cleared = await api.post("/Patient/p1/$set-accounts", json=parameters(propagate=True))
    assert outputs(cleared.json()) == {"resourcesUpdated": 4, "resourcesChanged": 4}
    member = (await api.get("/Observation/p1-obs-000001")).json()
    assert "accounts" not in member["meta"]
    assert member["meta"]["compartment"] == [{"reference": "Patient/p1"}]


@pytest.mark.parametrize(
    ("code", "accounts_min"), [("set-accounts", 0), ("add-accounts", 1), ("remove-accounts", 1)]
)
async def test_operation_definition_is_served(api: httpx.AsyncClient, code: str, accounts_min: int) -> None:
    definition = (await api.get(f"/OperationDefinition/{code}")).json()
    assert definition["code"] == code
    assert [(p["name"], p["use"]) for p in definition["parameter"]] == [
        ("accounts", "in"),
        ("propagate", "in"),
        ("dryRun", "in"),
        ("resourcesUpdated", "out"),
        ("resourcesChanged", "out"),
        ("dryRun", "out"),
        ("accountsBefore", "out"),
        ("accountsAfter", "out"),
        ("member", "out"),
    ]
    assert definition["parameter"][0]["min"] == accounts_min


async def test_metrics_count_commands_by_mode(api: httpx.AsyncClient, seed: Seed) -> None:
    def sample(text: str, mode: str) -> float:
        line = next(
            (x for x in text.splitlines() if x.startswith(f'setaccounts_commands_total{{mode="{mode}"}}')), ""
        )
        return float(line.split()[-1]) if line else 0.0

    await seed(*patient_with_members("p1", 0))
    before = sample((await api.get("http://testserver/metrics")).text, "async")
    await api.post("/Patient/p1/$set-accounts", json=parameters(), headers={"Prefer": "respond-async"})
    after = (await api.get("http://testserver/metrics")).text
    assert sample(after, "async") == before + 1
