"""Search filters on the `resources` collection: live documents only, one page at a time in `_id` order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.client_session import AsyncClientSession

from setaccounts.store.meta import Document
from setaccounts.store.resources import ResourceStore

PUBLIC = {"resource": 1, "version": 1, "deleted": 1, "type": 1}


@dataclass(frozen=True)
class SearchQuery:
    """AND of OR-lists: `types` (empty = all), each group of ids, each group of compartments.

    `ids` hold `Type/id` when the types are known, bare ids for a system search without `_type`.
    """

    types: tuple[str, ...] = ()
    ids: tuple[tuple[str, ...], ...] = ()
    compartments: tuple[tuple[str, ...], ...] = ()
    bare_ids: bool = False

    def to_filter(self) -> dict[str, Any]:
        clauses: list[dict[str, Any]] = [{"deleted": False}]
        if self.types:
            clauses.append(
                {"type": self.types[0]} if len(self.types) == 1 else {"type": {"$in": list(self.types)}}
            )
        id_field = "resource.id" if self.bare_ids else "_id"
        clauses += [{id_field: {"$in": list(group)}} for group in self.ids]
        clauses += [{"compartments": {"$in": list(group)}} for group in self.compartments]
        merged: dict[str, Any] = {}
        for clause in clauses:
            key = next(iter(clause))
            if key in merged:
                return {"$and": clauses}
            merged.update(clause)
        return merged


async def search(
    store: ResourceStore,
    query: SearchQuery,
    offset: int,
    count: int,
    session: AsyncClientSession | None = None,
) -> tuple[int, list[Document]]:
    """(total matches, one page of live documents sorted by `_id`); `count=0` reads only the total."""
    where = query.to_filter()
    total = await store.collection.count_documents(where, session=session)
    if count == 0 or offset >= total:
        return total, []
    cursor = store.collection.find(where, PUBLIC, session=session)
    page = await cursor.sort("_id", ASCENDING).skip(offset).limit(count).to_list()
    return total, page
