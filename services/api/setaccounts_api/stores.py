"""The API's stores over its one database, built once in the lifespan (`app.py`) from the store's profile
and handed to routes by `deps.StoresDep`: routes ask for a store, never build one, and never see how a
search page is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.jobs import JobStore
from setaccounts.profile import StoreProfile
from setaccounts.store.history import HistoryStore
from setaccounts.store.resources import ResourceStore
from setaccounts_api.rest.access import Access
from setaccounts_api.rest.queries import Page, ScanReader, SearchQuery, search_page
from setaccounts_api.rest.store import RestStore


@dataclass(frozen=True)
class Stores:
    db: AsyncDatabase[dict[str, Any]]
    profile: StoreProfile
    reader: ScanReader  # `rest.readers.reader_for(profile)`

    def resources(self) -> ResourceStore:
        return ResourceStore(self.db, self.profile.read_chunk)

    def history(self) -> HistoryStore:
        return HistoryStore(self.db, self.profile.read_chunk)

    def rest(self, access: Access) -> RestStore:
        """The REST interactions on behalf of one caller."""
        return RestStore(self.db, access, self.profile.read_chunk)

    def jobs(self) -> JobStore:
        return JobStore(self.db)

    async def search_page(self, query: SearchQuery, after: str | None, count: int) -> Page:
        """One keyset page of a search, read as the store's profile calls for."""
        return await search_page(self.resources(), query, after, count, self.reader)
