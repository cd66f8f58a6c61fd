"""Who may do what, over HTTP with real signed tokens whose keys a local JWKS endpoint serves.

Callers: anonymous, a token with a stranger's signature, an expired token, a token for another audience,
a user scoped to account A, one scoped to account B, and an admin. Data: one patient with one observation
per account. A scoped user sees and touches only its account's resources (404 for the others, never 403).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import SetAccountsCommand
from setaccounts.jobs import JobStore
from setaccounts_dev.devkeys import SigningKey
from tests.helpers.auth import ADMIN_SUBJECT, ClientAs, Issuer
from tests.helpers.parameters import parameters
from tests.helpers.resources import Seed

pytestmark = pytest.mark.integration

A, B = "Organization/a", "Organization/b"
Db = AsyncDatabase[dict[str, Any]]


def with_accounts(resource: dict[str, Any], account: str) -> dict[str, Any]:
    return {**resource, "meta": {"accounts": [{"reference": account}]}}


def observation(oid: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"text": "weight"},
        "subject": {"reference": f"Patient/{patient}"},
    }


async def seed_two_accounts(seed: Seed) -> None:
    await seed(
        with_accounts({"resourceType": "Patient", "id": "pa"}, A),
        with_accounts(observation("oa", "pa"), A),
        with_accounts({"resourceType": "Patient", "id": "pb"}, B),
        with_accounts(observation("ob", "pb"), B),
    )


TOKENS: dict[str, Callable[[Issuer], str | None]] = {
    "anonymous": lambda issuer: None,
    "bad-signature": lambda issuer: issuer.token(
        "mallory", admin=True, key=SigningKey.generate(kid=issuer.key.kid)
    ),
    "expired": lambda issuer: issuer.token("alice", admin=True, now=time.time() - 7200),
    "wrong-audience": lambda issuer: issuer.token("alice", admin=True, audience="another-api"),
    "user-a": lambda issuer: issuer.token("user-a", accounts=[A]),
    "user-b": lambda issuer: issuer.token("user-b", accounts=[B]),
    "admin": lambda issuer: issuer.admin_token(),
}
REFUSED = ("anonymous", "bad-signature", "expired", "wrong-audience")


def ids(response: httpx.Response) -> set[str]:
    body = response.json()
    assert body["total"] == len(body.get("entry", [])), "total counts only what the caller may see"
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in body.get("entry", [])}


Check = Callable[[httpx.Response], None]
Interaction = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]


async def read(client: httpx.AsyncClient, job: str) -> httpx.Response:
    return await client.get("/Observation/oa")


async def search(client: httpx.AsyncClient, job: str) -> httpx.Response:
    return await client.get("/Observation")


async def compartment(client: httpx.AsyncClient, job: str) -> httpx.Response:
    return await client.get("", params={"_compartment": A})


async def system_search(client: httpx.AsyncClient, job: str) -> httpx.Response:
    return await client.get("")


async def create(client: httpx.AsyncClient, job: str) -> httpx.Response:
    return await client.post("/Observation", json=observation("new", "pa"))


async def update(client: httpx.AsyncClient, job: str) -> httpx.Response:
    return await client.put("/Observation/oa", json={**observation("oa", "pa"), "status": "amended"})


async def delete(client: httpx.AsyncClient, job: str) -> httpx.Response:
    return await client.delete("/Observation/oa")


async def bundle(client: httpx.AsyncClient, job: str) -> httpx.Response:
    entry = {"request": {"method": "GET", "url": "Observation/oa"}}
    return await client.post("", json={"resourceType": "Bundle", "type": "batch", "entry": [entry]})


async def set_accounts(client: httpx.AsyncClient, job: str) -> httpx.Response:
    return await client.post(
        "/Patient/pa/$set-accounts", json=parameters(B, propagate=True), headers={"Prefer": "respond-async"}
    )


async def job_status(client: httpx.AsyncClient, job: str) -> httpx.Response:
    return await client.get(f"/job/{job}/status")


async def cancel(client: httpx.AsyncClient, job: str) -> httpx.Response:
    return await client.delete(f"/job/{job}/status")


def status(code: int) -> Check:
    def check(response: httpx.Response) -> None:
        assert response.status_code == code, response.text

    return check


def found(*refs: str) -> Check:
    def check(response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        assert ids(response) == set(refs)

    return check


def entry_status(code: str) -> Check:
    def check(response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        assert response.json()["entry"][0]["response"]["status"].startswith(code)

    return check


def forbidden(response: httpx.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json()["issue"][0]["code"] == "forbidden"


def created_in(account: str) -> Check:
    def check(response: httpx.Response) -> None:
        assert response.status_code == 201, response.text
        assert {"reference": account} in response.json()["meta"]["accounts"]

    return check


INTERACTIONS: dict[str, Interaction] = {
    "read": read,
    "search": search,
    "_compartment": compartment,
    "system-search": system_search,
    "create": create,
    "update": update,
    "delete": delete,
    "bundle": bundle,
    "$set-accounts": set_accounts,
    "job-status": job_status,
    "cancel": cancel,
}
EXPECTED: dict[str, dict[str, Check]] = {
    "user-a": {
        "read": status(200),
        "search": found("Observation/oa"),
        "_compartment": found("Patient/pa", "Observation/oa"),
        "system-search": found("Patient/pa", "Observation/oa"),
        "create": created_in(A),
        "update": status(200),
        "delete": status(204),
        "bundle": entry_status("200"),
        "$set-accounts": forbidden,
        "job-status": status(404),
        "cancel": status(404),
    },
    "user-b": {
        "read": status(404),
        "search": found("Observation/ob"),
        "_compartment": found(),
        "system-search": found("Patient/pb", "Observation/ob"),
        "create": created_in(B),  # and A, inherited from the patient (written into A's compartment)
        "update": status(404),
        "delete": status(404),
        "bundle": entry_status("404"),
        "$set-accounts": forbidden,
        "job-status": status(404),
        "cancel": status(404),
    },
    "admin": {
        "read": status(200),
        "search": found("Observation/oa", "Observation/ob"),
        "_compartment": found("Patient/pa", "Observation/oa"),
        "system-search": found("Patient/pa", "Observation/oa", "Patient/pb", "Observation/ob"),
        "create": created_in(A),  # inherited from Patient/pa
        "update": status(200),
        "delete": status(204),
        "bundle": entry_status("200"),
        "$set-accounts": status(202),
        "job-status": status(202),
        "cancel": status(202),
    },
}


@pytest.mark.parametrize("interaction", INTERACTIONS)
@pytest.mark.parametrize("caller", list(TOKENS))
async def test_access_matrix(
    caller: str, interaction: str, issuer: Issuer, client_as: ClientAs, seed: Seed, db: Db
) -> None:
    await seed_two_accounts(seed)
    job = str(uuid.uuid4())
    await JobStore(db).ensure(
        SetAccountsCommand(command_id=job, target="Patient/pa", accounts=[A], requested_by=ADMIN_SUBJECT)
    )
    async with client_as(TOKENS[caller](issuer)) as client:
        response = await INTERACTIONS[interaction](client, job)
    if caller in REFUSED:
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.json()["issue"][0]["code"] == "login"
        if caller != "anonymous":
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        return
    EXPECTED[caller][interaction](response)


async def test_a_job_answers_its_requester_and_admins_only(
    issuer: Issuer, client_as: ClientAs, seed: Seed, db: Db
) -> None:
    await seed_two_accounts(seed)
    job = str(uuid.uuid4())
    command = SetAccountsCommand(command_id=job, target="Patient/pa", accounts=[A], requested_by="user-a")
    await JobStore(db).ensure(command)
    async with client_as(issuer.token("user-a", accounts=[A])) as owner:
        assert (await owner.get(f"/job/{job}/status")).status_code == 202
    async with client_as(issuer.token("user-b", accounts=[A])) as other:
        assert (await other.get(f"/job/{job}/status")).status_code == 404
        assert (await other.delete(f"/job/{job}/status")).status_code == 404
    async with client_as(issuer.token("user-a", accounts=[A])) as owner:
        assert (await owner.delete(f"/job/{job}/status")).status_code == 202
    stored = await JobStore(db).get(job)
    assert stored is not None and stored.status == "cancelled"


async def test_the_requester_is_the_tokens_subject_never_a_header(
    api: httpx.AsyncClient, seed: Seed, db: Db
) -> None:
    await seed_two_accounts(seed)
    response = await api.post(
        "/Patient/pa/$set-accounts",
        json=parameters(A),
        headers={"Prefer": "respond-async", "X-Requested-By": "mallory"},
    )
    assert response.status_code == 202, response.text
    job = response.headers["Content-Location"].rstrip("/").split("/")[-2]
    stored = await JobStore(db).get(job)
    assert stored is not None and stored.requested_by == ADMIN_SUBJECT


async def test_scoped_writes_keep_to_their_accounts(issuer: Issuer, client_as: ClientAs, seed: Seed) -> None:
    await seed_two_accounts(seed)
    async with client_as(issuer.token("user-a", accounts=[A])) as client:
        adds_b = with_accounts(observation("oa", "pa"), B)
        assert (await client.put("/Observation/oa", json=adds_b)).status_code == 403
        drops_a = {**observation("oa", "pa"), "meta": {"accounts": []}}
        assert (await client.put("/Observation/oa", json=drops_a)).status_code == 403
        assert (
            await client.post("/Observation", json=with_accounts(observation("x", "pa"), B))
        ).status_code == 403
        # a create-on-update over another account's resource is a 404, not an overwrite
        assert (await client.put("/Observation/ob", json=observation("ob", "pa"))).status_code == 404
        transaction = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"request": {"method": "POST", "url": "Observation"}, "resource": observation("x", "pa")},
                {"request": {"method": "DELETE", "url": "Observation/ob"}},
            ],
        }
        refused = await client.post("", json=transaction)
        assert refused.status_code == 404, refused.text
        assert "Bundle.entry[1]" in refused.json()["issue"][0]["diagnostics"]


async def test_scopes_limit_interactions_and_types(issuer: Issuer, client_as: ClientAs, seed: Seed) -> None:
    await seed_two_accounts(seed)
    token = issuer.token("reader", accounts=[A], scopes=["user/Observation.rs", "openid"])
    async with client_as(token) as client:
        assert (await client.get("/Observation/oa")).status_code == 200
        assert (await client.get("/Patient/pa")).status_code == 403
        assert (await client.post("/Observation", json=observation("x", "pa"))).status_code == 403
        assert ids(await client.get("")) == {"Observation/oa"}  # system search: only the scoped types
        assert (await client.get("", params={"_type": "Patient"})).status_code == 403
    v1 = issuer.token("v1", accounts=[A], scopes=["user/*.read"])
    async with client_as(v1) as client:
        assert (await client.get("/Patient/pa")).status_code == 200
        assert (await client.delete("/Patient/pa")).status_code == 403


async def test_open_endpoints_and_metrics(issuer: Issuer, client_as: ClientAs) -> None:
    async with client_as(None) as anonymous:
        metadata = await anonymous.get("/metadata")
        assert metadata.status_code == 200
        security = metadata.json()["rest"][0]["security"]
        assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
        smart = await anonymous.get("/.well-known/smart-configuration")
        assert smart.status_code == 200, smart.text
        assert smart.json()["token_endpoint"] == f"{issuer.url}/token"
        assert "permission-v2" in smart.json()["capabilities"]
        for path in ("http://testserver/healthz", "http://testserver/readyz"):
            assert (await anonymous.get(path)).status_code == 200
        assert (await anonymous.get("http://testserver/metrics")).status_code == 401
    async with client_as(issuer.token("user-a", accounts=[A])) as user:
        assert (await user.get("http://testserver/metrics")).status_code == 403
    async with client_as(issuer.admin_token()) as admin:
        assert (await admin.get("http://testserver/metrics")).status_code == 200


@pytest.mark.parametrize("path", ["/Observation", ""])
async def test_a_scoped_token_pages_through_its_accounts_only(
    issuer: Issuer, client_as: ClientAs, seed: Seed, path: str
) -> None:
    """Interleaved ids of two accounts, read three at a time: every page, link and count is confined."""
    await seed(
        with_accounts({"resourceType": "Patient", "id": "pa"}, A),
        with_accounts({"resourceType": "Patient", "id": "pb"}, B),
        *(
            with_accounts(observation(f"o{i:02d}", "pa" if i % 2 else "pb"), A if i % 2 else B)
            for i in range(20)
        ),
    )
    mine = {"Patient/pa", *(f"Observation/o{i:02d}" for i in range(1, 20, 2))}
    if path:
        mine.discard("Patient/pa")
    async with client_as(issuer.token("user-a", accounts=[A])) as client:
        page = (await client.get(path, params={"_count": "3", "_total": "accurate"})).json()
        total, seen = page["total"], [e["fullUrl"].split("/R4/")[1] for e in page.get("entry", [])]
        while (nxt := next((x["url"] for x in page["link"] if x["relation"] == "next"), None)) is not None:
            page = (await client.get(nxt)).json()
            seen += [e["fullUrl"].split("/R4/")[1] for e in page.get("entry", [])]

    assert total == len(mine)
    assert len(seen) == len(set(seen))
    assert set(seen) == mine
