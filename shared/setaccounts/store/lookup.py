"""Reading documents by `_id` in chunks, the one way every store module looks up many documents at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

# SecantusDB answers an `$in` on `_id` in time that grows faster than the hits: 1,000 ids in one query take
# about 8x as long as ten queries of 100, and chunks of 25 cost its server about half the CPU per document
# that chunks of 100 do (`benchmarks/store_costs.py`). Chunks keep it linear.
IN_CHUNK = 25


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
