"""Reading documents by `_id` in chunks, the one way every store module looks up many documents at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

# SecantusDB answers an `$in` on `_id` in time that grows faster than the hits: 1,000 ids in one query take
# about 8x as long as ten queries of 100. The driver, though, costs the client a fixed price per query
# (several hundred µs of CPU on a slow machine), so chunks trade the store's CPU for the propagator's.
# Measured side by side (5,000 documents, client / server CPU µs per document): 25 ids 60 / 150,
# 50 ids 44 / 190, 100 ids 30 / 240; in the pipeline, 50 against 25 cut the propagator's CPU by a fifth with
# no change visible in the store's (`docs/benchmarks.md`).
IN_CHUNK = 50


async def by_ids(
    collection: AsyncCollection[Any],
    ids: Sequence[str],
    projection: dict[str, int] | None = None,
    session: AsyncClientSession | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """The documents whose `_id` is in `ids` (missing ones are skipped), read `IN_CHUNK` ids at a time."""
    for start in range(0, len(ids), IN_CHUNK):
        chunk = list(ids[start : start + IN_CHUNK])
        async for doc in collection.find({"_id": {"$in": chunk}}, projection, session=session):
            yield doc
