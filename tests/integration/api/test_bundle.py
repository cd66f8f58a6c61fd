"""Transaction and batch Bundles over HTTP: urn:uuid resolution, all-or-nothing, per-entry batch outcomes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.store.resources import VersionConflict, now
from setaccounts_api.rest.access import UNRESTRICTED
from setaccounts_api.rest.decisions import decide_create, decide_update
from setaccounts_api.rest.store import RestStore

pytestmark = pytest.mark.integration

Public = Callable[[dict[str, Any]], None]


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def put(resource: dict[str, Any], if_match: str | None = None) -> dict[str, Any]:
    request = {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
    if if_match:
        request["ifMatch"] = if_match
    return {"resource": resource, "request": request}


def call(method: str, url: str, if_match: str | None = None) -> dict[str, Any]:
    request = {"method": method, "url": url}
    if if_match:
        request["ifMatch"] = if_match
    return {"request": request}


def member(index: int, patient_ref: str) -> dict[str, Any]:
    """An Observation, Condition or Encounter pointing at the patient (the Observation also deep inside)."""
    kind = ("Observation", "Condition", "Encounter")[index % 3]
    resource: dict[str, Any] = {"resourceType": kind, "subject": {"reference": patient_ref}}
    if kind == "Observation":
        resource |= {
            "status": "final",
            "code": {"text": f"o{index}"},
            "extension": [{"url": "http://x/e", "valueReference": {"reference": patient_ref}}],
        }
    if kind == "Encounter":
        resource["status"] = "finished"
    return resource


async def test_transaction_resolves_urns_and_fills_the_compartment(
    api: httpx.AsyncClient, assert_public: Public
) -> None:
    patient_urn = urn()
    entries = [post({"resourceType": "Patient", "name": [{"family": "Urn"}]}, patient_urn)]
    entries += [post(member(i, patient_urn), urn()) for i in range(50)]

    response = await api.post("", json=bundle("transaction", *entries))

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["type"] == "transaction-response"
    assert len(answer["entry"]) == 51
    for entry in answer["entry"]:
        assert entry["response"]["status"] == "201 Created"
        assert entry["response"]["location"].endswith("/_history/1")
        assert entry["response"]["etag"] == 'W/"1"'
        assert entry["response"]["lastModified"].endswith("Z")
        assert "resource" not in entry
    patient_ref = answer["entry"][0]["response"]["location"].split("/_history")[0]
    assert patient_ref.startswith("Patient/")

    found = (await api.get("", params={"_compartment": patient_ref, "_count": "1000"})).json()
    assert found["total"] == 51
    listed = sorted(f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in found["entry"])
    written = sorted(e["response"]["location"].split("/_history")[0] for e in answer["entry"])
    assert listed == written
    for entry in found["entry"]:
        resource = entry["resource"]
        assert_public(resource)
        assert "urn:uuid" not in str(resource)
        if resource["resourceType"] != "Patient":
            assert resource["subject"] == {"reference": patient_ref}
            assert {"reference": patient_ref} in resource["meta"]["compartment"]


async def test_transaction_orders_deletes_writes_then_reads(
    api: httpx.AsyncClient, assert_public: Public
) -> None:
    for pid in ("keep", "drop", "same"):
        await api.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid})

    response = await api.post(
        "",
        json=bundle(
            "transaction",
            call("GET", "Patient/keep"),
            put({"resourceType": "Patient", "id": "keep", "gender": "other"}, if_match='W/"1"'),
            put({"resourceType": "Patient", "id": "same"}),
            put({"resourceType": "Patient", "id": "fresh"}),
            call("DELETE", "Patient/drop"),
        ),
    )

    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["200 OK", "200 OK", "200 OK", "201 Created", "204 No Content"]
    read = response.json()["entry"][0]
    assert read["resource"]["gender"] == "other"  # reads run after the writes
    assert_public(read["resource"])
    assert response.json()["entry"][2]["response"]["etag"] == 'W/"1"'  # no-op PUT made no version
    assert (await api.get("/Patient/drop")).status_code == 410
    assert (await api.get("/Patient/keep")).headers["ETag"] == 'W/"2"'


FAILING = [
    pytest.param(call("DELETE", "Patient/nobody"), 404, "Bundle.entry[1]", id="delete-missing"),
    pytest.param(call("GET", "Patient/nobody"), 404, "not found", id="read-missing"),
    pytest.param(
        put({"resourceType": "Patient", "id": "p1"}, if_match='W/"5"'), 412, "If-Match", id="if-match"
    ),
    pytest.param(
        post({"resourceType": "Observation", "subject": {"reference": "urn:uuid:dangling"}}),
        400,
        "matches no fullUrl",
        id="dangling-urn",
    ),
    pytest.param(
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Observation"}},
        400,
        "does not match",
        id="wrong-type",
    ),
    pytest.param(put({"resourceType": "Patient", "id": "x_y"}), 400, "invalid id", id="bad-id"),
    pytest.param(call("PATCH", "Patient/p1"), 400, "request.method", id="patch"),
    pytest.param(call("GET", "Patient?name=x"), 400, "not supported", id="search-url"),
    pytest.param(put({"resourceType": "Patient", "id": "new"}), 400, "only once", id="twice"),
]


@pytest.mark.parametrize(("bad", "status", "says"), FAILING)
async def test_a_failing_transaction_writes_nothing(
    api: httpx.AsyncClient, snapshot: Any, bad: dict[str, Any], status: int, says: str
) -> None:
    await api.put("/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    before = await snapshot()
    patient_urn = urn()
    good = [
        post({"resourceType": "Patient"}, patient_urn),
        put({"resourceType": "Patient", "id": "new"}),
        post({"resourceType": "Condition", "subject": {"reference": patient_urn}}),
    ]

    response = await api.post("", json=bundle("transaction", good[0], bad, *good[1:]))

    assert response.status_code == status, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert says in body["issue"][0]["diagnostics"]
    assert body["issue"][0]["diagnostics"].startswith("Bundle.entry[")
    assert await snapshot() == before


async def test_batch_entries_succeed_or_fail_alone(api: httpx.AsyncClient, assert_public: Public) -> None:
    await api.put("/Patient/p1", json={"resourceType": "Patient", "id": "p1"})

    response = await api.post(
        "",
        json=bundle(
            "batch",
            post({"resourceType": "Patient", "gender": "female"}),
            call("DELETE", "Patient/nobody"),
            put({"resourceType": "Patient", "id": "p1", "gender": "male"}, if_match='W/"9"'),
            put({"resourceType": "Patient", "id": "p2"}),
            {"request": {"method": "POST"}},
            call("GET", "Patient/p1"),
        ),
        headers={"Prefer": "return=representation"},
    )

    assert response.status_code == 200
    answer = response.json()
    assert answer["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == [
        "201 Created",
        "404 Not Found",
        "412 Precondition Failed",
        "201 Created",
        "400 Bad Request",
        "200 OK",
    ]
    for index in (1, 2, 4):
        outcome = answer["entry"][index]["response"]["outcome"]
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["diagnostics"].startswith(f"Bundle.entry[{index}]")
    for index in (0, 3, 5):
        assert_public(answer["entry"][index]["resource"])
    assert answer["entry"][5]["resource"].get("gender") is None  # the 412 wrote nothing
    assert (await api.get("/Patient/p2")).status_code == 200
    created = answer["entry"][0]["response"]["location"].split("/_history")[0]
    assert (await api.get(f"/{created}")).json()["gender"] == "female"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"resourceType": "Bundle", "type": "transaction", "entry": [', "malformed JSON"),
        (b'{"resourceType": "Patient"}', "takes a Bundle"),
        (b'{"resourceType": "Bundle", "type": "collection"}', "transaction' or 'batch"),
        (b'{"resourceType": "Bundle", "type": "batch", "entry": {}}', "must be an array"),
    ],
)
async def test_bad_bundles_are_400(api: httpx.AsyncClient, snapshot: Any, content: bytes, says: str) -> None:
    response = await api.post("", content=content, headers={"Content-Type": "application/fhir+json"})

    assert response.status_code == 400
    assert says in response.json()["issue"][0]["diagnostics"]
    assert await snapshot() == []


async def test_empty_transaction_answers_an_empty_response(api: httpx.AsyncClient) -> None:
    response = await api.post("", json=bundle("transaction"))

    assert response.status_code == 200
    assert response.json()["entry"] == []


async def test_a_write_failing_inside_the_transaction_rolls_back_the_others(
    db: AsyncDatabase[dict[str, Any]], api: httpx.AsyncClient, snapshot: Any
) -> None:
    """A guard that fails at write time (here a create-on-update racing another create) aborts every write."""
    await api.put("/Patient/taken", json={"resourceType": "Patient", "id": "taken"})
    before = await snapshot()
    store, at = RestStore(db, UNRESTRICTED), now()
    changes = [
        decide_create({"resourceType": "Patient"}, at),
        decide_update({"resourceType": "Patient", "id": "taken", "gender": "male"}, None, at),  # stale read
        decide_create({"resourceType": "Observation"}, at),
    ]

    with pytest.raises(VersionConflict):
        async with store.transaction() as session:
            await store.apply(changes, session)

    assert await snapshot() == before


@pytest.mark.slow
async def test_a_5000_resource_transaction_loads_in_seconds(api: httpx.AsyncClient) -> None:
    patient_urn = urn()
    entries = [post({"resourceType": "Patient"}, patient_urn)]
    entries += [post(member(i, patient_urn), urn()) for i in range(4999)]

    started = time.perf_counter()
    response = await api.post("", json=bundle("transaction", *entries))
    elapsed = time.perf_counter() - started

    assert response.status_code == 200, response.text[:500]
    assert elapsed < 60, f"5,000 resources took {elapsed:.1f} s"
    patient_ref = response.json()["entry"][0]["response"]["location"].split("/_history")[0]
    found = (await api.get("", params={"_compartment": patient_ref, "_count": "0"})).json()
    assert found["total"] == 5000
