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
from datetime import UTC, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.auth.principal import ClaimNames, principal_of
from setaccounts.mongo import ensure_indexes
from setaccounts.settings import Settings
from setaccounts.store.resources import ResourceStore, now
from setaccounts_api.rest.access import Access
from setaccounts_api.rest.queries import PUBLIC, SEARCH_INDEXES, scans, search_page
from setaccounts_api.rest.readers import WindowedReader, read_indexed
from setaccounts_api.rest.stored_hints import StoredHints
from setaccounts_api.rest.windows import Hint, WindowHints
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
        first = await search_page(ResourceStore(stored), query, None, COUNT, read_indexed)
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


async def test_the_set_up_creates_the_search_indexes_once_and_keeps_the_data(db: Db) -> None:
    """Every service sets the indexes up at start: the resources keep exactly the search indexes and the
    members index (each further index costs every write its upkeep), and running it again changes nothing."""
    await db.resources.insert_one({"_id": "Patient/p", "type": "Patient", "compartments": ["Patient/p"]})

    await ensure_indexes(db)
    first = await db.resources.index_information()
    await ensure_indexes(db)

    assert await db.resources.index_information() == first
    assert set(first) == set(SEARCH_INDEXES) | {"members_of"}
    assert await db.resources.count_documents({}) == 1


class Finds(monitoring.CommandListener):
    """The `find` commands a client sends."""

    def __init__(self) -> None:
        self.filters: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command["find"] == "resources":
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
        page = await search_page(store, query, None, COUNT, WindowedReader(hints))
        examined = []
        for _ in range(10):
            finds.filters.clear()
            after = page.documents[-1]["_id"]
            page = await search_page(store, query, after, COUNT, WindowedReader(hints))
            assert page.documents[0]["_id"] > after and len(page.documents) == COUNT
            examined.append(await docs_examined(db, finds))
    finally:
        await client.close()
    assert sum(examined) / len(examined) < 4 * COUNT and max(examined) < 400, examined


async def docs_examined(db: Db, finds: Finds) -> int:
    """How many documents the `find`s seen so far examine, by the store's own `explain`."""
    examined = 0
    for where in finds.filters:
        explained = await db.command(
            "explain",
            {"find": "resources", "filter": where, "sort": {"_id": 1}, "limit": COUNT + 1},
            verbosity="executionStats",
        )
        examined += explained["executionStats"]["totalDocsExamined"]
    return examined


async def test_a_restarted_api_reads_a_first_page_where_the_last_one_found_the_ids(
    db: Db, settings: Settings, seed: Seed
) -> None:
    """Loaded ids cluster far from the start of their range (`Observation/p07-obs-000012`): the first
    search of a shape ever reads most of the range to find them. What it learned is kept in the store
    (`search_hints`), so the first page after a restart, or on another replica, examines a few pages'
    worth; without the stored hints it examines most of the range again."""
    await ensure_indexes(db)
    for n in range(20):
        await seed(*patient_with_members(f"p{n:02d}", 100))
    query = confine(parse_params([], "Observation", strict=True), ADMIN)
    finds = Finds()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri, event_listeners=[finds])
    examined: dict[str, int] = {}
    pages: dict[str, list[str]] = {}
    try:
        watched = client[settings.mongodb_database]
        store = ResourceStore(watched)
        for label, hints in (
            ("first ever", WindowHints(records=StoredHints(watched.search_hints))),
            ("restarted", WindowHints(records=StoredHints(watched.search_hints))),
            ("restarted, hints not kept", WindowHints()),
        ):
            finds.filters.clear()
            page = await search_page(store, query, None, COUNT, WindowedReader(hints))
            pages[label] = [doc["_id"] for doc in page.documents]
            examined[label] = await docs_examined(db, finds)
    finally:
        await client.close()
    assert pages["first ever"] == [f"Observation/p00-obs-{i:06d}" for i in range(COUNT)]
    assert pages["restarted"] == pages["first ever"] == pages["restarted, hints not kept"]
    assert examined["restarted"] < 4 * COUNT, examined
    assert examined["first ever"] > 1_000 and examined["restarted, hints not kept"] > 1_000, examined
    assert await db.search_hints.count_documents({}) == 1


@pytest.mark.parametrize(
    "kept",
    [
        {"first": "Observation/zzz", "width": "1", "chars": ["z"]},  # matches that begin elsewhere now
        {"first": "Observation/p00", "width": "9" * 60, "chars": []},  # a width spanning everything
        {"first": 42, "width": "-1", "chars": "abc"},  # unreadable: counts as none
        {"width": 7},
    ],
    ids=["stale first", "vast width", "unreadable", "partial"],
)
async def test_a_kept_hint_never_changes_what_a_page_holds(db: Db, seed: Seed, kept: dict[str, Any]) -> None:
    """Whatever another replica or an older version left in `search_hints`, every page holds what it
    would hold without hints: hints size the windows, never bound the scan."""
    await ensure_indexes(db)
    for pid in ("p1", "p2", "p3"):
        await seed(*patient_with_members(pid, 30))
    query = confine(parse_params([], "Observation", strict=True), ADMIN)
    shape = scans(query, None)[0].shape
    await db.search_hints.insert_one({"_id": shape, **kept})

    async def walk(hints: WindowHints) -> list[str]:
        found, after = [], None
        while True:
            page = await search_page(ResourceStore(db), query, after, COUNT, WindowedReader(hints))
            found += [doc["_id"] for doc in page.documents]
            if not page.more:
                return found
            after = found[-1]

    expected = sorted(f"Observation/{pid}-obs-{i:06d}" for pid in ("p1", "p2", "p3") for i in range(30))
    assert await walk(WindowHints(records=StoredHints(db.search_hints))) == expected
    assert await walk(WindowHints()) == expected


async def test_kept_hints_expire_a_month_after_their_last_use(db: Db) -> None:
    """The store drops a hint 30 days after it was last used (a TTL index on `at`), and loading one more
    than a day old renews it, so the shapes searched keep theirs and the rest do not pile up."""
    kept = StoredHints(db.search_hints)
    await kept.ensure_expiry()
    await kept.ensure_expiry()  # every start sets it up again
    expiry = (await db.search_hints.index_information())["expiry"]
    assert expiry["key"] == [("at", 1)] and expiry["expireAfterSeconds"] == 30 * 24 * 3600

    old, recent = now() - timedelta(days=20), now() - timedelta(hours=2)
    await db.search_hints.insert_many(
        [
            {"_id": "old", "first": "Observation/a", "width": "5", "chars": ["O"], "at": old},
            {"_id": "recent", "first": None, "width": "7", "chars": [], "at": recent},
        ]
    )
    assert await kept.load("old") == Hint("Observation/a", 5, ("O",))
    assert await kept.load("recent") == Hint(None, 7, ())
    at = {doc["_id"]: doc["at"].replace(tzinfo=UTC) async for doc in db.search_hints.find()}
    assert at["old"] > now() - timedelta(minutes=5)
    assert abs(at["recent"] - recent) < timedelta(seconds=1)  # not rewritten at every load


async def test_a_search_is_answered_when_its_hint_cannot_be_kept(db: Db, seed: Seed) -> None:
    """A store that refuses the hint's write (here a validator no document passes) costs the next process
    a first search, never this search its answer."""
    await ensure_indexes(db)
    await seed(*patient_with_members("p1", 30))
    await db.create_collection("search_hints", validator={"never": {"$exists": True}})
    query = confine(parse_params([], "Observation", strict=True), ADMIN)

    page = await search_page(
        ResourceStore(db),
        query,
        None,
        COUNT,
        WindowedReader(WindowHints(records=StoredHints(db.search_hints))),
    )

    assert [doc["_id"] for doc in page.documents] == [f"Observation/p1-obs-{i:06d}" for i in range(COUNT)]
    assert page.more
    assert await db.search_hints.count_documents({}) == 0
