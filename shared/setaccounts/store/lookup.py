"""Reading documents by `_id` in chunks, the one way every store module looks up many documents at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

# Most `_id`s one `$in` names, unless the store's profile says otherwise (`Settings.store_read_chunk`). The
# driver costs the client a fixed price per query (several hundred µs of CPU on a slow machine), so larger
# chunks are cheaper for the client; MongoDB answers an `$in` on `_id` in time that grows with the hits. A
# store whose time grows faster than the hits wants smaller chunks: measured on the development store side by
# side (5,000 documents, client / server CPU µs per document): 25 ids 60 / 150, 50 ids 44 / 190, 100 ids
# 30 / 240 (`docs/benchmarks.md`), so its launcher sets 50.
READ_CHUNK = 1000


async def by_ids(
    collection: AsyncCollection[Any],
    ids: Sequence[str],
    projection: dict[str, int] | None = None,
    session: AsyncClientSession | None = None,
    chunk: int = READ_CHUNK,
) -> AsyncIterator[dict[str, Any]]:
    """The documents whose `_id` is in `ids` (missing ones are skipped), read `chunk` ids at a time."""
    for start in range(0, len(ids), chunk):
        named = list(ids[start : start + chunk])
        async for doc in collection.find({"_id": {"$in": named}}, projection, session=session):
            yield doc
