"""Type and system search: `_id`, `_compartment`, `_type`, paged by `_count` / `_offset` in `_id` order.

Unknown parameters are ignored (and dropped from the self link) unless `Prefer: handling=strict` asks for
a 400. Deleted resources never match.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request

from setaccounts.auth.scopes import Interaction
from setaccounts.fhir.outcomes import invalid
from setaccounts.fhir.references import parse_reference
from setaccounts.store.meta import Document, Resource
from setaccounts.store.resources import ResourceStore
from setaccounts_api.deps import DbDep, SettingsDep
from setaccounts_api.fhir_body import check_id, check_type, fhir_base, preferences
from setaccounts_api.responses import FhirResponse, fhir
from setaccounts_api.rest.access import Access, forbidden
from setaccounts_api.rest.decisions import new_id
from setaccounts_api.rest.queries import SearchQuery, search
from setaccounts_api.security import AccessDep

router = APIRouter(tags=["search"])
DEFAULT_COUNT = 100
MAX_COUNT = 1000
IGNORED = frozenset({"_format", "_pretty"})  # accepted everywhere, no effect on a JSON-only server


@dataclass
class Parsed:
    """What a query string asks for, and the parameters that were applied (for the links)."""

    types: list[str] = field(default_factory=list)
    ids: list[list[str]] = field(default_factory=list)
    compartments: list[list[str]] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    applied: list[tuple[str, str]] = field(default_factory=list)


def _values(raw: str) -> list[str]:
    return [v.strip() for v in raw.split(",") if v.strip()]


def _non_negative(name: str, raw: str) -> int:
    if not raw.strip().isdigit():
        raise invalid(f"{name} must be a non-negative integer, got {raw!r}", [name])
    return int(raw)


def _compartment(raw: str) -> str:
    parsed = parse_reference(raw)
    if parsed is None or raw.count("/") != 1:
        raise invalid(f"_compartment must be a reference like Patient/123, got {raw!r}", ["_compartment"])
    return f"{parsed[0]}/{parsed[1]}"


def parse_params(params: list[tuple[str, str]], resource_type: str | None, strict: bool) -> Parsed:
    """Validate the query string; repeated parameters AND, comma-separated values OR."""
    parsed = Parsed(types=[resource_type] if resource_type else [])
    for name, raw in params:
        if name == "_count":
            parsed.count = min(_non_negative(name, raw), MAX_COUNT)
        elif name == "_offset":
            parsed.offset = _non_negative(name, raw)
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
                f"{'' if resource_type else ', _type'}, _count and _offset",
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


def links(url: str, parsed: Parsed, total: int) -> list[dict[str, str]]:
    """self / first / previous / next, carrying only the applied parameters plus the paging ones."""

    def page(offset: int) -> str:
        query = [*parsed.applied, ("_count", str(parsed.count)), ("_offset", str(offset))]
        return f"{url}?{urlencode(query, safe=',/')}"

    found = [{"relation": "self", "url": page(parsed.offset)}, {"relation": "first", "url": page(0)}]
    if parsed.offset > 0 and parsed.count > 0:
        found.append({"relation": "previous", "url": page(max(parsed.offset - parsed.count, 0))})
    if parsed.count > 0 and parsed.offset + parsed.count < total:
        found.append({"relation": "next", "url": page(parsed.offset + parsed.count)})
    return found


def searchset(base: str, url: str, parsed: Parsed, total: int, page: list[Document]) -> Resource:
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"{base}/{doc['_id']}", "resource": doc["resource"], "search": {"mode": "match"}}
        for doc in page
    ]
    bundle: Resource = {
        "resourceType": "Bundle",
        "id": new_id(),
        "type": "searchset",
        "total": total,
        "link": links(url, parsed, total),
    }
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
    request: Request, db: DbDep, settings: SettingsDep, resource_type: str | None, access: Access
) -> FhirResponse:
    strict = preferences(request).get("handling") == "strict"
    parsed = parse_params(request.query_params.multi_items(), resource_type, strict)
    total, page = await search(ResourceStore(db), confine(parsed, access), parsed.offset, parsed.count)
    base = fhir_base(request, settings)
    url = f"{base}/{resource_type}" if resource_type else base
    return fhir(searchset(base, url, parsed, total, page))


@router.get("", response_class=FhirResponse)
@router.get("/", response_class=FhirResponse, include_in_schema=False)
async def search_system(
    request: Request, db: DbDep, settings: SettingsDep, access: AccessDep
) -> FhirResponse:
    """Across types: `_type` narrows, none means every type (e.g. everything in a compartment)."""
    return await _search(request, db, settings, None, access)


@router.get("/{resource_type}", response_class=FhirResponse)
async def search_type(
    resource_type: str, request: Request, db: DbDep, settings: SettingsDep, access: AccessDep
) -> FhirResponse:
    return await _search(request, db, settings, check_type(resource_type), access)
