"""`POST /` with a transaction (all or nothing) or batch (each entry alone) Bundle."""

from __future__ import annotations

from fastapi import APIRouter, Request

from setaccounts_api.deps import SettingsDep, StoresDep
from setaccounts_api.fhir_body import check_resource, fhir_base, preferences, read_json
from setaccounts_api.responses import FhirResponse, fhir
from setaccounts_api.rest.bundle_runs import run_batch, run_transaction
from setaccounts_api.rest.bundles import parse_bundle
from setaccounts_api.security import AccessDep

router = APIRouter(tags=["bundle"])


@router.post("", response_class=FhirResponse)
@router.post("/", response_class=FhirResponse, include_in_schema=False)
async def process_bundle(
    request: Request, stores: StoresDep, settings: SettingsDep, access: AccessDep
) -> FhirResponse:
    """Entries answer status, location, etag and lastModified; resources on `return=representation`."""
    parsed = parse_bundle(await read_json(request), check_resource, settings.max_bundle_entries)
    store, base = stores.rest(access), fhir_base(request, settings)
    with_resources = preferences(request).get("return") == "representation"
    if parsed.kind == "transaction":
        return fhir(await run_transaction(store, parsed, base, with_resources=with_resources))
    return fhir(await run_batch(store, parsed, base, with_resources=with_resources))
