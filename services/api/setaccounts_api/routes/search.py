"""Type and system search: `_id`, `_compartment`, `_type`, paged by `_count` in `_id` order.

Paging is by keyset: the `next` link carries `_cursor`, an opaque token for the last `_id` of the page,
and the next page reads the matches after it, so every page costs what the first one does and a resource
created meanwhile is neither skipped nor repeated. `_offset` (the older links) still works and skips
matches; its cost grows with the offset, and its `next` link continues by cursor.

`total` (FHIR `_total`): counting reads every match, so it is given when it is free (the first page holds
every match), when `_total=accurate` asks for it, or with `_count=0`; `_total=none` never gives it.

Unknown parameters are ignored (and dropped from the self link) unless `Prefer: handling=strict` asks for
a 400. Deleted resources never match.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request

from setaccounts.auth.scopes import Interaction
from setaccounts.fhir.outcomes import invalid
from setaccounts.fhir.references import parse_relative_reference
from setaccounts.store.meta import Resource
from setaccounts.store.resources import ResourceStore
from setaccounts_api.deps import SettingsDep, StoresDep
from setaccounts_api.fhir_body import check_id, check_type, fhir_base, preferences
from setaccounts_api.responses import FhirResponse, fhir
from setaccounts_api.rest.access import Access, forbidden
from setaccounts_api.rest.decisions import new_id
from setaccounts_api.rest.queries import Page, SearchQuery, count_matches, search_offset
from setaccounts_api.security import AccessDep

router = APIRouter(tags=["search"])
DEFAULT_COUNT = 100
MAX_COUNT = 1000
IGNORED = frozenset({"_format", "_pretty"})  # accepted everywhere, no effect on a JSON-only server
TOTALS = ("none", "estimate", "accurate")  # `estimate` is answered like the default


@dataclass
class Parsed:
    """What a query string asks for, and the parameters that were applied (for the links)."""

    types: list[str] = field(default_factory=list)
    ids: list[list[str]] = field(default_factory=list)
    compartments: list[list[str]] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    after: str | None = None  # the last `_id` of the previous page (from `_cursor`)
    total: str = "estimate"
    applied: list[tuple[str, str]] = field(default_factory=list)


def _values(raw: str) -> list[str]:
    return [v.strip() for v in raw.split(",") if v.strip()]


def _non_negative(name: str, raw: str) -> int:
    if not raw.strip().isdigit():
        raise invalid(f"{name} must be a non-negative integer, got {raw!r}", [name])
    return int(raw)


def _compartment(raw: str) -> str:
    parsed = parse_relative_reference(raw)
    if parsed is None:
        raise invalid(f"_compartment must be a reference like Patient/123, got {raw!r}", ["_compartment"])
    return f"{parsed[0]}/{parsed[1]}"


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(raw: str, resource_type: str | None) -> str:
    """The `_id` a `_cursor` stands for; 400 for anything this server did not hand out."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    parsed = parse_relative_reference(text)
    if parsed is None or (resource_type is not None and parsed[0] != resource_type):
        raise invalid(f"_cursor {raw!r} is not a cursor from this search's next link", ["_cursor"])
    return f"{parsed[0]}/{parsed[1]}"


def parse_params(params: list[tuple[str, str]], resource_type: str | None, strict: bool) -> Parsed:
    """Validate the query string; repeated parameters AND, comma-separated values OR."""
    parsed = Parsed(types=[resource_type] if resource_type else [])
    for name, raw in params:
        if name == "_count":
            parsed.count = min(_non_negative(name, raw), MAX_COUNT)
        elif name == "_offset":
            parsed.offset = _non_negative(name, raw)
        elif name == "_cursor":
            parsed.after = decode_cursor(raw.strip(), resource_type)
        elif name == "_total":
            if raw not in TOTALS:
                raise invalid(f"_total must be one of {', '.join(TOTALS)}, got {raw!r}", [name])
            parsed.total = raw
            parsed.applied.append((name, raw))
        elif name in IGNORED or (name in ("_type", "_id", "_compartment") and not _values(raw)):
            continue  # an empty value is no constraint
        elif name == "_type" and resource_type is None:
            parsed.types += [check_type(t) for t in _values(raw) if t not in parsed.types]
            parsed.applied.append((name, raw))
        elif name == "_id":
            parsed.ids.append([check_id(v) for v in _values(raw)])
            parsed.applied.append((name, raw))
        elif name == "_compartment":
            parsed.compartments.append([_compartment(v) for v in _values(raw)])
            parsed.applied.append((name, raw))
            continue
        elif strict:
            raise invalid(
                f"unknown search parameter {name!r}: this server supports _id, _compartment"
                f"{'' if resource_type else ', _type'}, _count, _total, _cursor and _offset",
                [name],
            )
    return parsed


def to_query(parsed: Parsed) -> SearchQuery:
    """`_id` values become `Type/id` keys when the types are known, else they match the bare id."""
    ids: list[tuple[str, ...]] = []
    for group in parsed.ids:
        refs = [f"{t}/{i}" for t in parsed.types for i in group] if parsed.types else group
        ids.append(tuple(refs))
    return SearchQuery(
        types=tuple(parsed.types),
        ids=tuple(ids),
        compartments=tuple(tuple(group) for group in parsed.compartments),
        bare_ids=not parsed.types,
    )


def links(url: str, parsed: Parsed, page: Page) -> list[dict[str, str]]:
    """self / first / next, carrying only the applied parameters plus the paging ones."""

    def link(*paging: tuple[str, str]) -> str:
        query = [*parsed.applied, ("_count", str(parsed.count)), *paging]
        return f"{url}?{urlencode(query, safe=',/')}"

    if parsed.after is not None:
        here = link(("_cursor", encode_cursor(parsed.after)))
    elif parsed.offset:
        here = link(("_offset", str(parsed.offset)))
    else:
        here = link()
    found = [{"relation": "self", "url": here}, {"relation": "first", "url": link()}]
    if page.more and page.documents:
        found.append({"relation": "next", "url": link(("_cursor", encode_cursor(page.documents[-1]["_id"])))})
    return found


def searchset(base: str, url: str, parsed: Parsed, total: int | None, page: Page) -> Resource:
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"{base}/{doc['_id']}", "resource": doc["resource"], "search": {"mode": "match"}}
        for doc in page.documents
    ]
    bundle: Resource = {"resourceType": "Bundle", "id": new_id(), "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links(url, parsed, page)
    if entries:
        bundle["entry"] = entries
    return bundle


def confine(parsed: Parsed, access: Access) -> SearchQuery:
    """The query as the caller may run it: only the types its scopes let it search (403 for a type asked
    for explicitly), and, for a non-admin, only resources in its accounts' compartments."""
    allowed = access.principal.types_for(Interaction.SEARCH)
    if allowed is not None:
        for resource_type in parsed.types:
            access.allow(Interaction.SEARCH, resource_type)
        if not parsed.types:
            if not allowed:
                raise forbidden("the token's scopes allow no search (needs e.g. system/*.s or user/*.rs)")
            parsed = replace(parsed, types=sorted(allowed))
    query = to_query(parsed)
    within = access.search_accounts()
    if within is None:
        return query
    return replace(query, compartments=(*query.compartments, within))


async def _search(
    request: Request,
    stores: StoresDep,
    settings: SettingsDep,
    resource_type: str | None,
    access: Access,
) -> FhirResponse:
    strict = preferences(request).get("handling") == "strict"
    parsed = parse_params(request.query_params.multi_items(), resource_type, strict)
    store, query = stores.resources(), confine(parsed, access)
    if parsed.count == 0:
        page = Page([], False)
    elif parsed.offset and parsed.after is None:
        page = await search_offset(store, query, parsed.offset, parsed.count)
    else:
        page = await stores.search_page(query, parsed.after, parsed.count)
    total = await _total(store, query, parsed, page)
    base = fhir_base(request, settings)
    url = f"{base}/{resource_type}" if resource_type else base
    return fhir(searchset(base, url, parsed, total, page))


async def _total(store: ResourceStore, query: SearchQuery, parsed: Parsed, page: Page) -> int | None:
    """`total` when it is free (the first page holds every match) or asked for; counting reads every match."""
    if parsed.total == "none":
        return None
    first = parsed.after is None and not parsed.offset
    if first and not page.more and parsed.count > 0:
        return len(page.documents)
    if parsed.total == "accurate" or parsed.count == 0:
        return await count_matches(store, query)
    return None


@router.get("", response_class=FhirResponse)
@router.get("/", response_class=FhirResponse, include_in_schema=False)
async def search_system(
    request: Request, stores: StoresDep, settings: SettingsDep, access: AccessDep
) -> FhirResponse:
    """Across types: `_type` narrows, none means every type (e.g. everything in a compartment)."""
    return await _search(request, stores, settings, None, access)


@router.get("/{resource_type}", response_class=FhirResponse)
async def search_type(
    resource_type: str,
    request: Request,
    stores: StoresDep,
    settings: SettingsDep,
    access: AccessDep,
) -> FhirResponse:
    return await _search(request, stores, settings, check_type(resource_type), access)
