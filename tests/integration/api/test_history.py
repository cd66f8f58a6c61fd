"""Resource history over HTTP against the real store: vread and `_history` (versions newest first, paging,
deleted versions) and who may see which version."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.store.history import HistoryStore
from tests.helpers.auth import ClientAs, Issuer

pytestmark = pytest.mark.integration

Public = Callable[[dict[str, Any]], None]
A, B = "Organization/a", "Organization/b"


def patient(pid: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}


def observation(oid: str, *accounts: str, text: str = "weight") -> dict[str, Any]:
    """In no patient's compartment, so its accounts are exactly the given ones."""
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"text": text},
        "meta": {"accounts": [{"reference": a} for a in accounts]},
    }


def versions_of(bundle: dict[str, Any]) -> list[str]:
    return [e["response"]["etag"] for e in bundle.get("entry", [])]


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((lk["url"] for lk in bundle["link"] if lk["relation"] == relation), None)


async def test_every_version_is_kept_and_listed_newest_first(
    api: httpx.AsyncClient, assert_public: Public
) -> None:
    created = (
        await api.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "One"}]})
    ).json()
    pid = created["id"]
    second = (await api.put(f"/Patient/{pid}", json=patient(pid, "Two"))).json()
    third = (await api.put(f"/Patient/{pid}", json=patient(pid, "Three"))).json()
    unchanged = await api.put(f"/Patient/{pid}", json=patient(pid, "Three"))
    assert unchanged.json()["meta"]["versionId"] == "3", "a no-op write makes no version"

    response = await api.get(f"/Patient/{pid}/_history")

    assert response.status_code == 200
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    assert bundle["total"] == 3
    assert versions_of(bundle) == ['W/"3"', 'W/"2"', 'W/"1"']
    assert [e["resource"] for e in bundle["entry"]] == [third, second, created]
    assert [e["request"] for e in bundle["entry"]] == [
        {"method": "PUT", "url": f"Patient/{pid}"},
        {"method": "PUT", "url": f"Patient/{pid}"},
        {"method": "POST", "url": "Patient"},
    ]
    assert [e["response"]["status"] for e in bundle["entry"]] == ["200 OK", "200 OK", "201 Created"]
    for entry in bundle["entry"]:
        assert entry["fullUrl"] == f"http://testserver/fhir/R4/Patient/{pid}"
        assert entry["response"]["lastModified"] == entry["resource"]["meta"]["lastUpdated"]
        assert_public(entry["resource"])
    assert (await api.get(f"/Patient/{pid}")).json() == third

    for version, expected in (("1", created), ("2", second), ("3", third)):
        vread = await api.get(f"/Patient/{pid}/_history/{version}")
        assert vread.status_code == 200
        assert vread.json() == expected
        assert vread.headers["ETag"] == f'W/"{version}"'
        assert vread.headers["Content-Location"].endswith(f"/Patient/{pid}/_history/{version}")
        assert_public(vread.json())


async def test_unknown_versions_are_404_and_deleted_ones_410(api: httpx.AsyncClient) -> None:
    await api.put("/Patient/p1", json=patient("p1", "One"))
    assert (await api.delete("/Patient/p1")).status_code == 204
    recreated = (await api.put("/Patient/p1", json=patient("p1", "Again"))).json()
    assert recreated["meta"]["versionId"] == "3"

    bundle = (await api.get("/Patient/p1/_history")).json()
    assert versions_of(bundle) == ['W/"3"', 'W/"2"', 'W/"1"']
    deleted = bundle["entry"][1]
    assert "resource" not in deleted
    assert deleted["request"] == {"method": "DELETE", "url": "Patient/p1"}
    assert deleted["response"]["lastModified"] > bundle["entry"][2]["response"]["lastModified"]

    gone = await api.get("/Patient/p1/_history/2")
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    for missing in ("/Patient/p1/_history/4", "/Patient/p1/_history/0", "/Patient/nobody/_history/1"):
        response = await api.get(missing)
        assert response.status_code == 404, missing
        assert response.json()["resourceType"] == "OperationOutcome"
    assert (await api.get("/Patient/nobody/_history")).status_code == 404
    assert (await api.get("/Patient/p1/_history/x")).status_code == 400


async def test_a_deleted_resource_still_has_its_history(api: httpx.AsyncClient) -> None:
    await api.put("/Patient/p1", json=patient("p1", "One"))
    await api.delete("/Patient/p1")

    assert (await api.get("/Patient/p1")).status_code == 410
    bundle = (await api.get("/Patient/p1/_history")).json()
    assert [e["request"]["method"] for e in bundle["entry"]] == ["DELETE", "POST"]
    assert (await api.get("/Patient/p1/_history/2")).status_code == 410
    assert (await api.get("/Patient/p1/_history/1")).json()["name"] == [{"family": "One"}]


async def test_history_pages_newest_first_and_a_new_version_shifts_no_page(api: httpx.AsyncClient) -> None:
    for n in range(7):
        await api.put("/Patient/p1", json=patient("p1", f"F{n}"))

    first = (await api.get("/Patient/p1/_history", params={"_count": 3})).json()
    assert first["total"] == 7
    assert versions_of(first) == ['W/"7"', 'W/"6"', 'W/"5"']
    await api.put("/Patient/p1", json=patient("p1", "Late"))  # version 8, written between pages
    next_url = link(first, "next")
    assert next_url is not None
    second = (await api.get(next_url)).json()
    assert versions_of(second) == ['W/"4"', 'W/"3"', 'W/"2"']
    third_url = link(second, "next")
    assert third_url is not None
    third = (await api.get(third_url)).json()
    assert versions_of(third) == ['W/"1"']
    assert link(third, "next") is None
    assert third["total"] == 8

    only_total = (await api.get("/Patient/p1/_history", params={"_count": 0})).json()
    assert only_total["total"] == 8 and "entry" not in only_total
    assert (await api.get("/Patient/p1/_history", params={"_count": "-1"})).status_code == 400
    assert (await api.get("/Patient/p1/_history", params={"_cursor": "x"})).status_code == 400


async def test_history_of_writes_in_bundles(api: httpx.AsyncClient) -> None:
    await api.put("/Patient/p1", json=patient("p1", "One"))
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient("p1", "Two"), "request": {"method": "PUT", "url": "Patient/p1"}},
        ],
    }
    assert (await api.post("", json=transaction)).status_code == 200
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Patient/p1/_history/1"}},
            {"request": {"method": "GET", "url": "Patient/p1/_history/9"}},
        ],
    }
    answer = (await api.post("", json=batch)).json()

    old, missing = answer["entry"]
    assert old["response"]["status"] == "200 OK"
    assert old["resource"]["name"] == [{"family": "One"}]
    assert missing["response"]["status"] == "404 Not Found"
    assert versions_of((await api.get("/Patient/p1/_history")).json()) == ['W/"2"', 'W/"1"']

    # In a transaction the reads run after the writes: version 2 is replaced by then, and still readable.
    reads_after_write = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "GET", "url": "Patient/p1/_history/2"}},
            {"request": {"method": "GET", "url": "Patient/p1/_history/1"}},
            {"resource": patient("p1", "Three"), "request": {"method": "PUT", "url": "Patient/p1"}},
        ],
    }
    answer = (await api.post("", json=reads_after_write)).json()
    replaced, first, written = answer["entry"]
    assert replaced["resource"]["name"] == [{"family": "Two"}]
    assert first["resource"]["name"] == [{"family": "One"}]
    assert written["response"]["etag"] == 'W/"3"'


async def test_a_scoped_token_sees_only_versions_in_its_accounts(
    api: httpx.AsyncClient, client_as: ClientAs, issuer: Issuer
) -> None:
    await api.put("/Observation/o", json=observation("o", A))  # 1: in A
    await api.put("/Observation/o", json=observation("o", A, B))  # 2: in A and B
    await api.put("/Observation/o", json=observation("o", B))  # 3: in B
    await api.put("/Observation/gone", json=observation("gone", B))  # 1
    await api.delete("/Observation/gone")  # 2: deleted
    await api.put("/Observation/back", json=observation("back", B))  # 1
    await api.delete("/Observation/back")  # 2: deleted
    await api.put("/Observation/back", json=observation("back", B, text="again"))  # 3

    async with client_as(issuer.token("user-a", accounts=[A])) as user_a:
        # Versions 1 and 2 were in A, but the resource is not in A now: nothing of it is A's to see.
        for path in ("/Observation/o/_history", "/Observation/o/_history/1", "/Observation/o/_history/3"):
            response = await user_a.get(path)
            assert response.status_code == 404, path
            assert response.json()["resourceType"] == "OperationOutcome"
    async with client_as(issuer.token("user-b", accounts=[B])) as user_b:
        bundle = (await user_b.get("/Observation/o/_history")).json()
        assert versions_of(bundle) == ['W/"3"', 'W/"2"']
        assert bundle["total"] == 2
        assert (await user_b.get("/Observation/o/_history/2")).status_code == 200
        assert (await user_b.get("/Observation/o/_history/1")).status_code == 404
        # Deleted now: a tombstone is in no account, so it answers as a read does (404).
        assert (await user_b.get("/Observation/gone/_history")).status_code == 404
        assert (await user_b.get("/Observation/gone/_history/1")).status_code == 404
        # A deletion in the middle is shown to whoever saw the version it deleted.
        back = (await user_b.get("/Observation/back/_history")).json()
        assert [e["request"]["method"] for e in back["entry"]] == ["PUT", "DELETE", "POST"]
        assert (await user_b.get("/Observation/back/_history/2")).status_code == 410
    admin = (await api.get("/Observation/gone/_history")).json()
    assert versions_of(admin) == ['W/"2"', 'W/"1"']


async def test_history_needs_the_read_scope(
    client_as: ClientAs, issuer: Issuer, api: httpx.AsyncClient
) -> None:
    await api.put("/Observation/o", json=observation("o", A))
    async with client_as(issuer.token("writer", accounts=[A], scopes=["user/Observation.cu"])) as writer:
        assert (await writer.get("/Observation/o/_history")).status_code == 403
        assert (await writer.get("/Observation/o/_history/1")).status_code == 403
    async with client_as(issuer.token("reader", accounts=[A], scopes=["user/Observation.r"])) as reader:
        assert (await reader.get("/Observation/o/_history")).status_code == 200


async def test_a_version_already_kept_fails_no_transaction_and_stays_one_entry(
    api: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]]
) -> None:
    await api.put("/Patient/p1", json=patient("p1", "One"))
    stored = await db.resources.find_one({"_id": "Patient/p1"})
    assert stored is not None
    await HistoryStore(db).keep([stored])  # left by a write that died between its copy and its write
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": patient("p1", "Two"), "request": {"method": "PUT", "url": "Patient/p1"}}],
    }

    assert (await api.post("", json=transaction)).status_code == 200
    assert await db.history.count_documents({"ref": "Patient/p1"}) == 1
    assert versions_of((await api.get("/Patient/p1/_history")).json()) == ['W/"2"', 'W/"1"']
