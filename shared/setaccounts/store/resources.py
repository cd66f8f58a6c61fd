"""Async reads of the `resources` collection shared by the services, and the conflict every guarded write
raises: the API's interactions (`setaccounts_api.rest`) and the propagator's writes build on these."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.store.history import HistoryStore
from setaccounts.store.lookup import READ_CHUNK, by_ids
from setaccounts.store.meta import Document, command_tag_match

# How often a write that lost a race with another writer reads again and retries (one policy everywhere).
CONFLICT_ROUNDS = 5


class VersionConflict(Exception):
    """The stored version moved between read and write; retried by reading again."""


def now() -> datetime:
    return datetime.now(UTC)


class ResourceStore:
    def __init__(self, db: AsyncDatabase[Document], read_chunk: int = READ_CHUNK) -> None:
        self.db = db
        self.collection: AsyncCollection[Document] = db.resources
        self.read_chunk = read_chunk  # most `_id`s one lookup names (the store's profile)
        self.history = HistoryStore(db, read_chunk)

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
        """Stored documents by `Type/id` (tombstones included); missing refs are absent from the result."""
        wanted = list(dict.fromkeys(refs))
        return {
            doc["_id"]: doc
            async for doc in by_ids(self.collection, wanted, projection, session, self.read_chunk)
        }

    @staticmethod
    def members_filter(owner: str) -> dict[str, Any]:
        """The members of `owner`'s compartment that propagation updates: never another Patient when the
        owner is a patient (one linked through Patient.link is in its compartment, but has its own)."""
        query: dict[str, Any] = {"members_of": owner}
        if owner.startswith("Patient/"):
            query["type"] = {"$ne": "Patient"}
        return query

    async def count_members(self, owner: str) -> int:
        """How many resources are in `owner`'s compartment, itself excluded."""
        return await self.collection.count_documents({**self.members_filter(owner), "_id": {"$ne": owner}})

    async def written_by(
        self, command_id: str, owner: str, after: str | None, limit: int, within: tuple[str, ...] | None
    ) -> list[Document]:
        """Up to `limit` current versions that command `command_id` (of target `owner`) wrote, in `_id`
        order from just after `after`; `within` keeps those in one of these compartments (None: all).

        They can only be `owner` and members of its compartment (an accounts change moves nothing between
        compartments, and any later write makes a version without the tag), so the compartment's index is
        walked instead of indexing the tag on every write of the hot collection."""
        if limit <= 0:
            return []
        tagged: dict[str, Any] = {"resource.meta.tag": command_tag_match(command_id)}
        if within is not None:
            tagged["compartments"] = {"$in": list(within)}
        query: dict[str, Any] = {**self.members_filter(owner), **tagged}
        if after is not None:
            query["_id"] = {"$gt": after}
        found = await self.collection.find(query).sort("_id", 1).limit(limit).to_list()
        if (after is None or owner > after) and all(doc["_id"] != owner for doc in found):
            target = await self.collection.find_one({"_id": owner, **tagged})  # not its own member
            if target is not None:
                found = sorted([*found, target], key=lambda doc: str(doc["_id"]))[:limit]
        return found

    async def stream_members(
        self, owner: str, after: str | None, batch_size: int
    ) -> AsyncGenerator[str, None]:
        """The references in `owner`'s compartment (itself included when it is its own member), sorted,
        from just after `after`: one streamed cursor, since paging with a fresh `$gt` query per page makes
        some stores re-scan every remaining member each time (quadratic in the compartment)."""
        query = self.members_filter(owner)
        if after:
            query["_id"] = {"$gt": after}
        cursor = self.collection.find(query, {"_id": 1}, sort=[("_id", 1)], batch_size=batch_size)
        try:
            async for doc in cursor:
                yield doc["_id"]
        finally:
            await cursor.close()
