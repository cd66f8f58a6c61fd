"""Async access to the `resources` collection: reads, and writes through the one write rule with
optimistic concurrency on the stored version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from setaccounts.store.meta import Document, Write

PUBLIC = {"resource": 1, "version": 1, "deleted": 1, "type": 1}


class VersionConflict(Exception):
    """The stored version moved between read and write; retriable by reading again."""

    retriable = True


def now() -> datetime:
    return datetime.now(UTC)


class ResourceStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection: AsyncCollection[Document] = db.resources

    async def get(self, ref: str, session: AsyncClientSession | None = None) -> Document | None:
        """The stored document for `Type/id`, tombstones included (check `deleted`)."""
        return await self.collection.find_one({"_id": ref}, session=session)

    async def save(
        self, write: Write, previous: Document | None, session: AsyncClientSession | None = None
    ) -> None:
        """Store a prepared write if nothing changed since `previous` was read; no-op writes are skipped."""
        if not write.changed:
            return
        if previous is None:
            try:
                await self.collection.insert_one(write.document, session=session)
            except DuplicateKeyError as exc:
                raise VersionConflict(write.document["_id"]) from exc
            return
        result = await self.collection.replace_one(
            {"_id": previous["_id"], "version": previous["version"]}, write.document, session=session
        )
        if result.matched_count == 0:
            raise VersionConflict(write.document["_id"])
