"""Async access to the `resources` collection: reads, and writes through the one write rule with
optimistic concurrency on the stored version.

Each interaction is decided by a pure function (`decide_*`) that returns a `Change`; the store only reads
what the decision needs and applies its writes. Bundles use the same decisions, so a transaction entry and a
plain REST call behave alike.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, InsertOne, ReplaceOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from setaccounts.fhir.outcomes import FhirError, not_found
from setaccounts.store.meta import Document, Resource, Write, prepare_write, tombstone

PUBLIC = {"resource": 1, "version": 1, "deleted": 1, "type": 1}
# SecantusDB answers an `$in` on `_id` in time that grows with the square of the hits; chunks keep it linear.
IN_CHUNK = 100
CONFLICT_RETRIES = 3
_ETAG = re.compile(r'(?:W/)?"?([0-9]{1,18})"?')

WriteOp = InsertOne[Document] | ReplaceOne[Document]


class VersionConflict(Exception):
    """The stored version moved between read and write; retriable by reading again."""

    retriable = True


def now() -> datetime:
    return datetime.now(UTC)


def etag(version: int) -> str:
    """The weak ETag of a stored version: FHIR versions are content versions, not byte-exact ones."""
    return f'W/"{version}"'


def version_of_etag(value: str) -> int | None:
    """The version in `W/"3"`, `"3"` or `3` (as If-Match or Bundle.entry.request.ifMatch), else None."""
    match = _ETAG.fullmatch(value.strip())
    return int(match.group(1)) if match else None


def new_id() -> str:
    return str(uuid.uuid4())


def gone(ref: str) -> FhirError:
    return FhirError(410, "deleted", f"{ref} was deleted")


def precondition_failed(ref: str, expected: int, current: int | None) -> FhirError:
    actual = "it does not exist" if current is None else f'the current version is W/"{current}"'
    return FhirError(412, "conflict", f'If-Match W/"{expected}" failed for {ref}: {actual}')


def conflict(ref: str) -> FhirError:
    return FhirError(409, "conflict", f"{ref} was changed concurrently; retry the request", retriable=True)


# ---------------------------------------------------------------------------------------------------------
# Pure decisions: what an interaction answers and writes, given what is stored
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One interaction's outcome: the HTTP status, the document current after it and whether to store it.

    `previous` is what was read (None when nothing was stored); the write is applied only if it is unchanged.
    """

    status: int
    document: Document
    previous: Document | None
    write: bool

    @property
    def ref(self) -> str:
        ref: str = self.document["_id"]
        return ref

    def op(self) -> WriteOp | None:
        """The bulk-write operation, guarded by the version that was read."""
        if not self.write:
            return None
        if self.previous is None:
            return InsertOne(self.document)
        return ReplaceOne({"_id": self.ref, "version": self.previous["version"]}, self.document)


def _check_if_match(ref: str, previous: Document | None, if_match: int | None) -> None:
    if if_match is None:
        return
    current = previous["version"] if previous is not None else None
    if current != if_match:
        raise precondition_failed(ref, if_match, current)


def decide_create(resource: Resource, at: datetime, resource_id: str | None = None) -> Change:
    """A new resource under a server-assigned id (any id in the body is ignored, as FHIR create says)."""
    rest = {key: value for key, value in resource.items() if key not in ("resourceType", "id")}
    body = {"resourceType": resource["resourceType"], "id": resource_id or new_id(), **rest}
    write = prepare_write(body, None, at)
    return Change(201, write.document, None, write=True)


def decide_update(
    resource: Resource, previous: Document | None, at: datetime, if_match: int | None = None
) -> Change:
    """Update, or create-on-update (201) when nothing live is stored; a no-op keeps the version (200)."""
    ref = f"{resource['resourceType']}/{resource['id']}"
    _check_if_match(ref, previous, if_match)
    write: Write = prepare_write(resource, previous, at)
    existed = previous is not None and not previous.get("deleted")
    return Change(200 if existed else 201, write.document, previous, write=write.changed)


def decide_delete(ref: str, previous: Document | None, at: datetime, if_match: int | None = None) -> Change:
    """Tombstone a live resource; deleting a deleted one changes nothing; a never-stored one is 404."""
    if previous is None:
        raise not_found(ref)
    _check_if_match(ref, previous, if_match)
    if previous.get("deleted"):
        return Change(204, previous, previous, write=False)
    return Change(204, tombstone(previous, at), previous, write=True)


def decide_read(ref: str, stored: Document | None, version: int | None = None) -> Change:
    """Serve the current version (404 if never stored, 410 if deleted); only the current version is kept."""
    if stored is None:
        raise not_found(ref)
    if version is not None and version != stored["version"]:
        raise FhirError(404, "not-found", f"version {version} of {ref} is not kept (only the current one is)")
    if stored.get("deleted"):
        raise gone(ref)
    return Change(200, stored, stored, write=False)


# ---------------------------------------------------------------------------------------------------------
# Search filters
# ---------------------------------------------------------------------------------------------------------


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
        clauses: list[dict[str, Any]] = [{"deleted": False}]
        if self.types:
            clauses.append(
                {"type": self.types[0]} if len(self.types) == 1 else {"type": {"$in": list(self.types)}}
            )
        id_field = "resource.id" if self.bare_ids else "_id"
        clauses += [{id_field: {"$in": list(group)}} for group in self.ids]
        clauses += [{"compartments": {"$in": list(group)}} for group in self.compartments]
        merged: dict[str, Any] = {}
        for clause in clauses:
            key = next(iter(clause))
            if key in merged:
                return {"$and": clauses}
            merged.update(clause)
        return merged


# ---------------------------------------------------------------------------------------------------------
# I/O
# ---------------------------------------------------------------------------------------------------------


class ResourceStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.collection: AsyncCollection[Document] = db.resources

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncClientSession]:
        """A session inside a multi-document transaction: committed on exit, aborted on any exception."""
        async with self.db.client.start_session() as session, await session.start_transaction():
            yield session

    async def get(self, ref: str, session: AsyncClientSession | None = None) -> Document | None:
        """The stored document for `Type/id`, tombstones included (check `deleted`)."""
        return await self.collection.find_one({"_id": ref}, session=session)

    async def get_many(
        self,
        refs: Iterable[str],
        session: AsyncClientSession | None = None,
        projection: dict[str, int] | None = None,
    ) -> dict[str, Document]:
        """Stored documents by `Type/id` (tombstones included); missing refs are absent from the result.

        Read in chunks: a large `$in` on `_id` gets slower per match as it grows on some stores (SecantusDB:
        1,000 ids in one query take ~8x as long as ten queries of 100).
        """
        wanted = list(dict.fromkeys(refs))
        found: dict[str, Document] = {}
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start : start + IN_CHUNK]
            async for doc in self.collection.find({"_id": {"$in": chunk}}, projection, session=session):
                found[doc["_id"]] = doc
        return found

    async def apply(self, changes: Sequence[Change], session: AsyncClientSession | None = None) -> None:
        """All writes of `changes` in one bulk write; VersionConflict if a guard (version, new id) failed."""
        ops = [op for op in (change.op() for change in changes) if op is not None]
        if not ops:
            return
        replaces = sum(isinstance(op, ReplaceOne) for op in ops)
        try:
            result = await self.collection.bulk_write(ops, ordered=False, session=session)
        except (DuplicateKeyError, BulkWriteError) as exc:
            raise VersionConflict(_first_ref(changes)) from exc
        if result.matched_count < replaces:
            raise VersionConflict(_first_ref(changes))

    async def create(self, resource: Resource, session: AsyncClientSession | None = None) -> Change:
        change = decide_create(resource, now())
        await self.apply([change], session)
        return change

    async def read(
        self, ref: str, version: int | None = None, session: AsyncClientSession | None = None
    ) -> Change:
        return decide_read(ref, await self.get(ref, session), version)

    async def update(
        self, resource: Resource, if_match: int | None = None, session: AsyncClientSession | None = None
    ) -> Change:
        """Update or create-on-update; with If-Match, a version that moved meanwhile is a 412."""
        ref = f"{resource['resourceType']}/{resource['id']}"
        return await self._decide_and_apply(
            ref, lambda stored: decide_update(resource, stored, now(), if_match), session
        )

    async def delete(
        self, ref: str, if_match: int | None = None, session: AsyncClientSession | None = None
    ) -> Change:
        return await self._decide_and_apply(
            ref, lambda stored: decide_delete(ref, stored, now(), if_match), session
        )

    async def _decide_and_apply(
        self, ref: str, decide: Callable[[Document | None], Change], session: AsyncClientSession | None
    ) -> Change:
        """Read, decide, write; a concurrent write makes it read again (not inside a transaction, which a
        failed write has aborted: there the conflict goes to the caller)."""
        attempts = 1 if session is not None and session.in_transaction else CONFLICT_RETRIES
        for _ in range(attempts):
            change = decide(await self.get(ref, session))
            try:
                await self.apply([change], session)
            except VersionConflict:
                continue
            return change
        raise conflict(ref)

    async def search(
        self, query: SearchQuery, offset: int, count: int, session: AsyncClientSession | None = None
    ) -> tuple[int, list[Document]]:
        """(total matches, one page of live documents sorted by `_id`); `count=0` reads only the total."""
        where = query.to_filter()
        total = await self.collection.count_documents(where, session=session)
        if count == 0 or offset >= total:
            return total, []
        cursor = self.collection.find(where, PUBLIC, session=session)
        page = await cursor.sort("_id", ASCENDING).skip(offset).limit(count).to_list()
        return total, page


def _first_ref(changes: Sequence[Change]) -> str:
    refs = [change.ref for change in changes if change.write]
    return refs[0] if len(refs) == 1 else f"{len(refs)} resources"
