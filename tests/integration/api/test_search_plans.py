"""Every search reads through an index: the queries the search route builds (`routes.search` parses and
confines, `rest.queries.scans` shapes them) are run through the store's `explain`, first page and a later
page, and fail on a collection scan.

A blocking SORT fails too, except on SecantusDB: it reports a SORT above every compound index whose
leading field is not the sort field (its planner's rule, `sorted_by_index = sort field == leading field`),
even where the `_id` range walk is already in order. There the test checks that the SORT sits directly on
the expected index scan, so it only orders what the index bounds matched (`totalDocsExamined` says how
many).
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.auth.principal import ClaimNames, principal_of
from setaccounts.mongo import RETIRED, ensure_indexes
from setaccounts.settings import Settings
from setaccounts.store.resources import ResourceStore
from setaccounts_api.rest.access import Access
from setaccounts_api.rest.queries import PUBLIC, SEARCH_INDEXES, scans, search_page
from setaccounts_api.rest.windows import WindowHints
from setaccounts_api.routes.search import confine, parse_params
from setaccounts_dev.devkeys import claims_for
from tests.helpers.resources import Seed, patient_with_members

pytestmark = pytest.mark.integration

Db = AsyncDatabase[dict[str, Any]]
ACME = "Organization/acme"
ADMIN = Access(principal_of(claims_for("admin", admin=True), ClaimNames()))
USER = Access(principal_of(claims_for("user", accounts=[ACME]), ClaimNames()))
COUNT = 20

CASES: list[tuple[str, str | None, dict[str, str], Access, str]] = [
    ("type _id", "Observation", {"_id": "p1-obs-000003,p2-obs-000004"}, ADMIN, "_id_"),
    ("system _id", None, {"_id": "p1-obs-000003,p3"}, ADMIN, "_id_"),
    ("type", "Observation", {}, ADMIN, "search_type"),
    ("system _type", None, {"_type": "Patient,Observation"}, ADMIN, "search_type"),
    ("system", None, {}, ADMIN, "search_all"),
    ("_compartment", None, {"_compartment": "Patient/p1"}, ADMIN, "search_compartment"),
    ("type _compartment", "Observation", {"_compartment": "Patient/p2"}, ADMIN, "search_compartment"),
    ("scoped type", "Observation", {}, USER, "search_compartment"),
    ("scoped system", None, {}, USER, "search_compartment"),
    ("scoped _compartment", None, {"_compartment": "Patient/p1"}, USER, "search_compartment"),
]


def stages(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan's stages from the top down (single-input plans)."""
    found = []
    node: dict[str, Any] | None = plan
    while node is not None:
        found.append(node)
        node = node.get("inputStage")
    return found


@pytest.fixture
async def stored(db: Db, seed: Seed) -> Db:
    """Four patients with 60 observations each (two in account acme), a few hundred resources."""
    await ensure_indexes(db)
    for pid, accounts in (("p1", [ACME]), ("p2", [ACME]), ("p3", None), ("p4", None)):
        members = patient_with_members(pid, 60, accounts)
        if accounts:
            members = [{**r, "meta": {"accounts": [{"reference": ACME}]}} for r in members]
        await seed(*members)
    return db


@pytest.mark.parametrize(
    ("label", "resource_type", "params", "access", "index"), CASES, ids=[c[0] for c in CASES]
)
@pytest.mark.parametrize("position", ["first page", "later page"])
async def test_each_search_reads_through_its_index(
    stored: Db,
    label: str,
    resource_type: str | None,
    params: dict[str, str],
    access: Access,
    index: str,
    position: str,
) -> None:
    parsed = parse_params(list(params.items()), resource_type, strict=True)
    query = confine(parsed, access)
    after = None
    if position == "later page":
        first = await search_page(ResourceStore(stored), query, None, COUNT)
        assert first.documents, "the case should match something"
        after = first.documents[(len(first.documents) - 1) // 2]["_id"]
    planned = scans(query, after)
    assert planned, "no query to explain"

    for scan in planned:
        explained = await stored.command(
            "explain",
            {
                "find": "resources",
                "filter": scan.where,
                "sort": {"_id": 1},
                "limit": COUNT + 1,
                "projection": PUBLIC,
            },
            verbosity="executionStats",
        )
        plan = stages(explained["queryPlanner"]["winningPlan"])
        names = [stage["stage"] for stage in plan]
        scan_stage = plan[-1]
        assert "COLLSCAN" not in names, f"{label}: {scan.where} is a collection scan: {names}"
        assert scan_stage["stage"] == "IXSCAN", names
        assert scan_stage["indexName"] == index, f"{label}: {scan.where} used {scan_stage['indexName']}"
        assert scan_stage["indexName"] in SEARCH_INDEXES
        if "SORT" in names:
            assert explained["serverInfo"]["host"] == "secantus", f"{label}: blocking sort {names}"
            assert names[names.index("SORT") + 1 :] == ["FETCH", "IXSCAN"], names
        examined = explained["executionStats"]["totalDocsExamined"]
        stored_count = await stored.resources.estimated_document_count()
        assert examined < stored_count or (len(planned) == 1 and index == "search_all"), (label, examined)


async def test_indexes_retired_by_the_search_indexes_are_dropped_from_an_existing_store(db: Db) -> None:
    """A store set up by an earlier version keeps its data and loses only the indexes a search index
    covers; running the set-up again (every service does at start) changes nothing."""
    await db.resources.insert_one({"_id": "Patient/p", "type": "Patient", "compartments": ["Patient/p"]})
    await db.resources.create_index([("compartments", 1)], name="compartments")
    await db.resources.create_index([("type", 1), ("_id", 1)], name="type")

    await ensure_indexes(db)
    await ensure_indexes(db)

    names = set(await db.resources.index_information())
    assert not names & set(RETIRED), names
    assert set(SEARCH_INDEXES) | {"_id_", "members_of"} <= names
    assert await db.resources.count_documents({}) == 1


class Finds(monitoring.CommandListener):
    """The `find` commands a client sends."""

    def __init__(self) -> None:
        self.filters: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.filters.append(dict(event.command["filter"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_a_page_of_a_large_type_examines_about_a_page(db: Db, settings: Settings, seed: Seed) -> None:
    """Pages of 20 out of 2,000 Observations with server-style (UUID) ids: once the first page has shown
    where the ids lie, each later page's queries examine a few pages' worth of documents, not the
    thousands an `_id` range left open above would (SecantusDB reads a whole range before it limits)."""
    await ensure_indexes(db)
    rng = random.Random(11)
    await seed(
        *(
            {"resourceType": "Observation", "id": str(uuid.UUID(int=rng.getrandbits(128))), "status": "final"}
            for _ in range(2_000)
        )
    )
    finds = Finds()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, event_listeners=[finds])
    try:
        store, hints = ResourceStore(client[settings.mongodb_database]), WindowHints()
        query = confine(parse_params([], "Observation", strict=True), ADMIN)
        page = await search_page(store, query, None, COUNT, hints)
        examined = []
        for _ in range(10):
            finds.filters.clear()
            after = page.documents[-1]["_id"]
            page = await search_page(store, query, after, COUNT, hints)
            assert page.documents[0]["_id"] > after and len(page.documents) == COUNT
            examined.append(0)
            for where in finds.filters:
                explained = await db.command(
                    "explain",
                    {"find": "resources", "filter": where, "sort": {"_id": 1}, "limit": COUNT + 1},
                    verbosity="executionStats",
                )
                examined[-1] += explained["executionStats"]["totalDocsExamined"]
    finally:
        await client.close()
    assert sum(examined) / len(examined) < 4 * COUNT and max(examined) < 400, examined
