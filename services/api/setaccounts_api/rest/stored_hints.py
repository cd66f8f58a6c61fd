"""Window hints kept in the `search_hints` collection (`rest.windows`), one document per scan shape.

A store without limit pushdown cannot say where an index range's ids begin without decoding the whole
range, so the first search of a shape over ids that cluster far from the range's start reads the range
(11 s for 100,000 Observations on the development store). Kept here, that is paid once per store, not
once per start of each API replica.

A hint only ever decides how wide the windows of a search are, never what it returns: a hint another
replica wrote, one left over from data since deleted, or one that cannot be read makes a search cheaper or
dearer, never wrong. So an unreadable document counts as none, and a write that loses a race to another
replica's is dropped. Documents: `{_id: shape, first, width (decimal string: widths exceed 64 bits),
chars, at}`; the shape names the scan's equalities, which may include a compartment: internal, never
served.

There is a shape per compartment searched (every patient's), so hints do not stay forever: the store drops
one whose `at` is `EXPIRY` old (a TTL index), and a process that loads one more than `RENEW` old renews its
`at`. A shape searched at least once a month keeps its hint; any other pays one first search again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from setaccounts.store.resources import now
from setaccounts_api.rest.windows import Hint

log = structlog.get_logger(__name__)

EXPIRY = timedelta(days=30)
RENEW = timedelta(days=1)


def to_document(shape: str, hint: Hint) -> dict[str, Any]:
    chars = list(hint.chars)
    return {"_id": shape, "first": hint.first, "width": str(hint.width), "chars": chars, "at": now()}


def from_document(document: dict[str, Any]) -> Hint | None:
    """The hint a document holds, or None if it holds none this code can use."""
    first, width, chars = document.get("first"), document.get("width"), document.get("chars")
    if first is not None and not isinstance(first, str):
        return None
    if not isinstance(width, str) or not width.isdigit() or len(width) > 80 or int(width) < 1:
        return None
    if not isinstance(chars, list) or not all(isinstance(seen, str) for seen in chars):
        return None
    return Hint(first, int(width), tuple(chars))


class StoredHints:
    """`HintRecords` in a collection of the API's database."""

    def __init__(self, collection: AsyncCollection[dict[str, Any]]) -> None:
        self.collection = collection

    async def ensure_expiry(self) -> None:
        """The TTL index that drops hints unused for `EXPIRY` (creating it again is a no-op)."""
        seconds = int(EXPIRY.total_seconds())
        await self.collection.create_index("at", expireAfterSeconds=seconds, name="expiry")

    async def load(self, shape: str) -> Hint | None:
        found = await self.collection.find_one({"_id": shape})
        if found is None:
            return None
        hint = from_document(found)
        if hint is None:
            log.warning("unreadable search hint ignored", shape=shape)
            return None
        at, moment = found.get("at"), now()
        if not isinstance(at, datetime) or moment - (at if at.tzinfo else at.replace(tzinfo=UTC)) > RENEW:
            await self.collection.update_one({"_id": shape}, {"$set": {"at": moment}})
        return hint

    async def save(self, shape: str, hint: Hint) -> bool:
        """Whether the hint was written. A search that has read its page is not failed for a hint it could
        not keep: the next first page tries again."""
        try:
            await self.collection.replace_one({"_id": shape}, to_document(shape, hint), upsert=True)
        except DuplicateKeyError:
            pass  # another replica inserted this shape's hint at the same moment; either will do
        except PyMongoError as exc:
            log.warning("search hint not kept", shape=shape, error=type(exc).__name__)
            return False
        return True
