"""How a search reads one range scan, chosen once from the store's profile (`setaccounts.profile`).

- `read_indexed` (a store with limit pushdown, MongoDB): one indexed `find().sort().limit()` from the
  scan's start; a further one from the last `_id` read only while documents the index cannot rule out
  (`SearchQuery.admits`) leave the page short. Nothing is learned or written: a GET only reads.
- `WindowedReader` (a store that reads a whole index range before it limits): the same finds bounded to
  `_id` windows (`rest.windows`), sized from what earlier searches of the same shape learned, kept in the
  store (`rest.stored_hints`) so a restarted API starts from it.

Both return the same documents for the same scan (`tests/integration/api/test_search_readers.py` holds them
to the same pages); only their cost differs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.profile import StoreProfile
from setaccounts.store.meta import Document
from setaccounts_api.rest.queries import ScanRead, ScanReader, read_range
from setaccounts_api.rest.stored_hints import StoredHints
from setaccounts_api.rest.windows import Window, WindowHints, read_windows


async def read_indexed(read: ScanRead) -> list[Document]:
    found: list[Document] = []
    scan = read.scan
    while len(found) < read.want:
        batch = await read_range(read.store, scan.where, read.want, read.session)
        found += [doc for doc in batch if read.query.admits(doc)]
        if len(batch) < read.want:
            break
        scan = replace(scan, after=batch[-1]["_id"])
    return found[: read.want]


class WindowedReader:
    """`ScanReader` in `_id` windows, learning where each scan shape's ids lie (`hints`)."""

    def __init__(self, hints: WindowHints) -> None:
        self.hints = hints

    async def __call__(self, read: ScanRead) -> list[Document]:
        scan = read.scan

        async def in_window(window: Window, limit: int) -> list[Document]:
            return await read_range(read.store, scan.window(window), limit, read.session)

        start = scan.floor if scan.after is None else scan.after
        return await read_windows(
            in_window, read.query.admits, start, scan.below, read.want, self.hints, scan.shape, scan.floor
        )


async def reader_for(profile: StoreProfile, db: AsyncDatabase[dict[str, Any]]) -> ScanReader:
    """The reader the store's profile calls for (the windowed one keeps its hints in `db.search_hints`)."""
    if profile.limit_pushdown:
        return read_indexed
    kept = StoredHints(db.search_hints)
    await kept.ensure_expiry()
    return WindowedReader(WindowHints(records=kept))
