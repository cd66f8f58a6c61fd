"""Async reads of the `resources` collection shared by the services, and the conflict every guarded write
raises: the API's interactions (`setaccounts_api.rest`) and the propagator's writes build on these."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.store.meta import Document

# SecantusDB answers an `$in` on `_id` in time that grows with the square of the hits; chunks keep it linear.
IN_CHUNK = 100


class VersionConflict(Exception):
    """The stored version moved between read and write; retriable by reading again."""

    retriable = True


def now() -> datetime:
    return datetime.now(UTC)


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
