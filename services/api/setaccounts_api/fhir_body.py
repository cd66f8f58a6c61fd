"""Reading FHIR requests: the JSON body, the resource it must hold, `If-Match`, `Prefer` and the base URL.

Every refusal is a FhirError whose diagnostics name the exact problem, raised before anything is written.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio.to_thread
import structlog
from fastapi import Request

from setaccounts.fhir.outcomes import FhirError, invalid
from setaccounts.fhir.references import RESOURCE_TYPES, is_valid_id
from setaccounts.settings import Settings
from setaccounts.store.meta import Resource
from setaccounts_api.rest.etags import version_of_etag
from setaccounts_api.storable import Unstorable, check_storable

FHIR_BASE_PATH = "/fhir/R4"
JSON_MEDIA_TYPES = frozenset(
    {"application/fhir+json", "application/json", "application/json+fhir", "text/json"}
)
# Bodies from this size on are parsed and checked in a worker thread, so the event loop keeps serving.
THREAD_PARSE_BYTES = 64 * 1024
log = structlog.get_logger(__name__)


def fhir_base(request: Request, settings: Settings) -> str:
    """Absolute FHIR base (`https://host/fhir/R4`): the configured public URL, else the request's."""
    root = settings.base_url.rstrip("/") or str(request.base_url).rstrip("/")
    return root + FHIR_BASE_PATH


def _check_media_type(request: Request) -> None:
    declared = request.headers.get("content-type")
    if declared is None:
        return  # lenient: a body without a declared type is read as JSON
    media_type = declared.split(";", 1)[0].strip().lower()
    if media_type not in JSON_MEDIA_TYPES:
        raise FhirError(
            415, "not-supported", f"unsupported Content-Type {media_type!r}: send application/fhir+json"
        )


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class BodyRefused(FhirError):
    """A body that cannot be read or stored; `reason` is a fixed phrase, safe to log (no body content)."""

    def __init__(self, status: int, code: str, reason: str, detail: str, where: str | None = None) -> None:
        super().__init__(status, code, f"{reason}{detail}", expression=[where] if where else None)
        self.reason = reason


def parse_json(raw: bytes) -> Any:
    """The JSON value of `raw`, checked storable; malformed input is a 400 that says where it broke, a
    resource over the document size limit a 413. Diagnostics never quote the body's values."""
    if not raw.strip():
        raise BodyRefused(400, "invalid", "the request body is empty", ": expected a FHIR resource as JSON")
    try:
        value = json.loads(raw, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        detail = f": {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise BodyRefused(400, "invalid", "malformed JSON", detail) from exc
    except UnicodeDecodeError as exc:
        detail = f": the body is not UTF-8 ({exc.reason})"
        raise BodyRefused(400, "invalid", "malformed JSON", detail) from exc
    except (ValueError, RecursionError) as exc:
        raise BodyRefused(400, "invalid", "malformed JSON", f": {exc}") from exc
    try:
        check_storable(value)
    except Unstorable as exc:
        code = "too-costly" if exc.status == 413 else "invalid"
        raise BodyRefused(exc.status, code, exc.reason, f" at {exc.where}", exc.where) from None
    return value


async def read_json(request: Request) -> Any:
    """The request body as JSON after checking its Content-Type (415 unless JSON).

    Large bodies are parsed in a worker thread. A refused body is logged in one line: path, status, size
    and the reason, never the body or anything quoted from it.
    """
    _check_media_type(request)
    raw = await request.body()
    started = time.perf_counter()
    try:
        if len(raw) < THREAD_PARSE_BYTES:
            return parse_json(raw)
        return await anyio.to_thread.run_sync(parse_json, raw)
    except FhirError as exc:
        log.info(
            "request body refused",
            path=request.url.path,
            status=exc.status,
            reason=exc.reason if isinstance(exc, BodyRefused) else exc.code,
            bytes=len(raw),
            seconds=round(time.perf_counter() - started, 3),
        )
        raise


def check_type(resource_type: str) -> str:
    """A resource type from a URL or a body; anything outside R4 is a 400 (there is no such endpoint)."""
    if resource_type not in RESOURCE_TYPES:
        raise invalid(f"unknown resource type {resource_type!r}: not an R4 resource type")
    return resource_type


def check_id(resource_id: str) -> str:
    if not is_valid_id(resource_id):
        raise invalid(f"invalid id {resource_id!r}: an id is 1-64 characters of A-Z, a-z, 0-9, '-' and '.'")
    return resource_id


def check_resource(value: Any, resource_type: str, resource_id: str | None = None) -> Resource:
    """`value` as a resource of `resource_type`; with `resource_id` (update) its body id must match.

    Without `resource_id` (create) a body id is allowed and ignored: the server assigns ids.
    """
    if not isinstance(value, dict):
        raise invalid(f"expected a JSON object holding a FHIR resource, got {_json_kind(value)}")
    declared = value.get("resourceType")
    if declared is None:
        raise invalid("the resource has no resourceType", ["resourceType"])
    if not isinstance(declared, str):
        raise invalid(f"resourceType must be a string, got {_json_kind(declared)}", ["resourceType"])
    check_type(declared)
    if declared != resource_type:
        raise invalid(
            f"resourceType {declared!r} does not match the URL, which names {resource_type!r}",
            ["resourceType"],
        )
    _check_meta(value.get("meta"))
    if resource_id is None:
        return value
    body_id = value.get("id")
    if body_id is None:
        raise invalid(f"an update must carry the id in the body: expected id {resource_id!r}", ["id"])
    if not isinstance(body_id, str) or not is_valid_id(body_id):
        raise invalid(f"invalid id {body_id!r} in the body", [f"{resource_type}.id"])
    if body_id != resource_id:
        raise invalid(
            f"the body id {body_id!r} does not match the URL id {resource_id!r}", [f"{resource_type}.id"]
        )
    return value


def _check_meta(meta: Any) -> None:
    if meta is None:
        return
    if not isinstance(meta, dict):
        raise invalid(f"meta must be an object, got {_json_kind(meta)}", ["meta"])
    accounts = meta.get("accounts")
    if accounts is not None and not (
        isinstance(accounts, list)
        and all(isinstance(a, dict) and isinstance(a.get("reference"), str) for a in accounts)
    ):
        raise invalid("meta.accounts must be a list of References with a reference string", ["meta.accounts"])


def parse_if_match(value: str | None) -> int | None:
    """The version of an `If-Match` header (`W/"3"`, `"3"` or `3`); None when absent."""
    if value is None:
        return None
    version = version_of_etag(value)
    if version is None:
        raise invalid(f'malformed If-Match {value!r}: expected W/"<versionId>"')
    return version


def preferences(request: Request) -> dict[str, str]:
    """The `Prefer` header as `{name: value}` (`return=minimal, handling=strict`)."""
    found: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for part in header.split(","):
            name, _, value = part.strip().partition("=")
            if name:
                found[name.strip().lower()] = value.strip().strip('"').lower()
    return found


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")
