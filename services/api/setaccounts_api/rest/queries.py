"""Search on the `resources` collection: live documents only, one page at a time in `_id` order.

A page is read by keyset: every query is "the next matches after the last `_id` seen", so page k costs what
page 1 costs. Each query is shaped to hit one index exactly (equalities, then a range on `_id`):

- `_id` given: primary-key lookups (`Type/id`; a bare id is looked up under every type it may have);
- else `_compartment` (or the token's accounts): `search_compartment` = (compartments, deleted, _id), one
  query per compartment value, merged;
- else the types: `search_type` = (type, deleted, _id), one query per type in `_id` order;
- else everything: `search_all` = (deleted, _id).

What the driving index does not decide (other groups, types under a compartment) is checked on the
documents read (`SearchQuery.admits`), reading further batches until the page is full. How a scan is read
is the store profile's business (`rest.readers`): one indexed `find().sort().limit()`, or `_id` windows on a
store that reads a whole range before it limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession

from setaccounts.fhir.references import RESOURCE_TYPES
from setaccounts.store.meta import Document
from setaccounts.store.resources import ResourceStore
from setaccounts_api.rest.windows import Window

PUBLIC = {"resource": 1, "version": 1, "deleted": 1, "type": 1, "compartments": 1}
ALL_TYPES = tuple(sorted(RESOURCE_TYPES))

# The indexes searches read through (created by `setaccounts.mongo.ensure_indexes`).
SEARCH_INDEXES = frozenset({"_id_", "search_all", "search_type", "search_compartment"})


def type_range(resource_type: str) -> tuple[str, str]:
    """The `_id` bounds (exclusive) of one type: `Type/` < `Type/id` < `Type0` ('0' follows '/')."""
    return f"{resource_type}/", f"{resource_type}0"


@dataclass(frozen=True)
class SearchQuery:
    """AND of OR-lists: `types` (empty = all), each group of ids, each group of compartments.

    `ids` hold `Type/id` when the types are known, bare ids for a system search without `_type`.
    """

    types: tuple[str, ...] = ()
    ids: tuple[tuple[str, ...], ...] = ()
    compartments: tuple[tuple[str, ...], ...] = ()
    bare_ids: bool = False

    def to_filter(self) -> dict[str, Any]:
        """The whole query as one filter (for counting `total`, and the `_offset` path)."""
        clauses: list[dict[str, Any]] = [{"deleted": False}]
        if self.types:
            clauses.append(
                {"type": self.types[0]} if len(self.types) == 1 else {"type": {"$in": list(self.types)}}
            )
        clauses += [{"_id": {"$in": list(group)}} for group in self.id_keys()]
        clauses += [{"compartments": {"$in": list(group)}} for group in self.compartments]
        merged: dict[str, Any] = {}
        for clause in clauses:
            key = next(iter(clause))
            if key in merged:
                return {"$and": clauses}
            merged.update(clause)
        return merged

    def id_keys(self) -> list[tuple[str, ...]]:
        """Each `_id` group as primary keys: a bare id stands for that id under every type searched."""
        if not self.bare_ids:
            return list(self.ids)
        types = self.types or ALL_TYPES
        return [tuple(f"{t}/{i}" for i in group for t in types) for group in self.ids]

    def admits(self, doc: Document) -> bool:
        """Whether a live document read through some index matches every part of the query."""
        if doc.get("deleted"):
            return False
        if self.types and doc.get("type") not in self.types:
            return False
        if any(doc["_id"] not in group for group in self.id_keys()):
            return False
        held = set(doc.get("compartments") or ())
        return all(held.intersection(group) for group in self.compartments)


@dataclass(frozen=True)
class Scan:
    """One index-exact query whose matches come in `_id` order: the equalities `equals` (or an `_id`
    `$in`), `_id`s above `after` and below `below`. `floor` bounds its `_id`s from below, so a scan can be
    skipped once the page is full with smaller ones."""

    equals: dict[str, Any]
    after: str | None = None
    below: str | None = None
    floor: str = ""

    @property
    def where(self) -> dict[str, Any]:
        """The whole scan as one filter."""
        return _bounded(self.equals, self.after, False, self.below)

    def window(self, window: Window) -> dict[str, Any]:
        """The part of the scan in one `_id` window."""
        return _bounded(self.equals, window.low, window.inclusive, window.high)

    @property
    def shape(self) -> str:
        """What the scan reads, whatever the page: the key its window hints are kept under."""
        return repr(sorted(self.equals.items()))


def _bounded(equals: dict[str, Any], low: str | None, inclusive: bool, high: str | None) -> dict[str, Any]:
    bounds: dict[str, str] = {}
    if low is not None:
        bounds["$gte" if inclusive else "$gt"] = low
    if high is not None:
        bounds["$lt"] = high
    return {**equals, "_id": bounds} if bounds else equals


def scans(query: SearchQuery, after: str | None) -> list[Scan]:
    """The index-exact queries that, merged in `_id` order and checked by `admits`, answer `query`."""
    keys = query.id_keys()
    if keys:
        wanted = sorted(k for k in set(keys[0]) if after is None or k > after)
        return [Scan({"_id": {"$in": wanted}})] if wanted else []
    if query.compartments:
        # The first group drives (the caller's `_compartment`, else the token's accounts); one type narrows
        # the `_id` range, more types are checked on the documents.
        low, high = type_range(query.types[0]) if len(query.types) == 1 else (None, None)
        start = max(after, low) if after is not None and low is not None else (after or low)
        return [
            Scan({"compartments": value, "deleted": False}, start, high, low or "")
            for value in sorted(set(query.compartments[0]))
        ]
    if query.types:
        found = []
        for resource_type in sorted(set(query.types)):
            low, high = type_range(resource_type)
            if after is not None and after >= high:
                continue
            start = after if after is not None and after > low else None
            found.append(Scan({"type": resource_type, "deleted": False}, start, high, low))
        return found
    return [Scan({"deleted": False}, after)]


@dataclass(frozen=True)
class Page:
    documents: list[Document]
    more: bool  # another page follows


@dataclass(frozen=True)
class ScanRead:
    """One range scan of a page to read: up to `want` documents that `query` admits, in `_id` order."""

    store: ResourceStore
    query: SearchQuery
    scan: Scan
    want: int
    session: AsyncClientSession | None = None


class ScanReader(Protocol):
    """Reads a range scan (`rest.readers`: the store's profile picks one)."""

    async def __call__(self, read: ScanRead) -> list[Document]: ...


async def read_range(
    store: ResourceStore, where: dict[str, Any], limit: int, session: AsyncClientSession | None
) -> list[Document]:
    """The first `limit` documents of one scan's filter (`Scan.where`, `Scan.window`) in `_id` order: one
    indexed `find().sort().limit()`."""
    cursor = store.collection.find(where, PUBLIC, session=session)
    return await cursor.sort("_id", ASCENDING).limit(limit).to_list()


async def search_page(
    store: ResourceStore,
    query: SearchQuery,
    after: str | None,
    count: int,
    reader: ScanReader,
    session: AsyncClientSession | None = None,
) -> Page:
    """The first `count` matches with an `_id` above `after` (keyset paging), and whether more follow;
    `reader` reads each range scan."""
    want = count + 1
    found: dict[str, Document] = {}
    for scan in scans(query, after):
        if len(found) >= want and sorted(found)[count] < scan.floor:
            break  # every later scan's ids are larger than a full page's
        if "_id" in scan.equals:  # primary keys: as many as the caller named, read at once
            cursor = store.collection.find(scan.equals, PUBLIC, session=session)
            rows = [doc for doc in await cursor.sort("_id", ASCENDING).to_list() if query.admits(doc)]
        else:
            rows = await reader(ScanRead(store, query, scan, want, session))
        for doc in rows[:want]:
            found[doc["_id"]] = doc
    ordered = [found[key] for key in sorted(found)]
    return Page(ordered[:count], len(ordered) > count)


async def count_matches(
    store: ResourceStore, query: SearchQuery, session: AsyncClientSession | None = None
) -> int:
    """How many live resources match: reads every match, so only on request (`_total=accurate`)."""
    return await store.collection.count_documents(query.to_filter(), session=session)


async def search_offset(
    store: ResourceStore,
    query: SearchQuery,
    offset: int,
    count: int,
    session: AsyncClientSession | None = None,
) -> Page:
    """The older `_offset` paging: skips `offset` matches (its cost grows with the offset)."""
    cursor = store.collection.find(query.to_filter(), PUBLIC, session=session)
    rows = await cursor.sort("_id", ASCENDING).skip(offset).limit(count + 1).to_list()
    return Page(rows[:count], len(rows) > count)
