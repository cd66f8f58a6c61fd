"""`GET /{type}/{id}/_history`: a resource's versions as a `history` Bundle, newest first, paged by
`_count` and a `_cursor` (the version the next page starts below). vread is in `crud.py`."""

from __future__ import annotations

from fastapi import APIRouter, Request

from setaccounts.fhir.outcomes import invalid
from setaccounts_api.deps import SettingsDep, StoresDep
from setaccounts_api.fhir_body import check_id, check_type, fhir_base, preferences
from setaccounts_api.responses import FhirResponse, fhir
from setaccounts_api.rest.history import history_bundle
from setaccounts_api.routes.search import DEFAULT_COUNT, IGNORED, MAX_COUNT
from setaccounts_api.security import AccessDep

router = APIRouter(tags=["history"])


def _number(name: str, raw: str, minimum: int) -> int:
    if not raw.strip().isdigit() or int(raw) < minimum:
        raise invalid(f"{name} must be an integer of at least {minimum}, got {raw!r}", [name])
    return int(raw)


def parse_paging(params: list[tuple[str, str]], strict: bool) -> tuple[int, int | None]:
    """(`_count`, `_cursor`); other parameters (`_since`, `_at`: not supported) are ignored unless
    `Prefer: handling=strict` asks for a 400, as in search."""
    count, cursor = DEFAULT_COUNT, None
    for name, raw in params:
        if name == "_count":
            count = min(_number(name, raw, 0), MAX_COUNT)
        elif name == "_cursor":
            cursor = _number(name, raw, 1)
        elif strict and name not in IGNORED:
            raise invalid(
                f"unknown history parameter {name!r}: this server supports _count and _cursor", [name]
            )
    return count, cursor


@router.get("/{resource_type}/{resource_id}/_history", response_class=FhirResponse)
async def history_instance(
    resource_type: str,
    resource_id: str,
    request: Request,
    stores: StoresDep,
    settings: SettingsDep,
    access: AccessDep,
) -> FhirResponse:
    """Every version the caller may see (404 unless it may read the resource); deleted versions are
    entries with `request.method = DELETE` and no resource."""
    ref = f"{check_type(resource_type)}/{check_id(resource_id)}"
    strict = preferences(request).get("handling") == "strict"
    count, cursor = parse_paging(request.query_params.multi_items(), strict)
    page = await stores.rest(access).history_page(ref, cursor, count)
    return fhir(history_bundle(ref, page, fhir_base(request, settings), count, cursor))
