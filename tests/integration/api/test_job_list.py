"""`GET /job` (the jobs a caller may see, newest first, paged), `GET /job/{id}` and `GET /job/{id}/changes`
(the resources a job changed), with the status URL's access rule: admins see every job, others their own."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import SetAccountsCommand
from setaccounts.jobs import JobStore
from tests.helpers.auth import ADMIN_SUBJECT, ClientAs, Issuer
from tests.helpers.jobs import wait_job
from tests.helpers.parameters import parameters
from tests.helpers.resources import Seed, patient_with_members

pytestmark = pytest.mark.integration


async def make_jobs(db: AsyncDatabase[dict[str, Any]], *specs: tuple[str, str]) -> list[str]:
    """Jobs as the API creates them, one per (target, requester), a few milliseconds apart; their ids."""
    ids = []
    for target, requester in specs:
        command = SetAccountsCommand(
            command_id=str(uuid.uuid4()), target=target, accounts=["Organization/o1"], requested_by=requester
        )
        await JobStore(db).ensure(command)
        ids.append(command.command_id)
        await asyncio.sleep(0.005)
    return ids


async def every_page(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    """Follow `next` links from `url`; every page as answered."""
    pages = []
    while url:
        answer = await client.get(url)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        pages.append(answer.json())
        url = pages[-1]["next"]
    return pages


async def test_admins_list_every_job_newest_first_in_pages(
    api: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]]
) -> None:
    ids = await make_jobs(db, *[(f"Patient/p{i}", "alice" if i % 2 else ADMIN_SUBJECT) for i in range(5)])
    pages = await every_page(api, "/job?_count=2")
    assert [len(p["jobs"]) for p in pages] == [2, 2, 1]
    assert [j["id"] for p in pages for j in p["jobs"]] == ids[::-1]
    assert pages[-1]["next"] is None and pages[-1]["next_cursor"] is None
    first = pages[0]["jobs"][0]
    assert first["status"] == "accepted" and first["target"] == "Patient/p4"
    assert first["requested_by"] == ADMIN_SUBJECT and first["accounts_after"] == ["Organization/o1"]
    assert first["status_url"].endswith(f"/fhir/R4/job/{ids[-1]}/status")
    assert first["progress"] == {"done": 0, "total": None} and first["trace_id"] is None


async def test_jobs_created_in_the_same_millisecond_are_each_listed_once(
    api: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]]
) -> None:
    ids = await make_jobs(db, *[(f"Patient/p{i}", "alice") for i in range(4)])
    await db.jobs.update_many({}, {"$set": {"created_at": datetime(2026, 12, 1, tzinfo=UTC)}})
    pages = await every_page(api, "/job?_count=1")
    assert [j["id"] for p in pages for j in p["jobs"]] == sorted(ids, reverse=True)


async def test_filters_by_status_target_and_requester(
    api: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]]
) -> None:
    a, b, c = await make_jobs(db, ("Patient/p1", "alice"), ("Patient/p2", "bob"), ("Patient/p1", "bob"))
    await JobStore(db).cancel(b, "bob")

    async def listed(query: str) -> list[str]:
        answer = await api.get(f"/job?{query}")
        assert answer.status_code == 200, answer.text
        return [j["id"] for j in answer.json()["jobs"]]

    assert await listed("status=cancelled") == [b]
    assert await listed("status=running") == [c, a]
    assert await listed("status=cancelled,accepted") == [c, b, a]
    assert await listed("target=Patient/p1") == [c, a]
    assert await listed("requester=bob") == [c, b]
    assert await listed("requester=bob&target=Patient/p1&status=running") == [c]
    assert await listed("requester=nobody") == []


async def test_others_see_only_the_jobs_they_requested(
    api: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]], client_as: ClientAs, issuer: Issuer
) -> None:
    mine, theirs = await make_jobs(db, ("Patient/p1", "carol"), ("Patient/p2", ADMIN_SUBJECT))
    async with client_as(issuer.token("carol", accounts=["Organization/o1"])) as carol:
        listed = await carol.get("/job")
        asking_for_others = await carol.get(f"/job?requester={ADMIN_SUBJECT}")
        own, other = await carol.get(f"/job/{mine}"), await carol.get(f"/job/{theirs}")
        other_changes = await carol.get(f"/job/{theirs}/changes")
    assert [j["id"] for j in listed.json()["jobs"]] == [mine]
    assert asking_for_others.status_code == 200 and asking_for_others.json()["jobs"] == []
    assert own.status_code == 200 and own.json()["requested_by"] == "carol"
    assert other.status_code == 404 and other_changes.status_code == 404
    async with client_as(None) as anonymous:
        assert (await anonymous.get("/job")).status_code == 401
    admin_sees = [j["id"] for j in (await api.get("/job")).json()["jobs"]]
    assert admin_sees == [theirs, mine]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("status=finished", "status must be one of"),
        ("target=p1", "target must be a reference"),
        ("cursor=junk", "not a cursor"),
        ("_count=-1", "_count"),
    ],
)
async def test_bad_parameters_answer_400_with_an_outcome(
    api: httpx.AsyncClient, query: str, says: str
) -> None:
    answer = await api.get(f"/job?{query}")
    assert answer.status_code == 400, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome" and says in answer.text


async def test_the_trace_id_of_a_job_is_shown(
    api: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]]
) -> None:
    (job,) = await make_jobs(db, ("Patient/p1", ADMIN_SUBJECT))
    await db.jobs.update_one({"_id": job}, {"$set": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}})
    answer = await api.get(f"/job/{job}")
    assert answer.status_code == 200 and answer.json()["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (await api.get("/job?target=Patient/p1")).json()["jobs"][0]["trace_id"] == answer.json()[
        "trace_id"
    ]


async def run_job(api: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]], account: str) -> str:
    answer = await api.post(
        "/Patient/p1/$set-accounts",
        json=parameters(account, propagate=True),
        headers={"Prefer": "respond-async"},
    )
    assert answer.status_code == 202, answer.text
    command_id = answer.headers["content-location"].rsplit("/", 2)[-2]
    await wait_job(db, command_id)
    return command_id


async def changed(client: httpx.AsyncClient, command_id: str, count: int = 100) -> list[dict[str, Any]]:
    pages = await every_page(client, f"/job/{command_id}/changes?_count={count}")
    return [r for p in pages for r in p["resources"]]


@pytest.mark.usefixtures("propagator")
async def test_a_job_lists_the_resources_it_changed_whether_current_or_superseded(
    api: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]], seed: Seed, client_as: ClientAs, issuer: Issuer
) -> None:
    await seed(*patient_with_members("p1", 5))
    members = sorted([f"Observation/p1-obs-{i:06d}" for i in range(5)])
    first = await run_job(api, db, "Organization/o1")
    changes = await changed(api, first)
    assert [r["reference"] for r in changes] == [*members, "Patient/p1"]
    assert {(r["version"], r["current"]) for r in changes} == {(2, True)}
    assert {tuple(r["accounts"]) for r in changes} == {("Organization/o1",)}

    second = await run_job(api, db, "Organization/o2")
    again = await run_job(api, db, "Organization/o2")  # changes nothing
    paged = await every_page(api, f"/job/{first}/changes?_count=4")
    assert [len(p["resources"]) for p in paged] == [4, 2]
    superseded = [r for p in paged for r in p["resources"]]
    assert [r["reference"] for r in superseded] == [*members, "Patient/p1"]
    assert {(r["version"], r["current"]) for r in superseded} == {(2, False)}  # kept in history now
    assert {(r["version"], r["current"]) for r in await changed(api, second)} == {(3, True)}
    assert await changed(api, again) == []

    # The requester without the admin role sees only the versions in their accounts, of types they may read.
    async with client_as(issuer.token(ADMIN_SUBJECT, accounts=["Organization/o1"])) as confined:
        assert len(await changed(confined, first)) == 6
        assert await changed(confined, second) == []
    patients_only = issuer.token(ADMIN_SUBJECT, accounts=["Organization/o1"], scopes=["user/Patient.rs"])
    async with client_as(patients_only) as confined:
        assert [r["reference"] for r in await changed(confined, first)] == ["Patient/p1"]
