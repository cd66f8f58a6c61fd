"""MongoDB client and indexes, through PyMongo's native asyncio API."""

from __future__ import annotations

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.monitoring import CommandListener

from setaccounts.settings import Settings
from setaccounts.store.meta import Document
from setaccounts.telemetry import OFF, Tracing


def make_client(settings: Settings, tracing: Tracing = OFF) -> AsyncMongoClient[Document]:
    """A client whose writes are acknowledged only once journaled on a majority: what the services
    acknowledge (and the Kafka offsets they commit after it) survives a crash of the store. With tracing
    on, each command the client sends is a span (the PyMongo instrumentation's listener, on this client)."""
    listeners: list[CommandListener] = []
    tracer = tracing.tracer("pymongo")
    if tracer is not None:
        from opentelemetry.instrumentation.pymongo import CommandTracer

        listeners.append(CommandTracer(tracer))
    return AsyncMongoClient(
        settings.mongodb_uri,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        w="majority",
        journal=True,
        event_listeners=listeners,
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
    # The jobs listing (newest first, by requester) and a job's changed resources (versions it tagged).
    await db.jobs.create_index([("created_at", DESCENDING), ("_id", DESCENDING)], name="newest")
    await db.jobs.create_index([("requested_by", ASCENDING), ("created_at", DESCENDING)], name="requester")
    await db.history.create_index([("resource.meta.tag.code", ASCENDING), ("ref", ASCENDING)], name="tag_ref")
