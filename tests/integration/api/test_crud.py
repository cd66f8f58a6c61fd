"""Create, read, update, delete over HTTP against the real store: headers, versions, meta and refusals."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import httpx
import pytest

from setaccounts.settings import Settings

pytestmark = pytest.mark.integration

Public = Callable[[dict[str, Any]], None]
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient(pid: str | None = None, family: str = "Smith", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}], **extra}
    if pid is not None:
        body["id"] = pid
    return body


def outcome_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert body["resourceType"] == "OperationOutcome", body
    return body


async def test_create_assigns_id_and_answers_version_headers(
    api: httpx.AsyncClient, assert_public: Public
) -> None:
    response = await api.post("/Patient", json=patient("client-chosen"))

    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert_public(body)
    assert body["id"] != "client-chosen"
    assert re.fullmatch(r"[0-9a-f-]{36}", body["id"])
    assert body["meta"]["versionId"] == "1"
    assert response.headers["Location"] == f"http://testserver/fhir/R4/Patient/{body['id']}/_history/1"
    assert response.headers["ETag"] == 'W/"1"'
    modified = parsedate_to_datetime(response.headers["Last-Modified"])
    assert modified.tzinfo is not None
    assert abs((modified - parsedate_to_datetime(_http(body["meta"]["lastUpdated"]))).total_seconds()) < 1

    read = await api.get(f"/Patient/{body['id']}")
    assert read.status_code == 200
    assert read.json() == body
    assert read.headers["ETag"] == 'W/"1"'
    assert read.headers["Last-Modified"] == response.headers["Last-Modified"]


def _http(stamp: str) -> str:
    return format_datetime(datetime.fromisoformat(stamp), usegmt=True)


async def test_update_makes_a_version_and_create_on_update_answers_201(
    api: httpx.AsyncClient, assert_public: Public
) -> None:
    created = await api.put("/Patient/p1", json=patient("p1"))
    assert created.status_code == 201
    assert created.headers["Location"].endswith("/Patient/p1/_history/1")
    assert_public(created.json())

    updated = await api.put("/Patient/p1", json=patient("p1", family="Jones"))
    assert updated.status_code == 200
    assert updated.headers["ETag"] == 'W/"2"'
    body = updated.json()
    assert_public(body)
    assert body["meta"]["versionId"] == "2"
    assert body["name"] == [{"family": "Jones"}]
    assert (await api.get("/Patient/p1")).json() == body


async def test_no_op_put_keeps_version_and_last_updated(api: httpx.AsyncClient, snapshot: Any) -> None:
    first = (await api.put("/Patient/p1", json=patient("p1"))).json()
    before = await snapshot()

    again = await api.put(
        "/Patient/p1", json={**patient("p1"), "meta": {"versionId": "9", "lastUpdated": "x"}}
    )

    assert again.status_code == 200
    assert again.headers["ETag"] == 'W/"1"'
    assert again.json() == first
    assert await snapshot() == before


async def test_delete_then_read_is_gone_and_delete_is_idempotent(api: httpx.AsyncClient) -> None:
    await api.put("/Patient/p1", json=patient("p1"))

    deleted = await api.delete("/Patient/p1")
    assert deleted.status_code == 204
    gone = await api.get("/Patient/p1")
    assert gone.status_code == 410
    assert outcome_of(gone)["issue"][0]["code"] == "deleted"
    assert (await api.delete("/Patient/p1")).status_code == 204
    assert (await api.delete("/Patient/never")).status_code == 404

    search = (await api.get("/Patient")).json()
    assert search["total"] == 0

    revived = await api.put("/Patient/p1", json=patient("p1"))
    assert revived.status_code == 201
    assert revived.json()["meta"]["versionId"] == "3"


async def test_if_match(api: httpx.AsyncClient, snapshot: Any) -> None:
    await api.put("/Patient/p1", json=patient("p1"))
    before = await snapshot()

    stale = await api.put("/Patient/p1", json=patient("p1", family="X"), headers={"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert 'W/"1"' in outcome_of(stale)["issue"][0]["diagnostics"]
    assert (await api.delete("/Patient/p1", headers={"If-Match": 'W/"2"'})).status_code == 412
    missing = await api.put("/Patient/p2", json=patient("p2"), headers={"If-Match": 'W/"1"'})
    assert missing.status_code == 412
    malformed = await api.put("/Patient/p1", json=patient("p1"), headers={"If-Match": "yesterday"})
    assert malformed.status_code == 400
    assert await snapshot() == before

    ok = await api.put("/Patient/p1", json=patient("p1", family="X"), headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200
    assert ok.headers["ETag"] == 'W/"2"'
    assert (await api.delete("/Patient/p1", headers={"If-Match": 'W/"2"'})).status_code == 204


async def test_meta_compartment_is_computed_and_accounts_are_kept(
    api: httpx.AsyncClient, assert_public: Public
) -> None:
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/1"},
        "performer": [{"reference": "Patient/2"}],
        "meta": {
            "compartment": [{"reference": "Patient/forged"}],
            "accounts": [{"reference": "Account/a1"}, {"reference": "Account/a1"}],
        },
    }
    response = await api.put("/Observation/o1", json=observation)

    assert response.status_code == 201
    meta = response.json()["meta"]
    assert meta["compartment"] == [
        {"reference": "Patient/1"},
        {"reference": "Patient/2"},
        {"reference": "Account/a1"},
    ]
    assert meta["accounts"] == [{"reference": "Account/a1"}]
    assert_public(response.json())
    for compartment in ("Patient/1", "Patient/2", "Account/a1"):
        found = (await api.get("/Observation", params={"_compartment": compartment})).json()
        assert [e["resource"]["id"] for e in found["entry"]] == ["o1"], compartment
    assert (await api.get("/Observation", params={"_compartment": "Patient/forged"})).json()["total"] == 0


async def test_vread_serves_the_current_and_earlier_versions(api: httpx.AsyncClient) -> None:
    await api.put("/Patient/p1", json=patient("p1"))
    await api.put("/Patient/p1", json=patient("p1", family="Two"))

    current = await api.get("/Patient/p1/_history/2")
    assert current.status_code == 200
    assert current.json()["name"] == [{"family": "Two"}]
    assert (await api.get("/Patient/p1/_history/1")).json()["name"] == [{"family": "Smith"}]
    assert (await api.get("/Patient/p1/_history/3")).status_code == 404
    assert (await api.get("/Patient/p1/_history/x")).status_code == 400


async def test_prefer_return_minimal_answers_headers_only(api: httpx.AsyncClient) -> None:
    response = await api.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})

    assert response.status_code == 201
    assert response.content == b""
    assert response.headers["ETag"] == 'W/"1"'
    assert (await api.get(response.headers["Location"].split("/_history")[0])).status_code == 200


async def test_read_refusals(api: httpx.AsyncClient) -> None:
    missing = await api.get("/Patient/nope")
    assert missing.status_code == 404
    assert outcome_of(missing)["issue"][0]["code"] == "not-found"
    assert (await api.get("/Patient/bad_id!")).status_code == 400
    unknown = await api.get("/Spaceship/1")
    assert unknown.status_code == 400
    assert "Spaceship" in outcome_of(unknown)["issue"][0]["diagnostics"]


BAD_WRITES = [
    pytest.param(
        "POST", "/Patient", b'{"resourceType": "Patient",', FHIR_JSON, 400, "malformed JSON", id="bad-json"
    ),
    pytest.param("POST", "/Patient", b"", FHIR_JSON, 400, "empty", id="empty"),
    pytest.param("POST", "/Patient", b"[1, 2]", FHIR_JSON, 400, "got an array", id="array"),
    pytest.param("POST", "/Patient", b'{"name": []}', FHIR_JSON, 400, "no resourceType", id="no-type"),
    pytest.param(
        "POST", "/Patient", b'{"resourceType": 7}', FHIR_JSON, 400, "must be a string", id="num-type"
    ),
    pytest.param(
        "POST",
        "/Patient",
        b'{"resourceType": "Observation"}',
        FHIR_JSON,
        400,
        "does not match",
        id="wrong-type",
    ),
    pytest.param(
        "POST", "/Patient", b'{"resourceType": "Pat"}', FHIR_JSON, 400, "unknown resource", id="unknown"
    ),
    pytest.param(
        "POST", "/Spaceship", b'{"resourceType": "Spaceship"}', FHIR_JSON, 400, "Spaceship", id="url-type"
    ),
    pytest.param(
        "POST", "/Patient", b'{"resourceType": "Patient", "meta": []}', FHIR_JSON, 400, "meta", id="meta"
    ),
    pytest.param(
        "POST",
        "/Patient",
        b"<Patient/>",
        {"Content-Type": "application/fhir+xml"},
        415,
        "Content-Type",
        id="xml",
    ),
    pytest.param("POST", "/Patient", b"{}", {"Content-Type": "text/plain"}, 415, "Content-Type", id="text"),
    pytest.param(
        "PUT",
        "/Patient/p1",
        b'{"resourceType": "Patient", "id": "p2"}',
        FHIR_JSON,
        400,
        "does not match",
        id="id-mismatch",
    ),
    pytest.param(
        "PUT", "/Patient/p1", b'{"resourceType": "Patient"}', FHIR_JSON, 400, "carry the id", id="no-id"
    ),
    pytest.param(
        "PUT",
        "/Patient/a_b",
        b'{"resourceType": "Patient", "id": "a_b"}',
        FHIR_JSON,
        400,
        "invalid id",
        id="bad-id",
    ),
    pytest.param(
        "PUT",
        "/Patient/p1",
        b'{"resourceType": "Patient", "id": 1}',
        FHIR_JSON,
        400,
        "invalid id",
        id="numeric-id",
    ),
    pytest.param(
        "PUT",
        "/Patient/p1",
        b'{"resourceType": "Patient", "id": "p1", "x": NaN}',
        FHIR_JSON,
        400,
        "malformed JSON",
        id="nan",
    ),
]


@pytest.mark.parametrize(("method", "path", "content", "headers", "status", "says"), BAD_WRITES)
async def test_bad_input_is_refused_and_writes_nothing(
    api: httpx.AsyncClient,
    snapshot: Any,
    method: str,
    path: str,
    content: bytes,
    headers: dict[str, str],
    status: int,
    says: str,
) -> None:
    await api.put("/Patient/p1", json=patient("p1"))
    before = await snapshot()

    response = await api.request(method, path, content=content, headers=headers)

    assert response.status_code == status
    diagnostics = outcome_of(response)["issue"][0]["diagnostics"]
    assert says in diagnostics
    assert await snapshot() == before


async def test_oversized_body_is_413_and_writes_nothing(
    api: httpx.AsyncClient, snapshot: Any, settings: Settings
) -> None:
    filler = "x" * settings.max_body_bytes
    content = json.dumps(patient(text={"div": filler})).encode()

    response = await api.post("/Patient", content=content, headers=FHIR_JSON)

    assert response.status_code == 413
    assert outcome_of(response)["issue"][0]["code"] == "too-costly"
    assert await snapshot() == []
