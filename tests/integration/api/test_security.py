"""Inherited accounts on ordinary writes, key rotation, Host header injection, headers, rate limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.settings import Settings
from setaccounts_api.app import create_app
from setaccounts_dev.devkeys import SigningKey
from tests.helpers.auth import Issuer, bearer
from tests.helpers.resources import Seed

pytestmark = pytest.mark.integration
A, B = "Organization/a", "Organization/b"
Db = AsyncDatabase[dict[str, Any]]


@asynccontextmanager
async def api_with(settings: Settings, token: str | None, **client: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The API built from `settings`, called with `token`."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {**(bearer(token) if token else {}), **client.pop("headers", {})}
        base = client.pop("base_url", "http://testserver/fhir/R4")
        async with httpx.AsyncClient(transport=transport, base_url=base, headers=headers, **client) as api:
            yield api


def accounts(resource: dict[str, Any]) -> list[str]:
    return [a["reference"] for a in resource.get("meta", {}).get("accounts", [])]


def observation(oid: str, patient: str, *own: str) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Observation", "id": oid, "subject": {"reference": patient}}
    if own:
        body["meta"] = {"accounts": [{"reference": a} for a in own]}
    return body


async def test_every_ordinary_write_inherits_the_patients_accounts(api: httpx.AsyncClient, db: Db) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "meta": {"accounts": [{"reference": A}]}}
    assert (await api.put("/Patient/p1", json=patient)).status_code == 201

    created = await api.post("/Observation", json=observation("x", "Patient/p1", B))
    assert accounts(created.json()) == [B, A]
    assert {"reference": A} in created.json()["meta"]["compartment"]
    updated = await api.put("/Observation/o1", json=observation("o1", "Patient/p1"))
    assert accounts(updated.json()) == [A]
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "request": {"method": "PUT", "url": "Observation/o2"},
                "resource": observation("o2", "Patient/p1"),
            }
        ],
    }
    assert (await api.post("", json=batch)).status_code == 200
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:4e6c2a51-2d3c-4c61-9d1b-8f7c6a0d1e01",
                "request": {"method": "POST", "url": "Patient"},
                "resource": {"resourceType": "Patient", "meta": {"accounts": [{"reference": B}]}},
            },
            {
                "request": {"method": "POST", "url": "Observation"},
                "resource": observation("y", "urn:uuid:4e6c2a51-2d3c-4c61-9d1b-8f7c6a0d1e01"),
            },
            {
                "request": {"method": "PUT", "url": "Observation/o3"},
                "resource": observation("o3", "Patient/p1"),
            },
        ],
    }
    response = await api.post("", json=transaction, headers={"Prefer": "return=representation"})
    assert response.status_code == 200, response.text
    _, new_member, existing_patient_member = (e["resource"] for e in response.json()["entry"])
    assert accounts(new_member) == [B]  # inherited from the patient created in the same transaction
    assert accounts(existing_patient_member) == [A]
    stored = await db.resources.find_one({"_id": "Observation/o2"})
    assert stored is not None and A in stored["compartments"]
    # the patient itself inherits nothing (and may drop its own accounts)
    dropped = await api.put("/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    assert accounts(dropped.json()) == []


async def test_inheritance_can_be_turned_off(settings: Settings, issuer: Issuer, seed: Seed) -> None:
    await seed({"resourceType": "Patient", "id": "p1", "meta": {"accounts": [{"reference": A}]}})
    async with api_with(settings.model_copy(update={"inherit_accounts": False}), issuer.admin_token()) as api:
        created = await api.post("/Observation", json=observation("x", "Patient/p1"))
    assert created.status_code == 201 and accounts(created.json()) == []


async def test_rotated_keys_are_fetched_on_an_unknown_kid(settings: Settings, seed: Seed) -> None:
    with Issuer().serving() as rotating:
        moved = settings.model_copy(update={**rotating.settings(), "auth_jwks_refresh_seconds": 0})
        async with api_with(moved, None) as api:
            first = await api.get("/Patient", headers=bearer(rotating.admin_token()))
            assert first.status_code == 200
            old = rotating.admin_token()
            rotating.key = SigningKey.generate()
            fetched = rotating.jwks_requests
            assert (await api.get("/Patient", headers=bearer(rotating.admin_token()))).status_code == 200
            assert rotating.jwks_requests == fetched + 1
            assert (await api.get("/Patient", headers=bearer(old))).status_code == 401  # retired key
            for _ in range(3):  # a known kid is served from the cache
                assert (await api.get("/Patient", headers=bearer(rotating.admin_token()))).status_code == 200
            assert rotating.jwks_requests == fetched + 2


async def test_public_urls_never_come_from_an_untrusted_host(settings: Settings, issuer: Issuer) -> None:
    async with api_with(settings, issuer.admin_token(), base_url="http://evil.example/fhir/R4") as api:
        assert (await api.get("/Patient")).status_code == 400
    configured = settings.model_copy(update={"base_url": "https://fhir.example.org"})
    async with api_with(configured, issuer.admin_token(), base_url="http://evil.example/fhir/R4") as api:
        response = await api.put("/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
        assert response.headers["Location"].startswith("https://fhir.example.org/fhir/R4/Patient/p1")
        links = (await api.get("/Patient")).json()["link"]
        assert all(link["url"].startswith("https://fhir.example.org/") for link in links)


async def test_security_headers_and_no_stack_details(api: httpx.AsyncClient) -> None:
    response = await api.get("/Patient/nope")
    assert response.status_code == 404
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert "server" not in response.headers
    refused = await api.get("/Patient", headers={"Authorization": "Bearer not.a.jwt"})
    assert refused.status_code == 401
    assert "Traceback" not in refused.text and "jwt" not in refused.text.lower().replace("<jwt>", "")


async def test_the_rate_limit_answers_429_with_retry_after(settings: Settings, issuer: Issuer) -> None:
    limited = settings.model_copy(update={"rate_limit_per_second": 0.5, "rate_limit_burst": 2})
    async with api_with(limited, issuer.admin_token()) as api:
        answers = [await api.get("/Patient") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert answers[2].json()["issue"][0]["code"] == "throttled"


async def test_unreachable_keys_are_a_503_that_names_no_host(settings: Settings, issuer: Issuer) -> None:
    with Issuer().serving() as gone:
        dead = gone.url
    moved = settings.model_copy(update={"auth_issuer": dead})
    async with api_with(moved, issuer.token("alice", admin=True, issuer=dead)) as api:
        response = await api.get("/Patient")
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    assert dead.split("//")[1] not in response.text and "127.0.0.1" not in response.text


async def test_an_unexpected_error_names_nothing_internal(
    settings: Settings, issuer: Issuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("driver said: members_of index on mongo-0.internal:27017 is corrupt")

    monkeypatch.setattr("setaccounts_api.rest.store.RestStore.read", broken)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver/fhir/R4", headers=bearer(issuer.admin_token())
        ) as api:
            response = await api.get("/Patient/p1")
    assert response.status_code == 500
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "exception"
    for leak in ("RuntimeError", "members_of", "mongo-0", "27017", "Traceback", "driver"):
        assert leak not in response.text
