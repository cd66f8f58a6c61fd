"""A resource's history as FHIR serves it, the pure part: which versions a caller may list, and the
`history` Bundle of one page of them (newest first, entries with `request` and `response`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from setaccounts.auth.scopes import Interaction
from setaccounts.fhir.outcomes import not_found
from setaccounts.store.meta import Document, Resource
from setaccounts_api.rest.access import Access
from setaccounts_api.rest.decisions import new_id
from setaccounts_api.rest.etags import etag


@dataclass(frozen=True)
class HistoryPage:
    """One page of versions (stored-document shape, newest first), the caller's total, and whether older
    versions follow."""

    total: int
    versions: list[Document]
    more: bool


def check_history(ref: str, current: Document | None, access: Access) -> Document:
    """A resource's history is the caller's to list only if it may read the resource: the scope, and sight
    of the current version (a tombstone is in no compartment); otherwise 404 as if it never existed."""
    access.allow(Interaction.READ, ref.split("/", 1)[0])
    if current is None:
        raise not_found(ref)
    access.check_visible(ref, current)
    return current


def timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def history_entry(document: Document, base: str) -> dict[str, Any]:
    """A version as a `history` Bundle entry: create (version 1) POST 201, update PUT 200, delete DELETE 204
    without a resource."""
    ref: str = document["_id"]
    version: int = document["version"]
    response: dict[str, Any] = {"etag": etag(version)}
    entry: dict[str, Any] = {"fullUrl": f"{base}/{ref}"}
    if document.get("deleted"):
        request = {"method": "DELETE", "url": ref}
        response["status"] = "204 No Content"
        deleted_at = document.get("deleted_at")
        if isinstance(deleted_at, datetime):
            response["lastModified"] = timestamp(deleted_at)
    else:
        entry["resource"] = document["resource"]
        created = version == 1
        request = (
            {"method": "POST", "url": ref.split("/", 1)[0]} if created else {"method": "PUT", "url": ref}
        )
        response["status"] = "201 Created" if created else "200 OK"
        response["location"] = f"{ref}/_history/{version}"
        response["lastModified"] = document["resource"]["meta"]["lastUpdated"]
    entry["request"] = request
    entry["response"] = response
    return entry


def history_links(url: str, count: int, cursor: int | None, page: HistoryPage) -> list[dict[str, str]]:
    """self, first and (when older versions follow) next: keyset paging on the version, so a version
    written meanwhile never shifts a page."""

    def link(relation: str, before: int | None) -> dict[str, str]:
        query = [("_count", str(count))] + ([("_cursor", str(before))] if before is not None else [])
        return {"relation": relation, "url": f"{url}?{urlencode(query)}"}

    found = [link("self", cursor), link("first", None)]
    if page.more and page.versions:
        found.append(link("next", page.versions[-1]["version"]))
    return found


def history_bundle(ref: str, page: HistoryPage, base: str, count: int, cursor: int | None) -> Resource:
    bundle: Resource = {
        "resourceType": "Bundle",
        "id": new_id(),
        "type": "history",
        "total": page.total,
        "link": history_links(f"{base}/{ref}/_history", count, cursor, page),
    }
    if page.versions:
        bundle["entry"] = [history_entry(document, base) for document in page.versions]
    return bundle
