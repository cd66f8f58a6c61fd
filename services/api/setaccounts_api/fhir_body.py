"""Reading FHIR requests: the JSON body, the resource it must hold, `If-Match`, `Prefer` and the base URL.

Every refusal is a FhirError whose diagnostics name the exact problem, raised before anything is written.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from setaccounts.fhir.outcomes import FhirError, invalid
from setaccounts.fhir.references import RESOURCE_TYPES, is_valid_id
from setaccounts.settings import Settings
from setaccounts.store.meta import Resource
from setaccounts_api.rest.etags import version_of_etag

FHIR_BASE_PATH = "/fhir/R4"
JSON_MEDIA_TYPES = frozenset(
    {"application/fhir+json", "application/json", "application/json+fhir", "text/json"}
)


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


def parse_json(raw: bytes) -> Any:
    """The JSON value of `raw`; malformed input is a 400 that says where it broke."""
    if not raw.strip():
        raise invalid("the request body is empty: expected a FHIR resource as JSON")
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise invalid(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except UnicodeDecodeError as exc:
        raise invalid(f"malformed JSON: the body is not UTF-8 ({exc.reason})") from exc
    except (ValueError, RecursionError) as exc:
        raise invalid(f"malformed JSON: {exc}") from exc


async def read_json(request: Request) -> Any:
    """The request body as JSON after checking its Content-Type (415 unless JSON)."""
    _check_media_type(request)
    return parse_json(await request.body())


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
