"""FHIR instance interactions: create, read, vread (any kept version), update, delete.

Only `document["resource"]` is ever served; versions travel as weak ETags and `If-Match` guards writes.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from setaccounts.fhir.outcomes import invalid, operation_outcome
from setaccounts.store.meta import Document
from setaccounts_api.deps import SettingsDep, StoresDep
from setaccounts_api.fhir_body import (
    check_id,
    check_resource,
    check_type,
    fhir_base,
    parse_if_match,
    preferences,
    read_json,
)
from setaccounts_api.responses import FhirResponse, fhir
from setaccounts_api.rest.decisions import Change
from setaccounts_api.rest.etags import etag
from setaccounts_api.security import AccessDep

router = APIRouter(tags=["crud"])
IfMatch = Annotated[str | None, Header(alias="If-Match")]


def http_date(stamp: str | datetime) -> str:
    """An RFC 9110 date (`Last-Modified`) from `meta.lastUpdated` or a stored datetime."""
    moment = datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp
    return format_datetime(moment, usegmt=True)


def resource_headers(document: Document, base: str) -> dict[str, str]:
    """ETag, Last-Modified and the versioned Location of a live stored resource."""
    version = document["version"]
    return {
        "ETag": etag(version),
        "Last-Modified": http_date(document["resource"]["meta"]["lastUpdated"]),
        "Location": f"{base}/{document['_id']}/_history/{version}",
    }


def change_response(change: Change, request: Request, base: str) -> Response:
    """The resource (or less, as `Prefer: return=` asks) with its version headers."""
    headers = resource_headers(change.document, base)
    if change.status != 201:
        headers["Content-Location"] = headers.pop("Location")
    wanted = preferences(request).get("return", "representation")
    if wanted == "minimal":
        return Response(status_code=change.status, headers=headers)
    if wanted == "operationoutcome":
        verb = {201: "created", 200: "updated" if change.write else "unchanged"}[change.status]
        body: Any = operation_outcome("informational", f"{change.ref} {verb}", severity="information")
        return fhir(body, change.status, headers)
    return fhir(change.document["resource"], change.status, headers)


@router.post("/{resource_type}", status_code=201, response_class=FhirResponse)
async def create(
    resource_type: str, request: Request, stores: StoresDep, settings: SettingsDep, access: AccessDep
) -> Response:
    check_type(resource_type)
    resource = check_resource(await read_json(request), resource_type)
    change = await stores.rest(access).create(resource)
    return change_response(change, request, fhir_base(request, settings))


@router.get("/{resource_type}/{resource_id}", response_class=FhirResponse)
async def read(
    resource_type: str,
    resource_id: str,
    stores: StoresDep,
    settings: SettingsDep,
    request: Request,
    access: AccessDep,
) -> Response:
    ref = f"{check_type(resource_type)}/{check_id(resource_id)}"
    change = await stores.rest(access).read(ref)
    return fhir(change.document["resource"], 200, _read_headers(change, fhir_base(request, settings)))


@router.get("/{resource_type}/{resource_id}/_history/{version_id}", response_class=FhirResponse)
async def vread(
    resource_type: str,
    resource_id: str,
    version_id: str,
    stores: StoresDep,
    settings: SettingsDep,
    request: Request,
    access: AccessDep,
) -> Response:
    """Any version: the current one as a read, earlier ones from history; 404 for a version that does not
    exist (or the caller may not see), 410 for a deletion."""
    ref = f"{check_type(resource_type)}/{check_id(resource_id)}"
    if not version_id.isdigit():
        raise invalid(f"invalid version id {version_id!r}: expected a number")
    change = await stores.rest(access).read(ref, int(version_id))
    return fhir(change.document["resource"], 200, _read_headers(change, fhir_base(request, settings)))


def _read_headers(change: Change, base: str) -> dict[str, str]:
    headers = resource_headers(change.document, base)
    headers["Content-Location"] = headers.pop("Location")
    return headers


@router.put("/{resource_type}/{resource_id}", response_class=FhirResponse)
async def update(
    resource_type: str,
    resource_id: str,
    request: Request,
    stores: StoresDep,
    settings: SettingsDep,
    access: AccessDep,
    if_match: IfMatch = None,
) -> Response:
    """Update or create-on-update (201); a no-op keeps version and lastUpdated (200, same ETag)."""
    check_type(resource_type)
    check_id(resource_id)
    version = parse_if_match(if_match)
    resource = check_resource(await read_json(request), resource_type, resource_id)
    change = await stores.rest(access).update(resource, version)
    return change_response(change, request, fhir_base(request, settings))


@router.delete("/{resource_type}/{resource_id}", status_code=204)
async def delete(
    resource_type: str, resource_id: str, stores: StoresDep, access: AccessDep, if_match: IfMatch = None
) -> Response:
    """Tombstone the resource (later reads answer 410); deleting it again is a no-op 204."""
    ref = f"{check_type(resource_type)}/{check_id(resource_id)}"
    change = await stores.rest(access).delete(ref, parse_if_match(if_match))
    return Response(status_code=204, headers={"ETag": etag(change.document["version"])})
