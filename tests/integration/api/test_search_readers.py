"""Property: the two ways a search reads its scans (`rest.readers`: one indexed find per page, or `_id`
windows sized by what earlier searches learned) answer every query with the same pages, on the same store.
Whichever the store's profile picks, a caller sees the same results; only the cost differs.

Ids are drawn from a few runs with long shared prefixes and from scattered ones, which is what decides
how windows are sized; some resources are deleted, some belong to two patients, and the queries are the
route's own (parsed and confined as it does), scoped and unscoped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.auth.principal import ClaimNames, principal_of
from setaccounts.store.meta import Document
from setaccounts.store.resources import ResourceStore
from setaccounts_api.deps import get_stores
from setaccounts_api.rest.access import Access
from setaccounts_api.rest.queries import ScanRead, ScanReader, SearchQuery, search_page
from setaccounts_api.rest.readers import WindowedReader, read_indexed
from setaccounts_api.rest.windows import WindowHints
from setaccounts_api.routes.search import confine, parse_params
from setaccounts_api.stores import Stores
from setaccounts_dev.devkeys import claims_for
from tests.helpers.resources import Seed, patient_with_members

pytestmark = pytest.mark.integration

ACCOUNTS = ("Organization/a", "Organization/b")
ADMIN = Access(principal_of(claims_for("admin", admin=True), ClaimNames()))
SCOPED = Access(principal_of(claims_for("user", accounts=[ACCOUNTS[0]]), ClaimNames()))

ids = st.one_of(
    st.builds(lambda run, n: f"{run}-obs-{n:06d}", st.sampled_from(["p0", "p1", "zz9"]), st.integers(0, 400)),
    st.text("abcXYZ019-.", min_size=1, max_size=12),
)
observations = st.lists(
    st.tuples(
        ids,
        st.integers(0, 2),  # subject: Patient/p<n>
        st.none() | st.integers(0, 2),  # performer: a second patient's compartment too
        st.lists(st.sampled_from(ACCOUNTS), max_size=2, unique=True),
        st.booleans(),  # deleted
    ),
    max_size=60,
    unique_by=lambda o: o[0],
)
searches: list[tuple[str | None, list[tuple[str, str]]]] = [
    ("Observation", []),
    ("Patient", []),
    (None, []),
    (None, [("_type", "Observation,Patient")]),
    ("Observation", [("_compartment", "Patient/p1")]),
    (None, [("_compartment", "Patient/p2")]),
]
queries = st.tuples(
    st.sampled_from(searches),
    st.sampled_from([ADMIN, SCOPED]),
    st.integers(1, 7),  # page size
)


def resources_of(drawn: list[tuple[str, int, int | None, list[str], bool]]) -> list[dict[str, Any]]:
    patients = [
        {"resourceType": "Patient", "id": f"p{n}", "meta": {"accounts": [{"reference": ACCOUNTS[n % 2]}]}}
        for n in range(3)
    ]
    members = []
    for key, subject, performer, accounts, _ in drawn:
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "id": key,
            "status": "final",
            "subject": {"reference": f"Patient/p{subject}"},
            "meta": {"accounts": [{"reference": a} for a in accounts]},
        }
        if performer is not None:
            observation["performer"] = [{"reference": f"Patient/p{performer}"}]
        members.append(observation)
    return [*patients, *members]


async def walk(store: ResourceStore, query: SearchQuery, count: int, reader: ScanReader) -> list[list[str]]:
    """Every page of `query` by keyset, as the `next` links would walk it."""
    pages, after = [], None
    while True:
        page = await search_page(store, query, after, count, reader)
        pages.append([doc["_id"] for doc in page.documents])
        if not page.more:
            return pages
        assert page.documents, "a page that says more follow holds something"
        after = page.documents[-1]["_id"]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(drawn=observations, asked=queries)
async def test_both_readers_answer_every_query_with_the_same_pages(
    db: AsyncDatabase[dict[str, Any]],
    seed: Seed,
    drawn: list[tuple[str, int, int | None, list[str], bool]],
    asked: tuple[tuple[str | None, list[tuple[str, str]]], Access, int],
) -> None:
    await db.resources.delete_many({})
    await seed(*resources_of(drawn))
    gone = [f"Observation/{key}" for key, *_, deleted in drawn if deleted]
    await db.resources.update_many({"_id": {"$in": gone}}, {"$set": {"deleted": True}})
    (resource_type, params), access, count = asked
    query = confine(parse_params(params, resource_type, strict=True), access)
    store = ResourceStore(db)

    indexed = await walk(store, query, count, read_indexed)
    hints = WindowHints()  # one per API process: the second walk starts from what the first learned
    windowed = [await walk(store, query, count, WindowedReader(hints)) for _ in range(2)]

    assert windowed == [indexed, indexed]
    found = [ref for page in indexed for ref in page]
    expected = sorted(d["_id"] for d in await db.resources.find(query.to_filter(), {"_id": 1}).to_list())
    assert found == expected  # and both are the query's matches, in `_id` order, each once


async def test_the_route_reads_through_the_stores_the_app_was_given(
    app: FastAPI, api: httpx.AsyncClient, db: AsyncDatabase[dict[str, Any]], seed: Seed
) -> None:
    """Routes get their stores from one dependency (`deps.get_stores`): a test, or another deployment,
    hands in others and every search goes through them."""
    await seed(*patient_with_members("p1", 5))
    scans: list[SearchQuery] = []

    async def watched(read: ScanRead) -> list[Document]:
        scans.append(read.query)
        return await read_indexed(read)

    given: Stores = app.state.stores
    app.dependency_overrides[get_stores] = lambda: replace(given, reader=watched)
    try:
        answer = await api.get("/Observation", params={"_count": "2"})
    finally:
        app.dependency_overrides.clear()

    assert answer.status_code == 200, answer.text
    assert [e["resource"]["id"] for e in answer.json()["entry"]] == ["p1-obs-000000", "p1-obs-000001"]
    assert scans and all(q.types == ("Observation",) for q in scans)
