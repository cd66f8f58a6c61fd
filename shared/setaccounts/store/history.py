"""Resource history: every version of a resource that is no longer current, in the `history` collection.

The current version stays where reads find it (`resources`); every writer copies the version it replaces
into `history` *before* its guarded write replaces it (`HistoryStore.keep`). An entry's `_id` is
`Type/id/version` and it is only ever inserted (a duplicate is the entry already kept), so copying the same
version twice (a retry, a redelivered batch, a write that lost its race and is decided again) leaves one
entry, and a crash between the copy and the write leaves only a copy of a version that really existed (the
current one, which listings take from `resources`). A version's content never changes once written: any
content change makes a new version, and the only other write, a propagation mark, is not kept in history.

Entries are lean: the served resource, the version, whether it is a deletion (and when), and the
compartments that decide who may see it (for a deletion, those of the version it deleted).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from setaccounts.store.lookup import READ_CHUNK, by_ids
from setaccounts.store.meta import Document, command_tag_match

KEPT = ("version", "deleted", "deleted_at", "resource", "compartments")
DUPLICATE_KEY = 11000


def entry_of(document: Document) -> Document:
    """The history entry of a stored document (a live version or a tombstone), without internal fields."""
    deleted = bool(document.get("deleted"))
    entry: Document = {
        "_id": entry_id(document["_id"], document["version"]),
        "ref": document["_id"],
        "version": document["version"],
        "deleted": deleted,
        "resource": None if deleted else document["resource"],
        "compartments": document.get("deleted_from", []) if deleted else document.get("compartments", []),
    }
    if deleted:
        entry["deleted_at"] = document.get("deleted_at")
    return entry


def as_document(entry: Document) -> Document:
    """A history entry shaped like the stored document of that version (`_id` = `Type/id`)."""
    return {"_id": entry["ref"], **{key: entry.get(key) for key in KEPT}}


def entry_id(ref: str, version: int) -> str:
    return f"{ref}/{version}"


class HistoryStore:
    """The only code that touches the `history` collection."""

    def __init__(self, db: AsyncDatabase[Document], read_chunk: int = READ_CHUNK) -> None:
        self.collection: AsyncCollection[Document] = db.history
        self.read_chunk = read_chunk

    async def keep(self, superseded: Iterable[Document], session: AsyncClientSession | None = None) -> None:
        """Copy the versions about to be replaced into history; an entry already there is left as it is.

        Plain unordered inserts whose duplicate-key errors are the entries already kept (upserts cost 14x
        as much on the development store). Inside a transaction, where any write error aborts it, the
        entries already there are looked up first and only the others inserted; a copy that races with another
        transaction's fails that transaction like any concurrent write to the same resource.
        """
        entries = [entry_of(doc) for doc in superseded]
        if not entries:
            return
        if session is not None and session.in_transaction:
            present = await self._present([e["_id"] for e in entries], session)
            entries = [e for e in entries if e["_id"] not in present]
            if entries:
                await self.collection.insert_many(entries, ordered=False, session=session)
            return
        try:
            await self.collection.insert_many(entries, ordered=False, session=session)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise

    async def _present(self, ids: list[str], session: AsyncClientSession) -> set[str]:
        return {
            doc["_id"] async for doc in by_ids(self.collection, ids, {"_id": 1}, session, self.read_chunk)
        }

    async def version(
        self, ref: str, version: int, session: AsyncClientSession | None = None
    ) -> Document | None:
        """An earlier version of `ref`, shaped like a stored document, or None when none is kept."""
        entry = await self.collection.find_one({"_id": entry_id(ref, version)}, session=session)
        return as_document(entry) if entry is not None else None

    async def page(self, ref: str, below: int, limit: int, within: tuple[str, ...] | None) -> list[Document]:
        """Up to `limit` versions of `ref` older than `below`, newest first, shaped like stored documents;
        `within` keeps only versions in one of these compartments (None: all)."""
        if limit <= 0:
            return []
        cursor = self.collection.find(self._filter(ref, below, within))
        found = await cursor.sort("version", DESCENDING).limit(limit).to_list()
        return [as_document(entry) for entry in found]

    async def written_by(
        self, command_id: str, after: str | None, limit: int, within: tuple[str, ...] | None
    ) -> list[Document]:
        """Up to `limit` kept versions that command `command_id` wrote (their `meta.tag`), in `ref` order
        from just after `after`, shaped like stored documents; `within` as in `page`. A command writes a
        resource at most once, so each resource appears once (index `tag_ref`)."""
        if limit <= 0:
            return []
        query: dict[str, Any] = {"resource.meta.tag": command_tag_match(command_id)}
        if after is not None:
            query["ref"] = {"$gt": after}
        if within is not None:
            query["compartments"] = {"$in": list(within)}
        found = await self.collection.find(query).sort("ref", ASCENDING).limit(limit).to_list()
        return [as_document(entry) for entry in found]

    async def count(self, ref: str, below: int, within: tuple[str, ...] | None) -> int:
        return await self.collection.count_documents(self._filter(ref, below, within))

    @staticmethod
    def _filter(ref: str, below: int, within: tuple[str, ...] | None) -> dict[str, Any]:
        query: dict[str, Any] = {"ref": ref, "version": {"$lt": below}}
        if within is not None:
            query["compartments"] = {"$in": list(within)}
        return query
