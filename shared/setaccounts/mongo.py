"""MongoDB client and indexes, through PyMongo's native asyncio API."""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.settings import Settings
from setaccounts.store.meta import Document


def make_client(settings: Settings) -> AsyncMongoClient[Document]:
    """A client whose writes are acknowledged only once journaled on a majority: what the services
    acknowledge (and the Kafka offsets they commit after it) survives a crash of the store."""
    return AsyncMongoClient(
        settings.mongodb_uri,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        w="majority",
        journal=True,
    )


async def ensure_indexes(db: AsyncDatabase[Document]) -> None:
    """Indexes every service relies on; creating an existing index is a no-op."""
    await db.resources.create_index([("members_of", ASCENDING), ("_id", ASCENDING)], name="members_of")
    # Searches: equalities first, then `_id` (the order pages are read in, by keyset).
    await db.resources.create_index([("deleted", ASCENDING), ("_id", ASCENDING)], name="search_all")
    await db.resources.create_index(
        [("type", ASCENDING), ("deleted", ASCENDING), ("_id", ASCENDING)], name="search_type"
    )
    await db.resources.create_index(
        [("compartments", ASCENDING), ("deleted", ASCENDING), ("_id", ASCENDING)], name="search_compartment"
    )
    await db.history.create_index([("ref", ASCENDING), ("version", DESCENDING)], name="ref_version")
    await db.jobs.create_index([("target", ASCENDING), ("created_at", ASCENDING)], name="target")
