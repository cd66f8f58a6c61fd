"""Window hints kept in the `search_hints` collection (`rest.windows`), one document per scan shape.

SecantusDB cannot say where an index range's ids begin without decoding the whole range, so the first
search of a shape over ids that cluster far from the range's start reads the range (11 s for 100,000
Observations). Kept here, that is paid once per store, not once per start of each API replica.

A hint only ever decides how wide the windows of a search are, never what it returns: a hint another
replica wrote, one left over from data since deleted, or one that cannot be read makes a search cheaper or
dearer, never wrong. So an unreadable document counts as none, and a write that loses a race to another
replica's is dropped. Documents: `{_id: shape, first, width (decimal string: widths exceed 64 bits),
chars, at}`; the shape names the scan's equalities, which may include a compartment: internal, never
served.
"""

from __future__ import annotations

import contextlib
from typing import Any

import structlog
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from setaccounts.store.resources import now
from setaccounts_api.rest.windows import Hint

log = structlog.get_logger(__name__)


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

    async def load(self, shape: str) -> Hint | None:
        found = await self.collection.find_one({"_id": shape})
        if found is None:
            return None
        hint = from_document(found)
        if hint is None:
            log.warning("unreadable search hint ignored", shape=shape)
        return hint

    async def save(self, shape: str, hint: Hint) -> None:
        # DuplicateKeyError: another replica inserted this shape's hint at the same moment; either will do.
        with contextlib.suppress(DuplicateKeyError):
            await self.collection.replace_one({"_id": shape}, to_document(shape, hint), upsert=True)
