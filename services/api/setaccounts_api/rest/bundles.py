"""Transaction and batch Bundles, the pure part: parse the entries, resolve `urn:uuid:` fullUrls, decide
each entry's change and build the response (unit-tested without a database; `bundle_runs.py` writes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from http import HTTPStatus
from typing import Any, Literal

from setaccounts.fhir.outcomes import FhirError, invalid
from setaccounts.fhir.references import RESOURCE_TYPES, is_valid_id
from setaccounts.store.meta import Document, Resource
from setaccounts_api.rest.access import UNRESTRICTED, Access
from setaccounts_api.rest.decisions import (
    Change,
    decide_create,
    decide_delete,
    decide_read,
    decide_update,
    new_id,
)
from setaccounts_api.rest.etags import etag, version_of_etag

Kind = Literal["transaction", "batch"]
Method = Literal["GET", "POST", "PUT", "DELETE"]
ResourceCheck = Callable[[Any, str, str | None], Resource]
"""Validates an entry's resource for (type, id); id None = create. Raises FhirError."""

METHODS: tuple[Method, ...] = ("GET", "POST", "PUT", "DELETE")
# FHIR transaction processing order: deletes, creates, updates, then reads (which see the writes).
ORDER: dict[str, int] = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}
URN_PREFIXES = ("urn:uuid:", "urn:oid:")


@dataclass(frozen=True)
class Entry:
    """One parsed `Bundle.entry`: what it asks for, already validated."""

    index: int
    method: Method
    resource_type: str
    resource_id: str | None = None
    version: int | None = None
    resource: Resource | None = None
    full_url: str | None = None
    if_match: int | None = None

    @property
    def ref(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"


EntryResult = tuple[Method | None, Change | FhirError]
"""An entry's method (None when it could not be parsed) and what it came to."""


@dataclass(frozen=True)
class BundleRequest:
    kind: Kind
    entries: list[Entry | FhirError]


# ---------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------


def at_entry(index: int, error: FhirError) -> FhirError:
    """The same error, located at `Bundle.entry[index]` so the client knows which entry failed."""
    where = f"Bundle.entry[{index}]"
    return FhirError(
        error.status,
        error.code,
        f"{where}: {error.diagnostics}",
        expression=[where, *(error.expression or [])],
        retriable=error.retriable,
    )


def parse_bundle(body: Any, check: ResourceCheck, max_entries: int | None = None) -> BundleRequest:
    """The Bundle's kind and entries; a bad Bundle is a 400, one with more than `max_entries` entries a
    413, and a bad entry becomes that entry's error."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise invalid("POST to the base URL takes a Bundle of type transaction or batch")
    kind = body.get("type")
    if kind not in ("transaction", "batch"):
        raise invalid(f"Bundle.type must be 'transaction' or 'batch', got {kind!r}", ["Bundle.type"])
    raw = body.get("entry", [])
    if not isinstance(raw, list):
        raise invalid("Bundle.entry must be an array", ["Bundle.entry"])
    if max_entries is not None and len(raw) > max_entries:
        raise FhirError(
            413,
            "too-costly",
            f"the Bundle has {len(raw)} entries; this server takes at most {max_entries} per Bundle: "
            "split it into several",
            expression=["Bundle.entry"],
        )
    entries: list[Entry | FhirError] = []
    for index, item in enumerate(raw):
        try:
            entries.append(parse_entry(index, item, check))
        except FhirError as error:
            entries.append(at_entry(index, error))
    return BundleRequest(kind, entries)


def parse_entry(index: int, item: Any, check: ResourceCheck) -> Entry:
    if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
        raise invalid("an entry needs a request with a method and a url", ["request"])
    request = item["request"]
    method = request.get("method")
    if method not in METHODS:
        raise invalid(
            f"request.method must be one of {', '.join(METHODS)}, got {method!r}", ["request.method"]
        )
    url = request.get("url")
    if not isinstance(url, str) or not url.strip("/"):
        raise invalid("request.url must be a relative URL such as 'Patient' or 'Patient/1'", ["request.url"])
    resource_type, resource_id, version = parse_url(method, url)
    if_match = _if_match(request.get("ifMatch"))
    full_url = item.get("fullUrl") if isinstance(item.get("fullUrl"), str) else None
    resource = None
    if method in ("POST", "PUT"):
        if "resource" not in item:
            raise invalid(f"a {method} entry needs a resource", ["resource"])
        resource = check(item["resource"], resource_type, resource_id)
    return Entry(index, method, resource_type, resource_id, version, resource, full_url, if_match)


def parse_url(method: str, url: str) -> tuple[str, str | None, int | None]:
    """(type, id, version) of an entry's relative request.url; conditional and search URLs are refused."""
    if "?" in url:
        raise FhirError(
            400,
            "not-supported",
            f"conditional and search URLs are not supported: {url!r}",
            expression=["request.url"],
        )
    if "://" in url:
        raise invalid(f"request.url must be relative to the base, got {url!r}", ["request.url"])
    parts = url.strip("/").split("/")
    expected = {"POST": "Type", "PUT": "Type/id", "DELETE": "Type/id", "GET": "Type/id[/_history/vid]"}
    shapes = {"POST": (1,), "PUT": (2,), "DELETE": (2,), "GET": (2, 4)}[method]
    if len(parts) not in shapes or (len(parts) == 4 and (parts[2] != "_history" or not parts[3].isdigit())):
        raise invalid(f"{method} {url!r}: expected {expected[method]}", ["request.url"])
    if parts[0] not in RESOURCE_TYPES:
        raise invalid(f"unknown resource type {parts[0]!r} in request.url", ["request.url"])
    if len(parts) >= 2 and not is_valid_id(parts[1]):
        raise invalid(f"invalid id {parts[1]!r} in request.url", ["request.url"])
    return parts[0], parts[1] if len(parts) >= 2 else None, int(parts[3]) if len(parts) == 4 else None


def _if_match(value: Any) -> int | None:
    if value is None:
        return None
    version = version_of_etag(value) if isinstance(value, str) else None
    if version is None:
        raise invalid(f'request.ifMatch must look like W/"3", got {value!r}', ["request.ifMatch"])
    return version


def require_all(request: BundleRequest) -> list[Entry]:
    """A transaction's entries, or the first entry's error: one bad entry fails the whole transaction."""
    entries: list[Entry] = []
    for entry in request.entries:
        if isinstance(entry, FhirError):
            raise entry
        entries.append(entry)
    return entries


# ---------------------------------------------------------------------------------------------------------
# urn:uuid resolution
# ---------------------------------------------------------------------------------------------------------


def assign_ids(
    entries: list[Entry], make_id: Callable[[], str] = new_id
) -> tuple[dict[int, str], dict[str, str]]:
    """Server ids for creates (by entry index), and each `urn:` fullUrl's `Type/id` reference."""
    ids: dict[int, str] = {}
    urn_map: dict[str, str] = {}
    for entry in entries:
        if entry.method == "POST":
            ids[entry.index] = make_id()
            ref = f"{entry.resource_type}/{ids[entry.index]}"
        elif entry.method == "PUT":
            ref = entry.ref
        else:
            continue
        if entry.full_url is not None and entry.full_url.startswith(URN_PREFIXES):
            if entry.full_url in urn_map:
                raise at_entry(
                    entry.index, invalid(f"fullUrl {entry.full_url!r} is used by two entries", ["fullUrl"])
                )
            urn_map[entry.full_url] = ref
    return ids, urn_map


def rewrite_references(value: Any, urn_map: Mapping[str, str], unresolved: list[str] | None = None) -> Any:
    """A copy of `value` where every `reference` naming a mapped urn names its `Type/id` instead.

    Unmapped `urn:uuid:` references (local ids nothing in the Bundle carries) are appended to `unresolved`.
    """
    if isinstance(value, dict):
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and item.startswith(URN_PREFIXES):
                if item in urn_map:
                    item = urn_map[item]
                elif unresolved is not None and item.startswith("urn:uuid:"):
                    unresolved.append(item)
                copied[key] = item
            else:
                copied[key] = rewrite_references(item, urn_map, unresolved)
        return copied
    if isinstance(value, list):
        return [rewrite_references(item, urn_map, unresolved) for item in value]
    return value


def resolve_entries(entries: list[Entry], ids: Mapping[int, str], urn_map: Mapping[str, str]) -> list[Entry]:
    """Entries with their server ids set and urn references rewritten; a dangling urn is a 400."""
    resolved: list[Entry] = []
    for entry in entries:
        if entry.resource is None:
            resolved.append(entry)
            continue
        unresolved: list[str] = []
        resource = rewrite_references(entry.resource, urn_map, unresolved)
        if unresolved:
            raise at_entry(
                entry.index,
                invalid(f"reference {unresolved[0]!r} matches no fullUrl in this transaction", ["resource"]),
            )
        resource_id = ids.get(entry.index, entry.resource_id)
        if entry.method == "POST":
            resource["id"] = resource_id
        resolved.append(replace(entry, resource=resource, resource_id=resource_id))
    return resolved


# ---------------------------------------------------------------------------------------------------------
# Deciding (pure)
# ---------------------------------------------------------------------------------------------------------


def check_unique_targets(entries: list[Entry]) -> None:
    """A transaction changes each resource at most once, so the order of its writes cannot matter."""
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.method in ("PUT", "DELETE"):
            if entry.ref in seen:
                raise at_entry(
                    entry.index,
                    invalid(
                        f"{entry.ref} is also changed by Bundle.entry[{seen[entry.ref]}]; "
                        "a transaction may change a resource only once"
                    ),
                )
            seen[entry.ref] = entry.index


def read_targets(entries: list[Entry], access: Access = UNRESTRICTED) -> list[str]:
    """Refs whose stored state the decisions need (creates need none: their ids are new), and the patients
    whose accounts written resources inherit."""
    targets = [entry.ref for entry in entries if entry.method != "POST"]
    patients = [p for e in entries if e.resource is not None for p in access.patients_to_read(e.resource)]
    return targets + [p for p in dict.fromkeys(patients) if p not in targets]


Versions = Mapping[tuple[str, int], Document]
"""Earlier versions that versioned reads (`GET Type/id/_history/vid`) ask for, by (ref, version)."""
NO_VERSIONS: Versions = {}


def decide(
    entry: Entry,
    state: Mapping[str, Any],
    at: datetime,
    access: Access = UNRESTRICTED,
    versions: Versions = NO_VERSIONS,
) -> Change:
    """One entry against the current state (stored documents, overlaid with this bundle's writes)."""
    if entry.method == "POST":
        assert entry.resource is not None
        return decide_create(entry.resource, at, entry.resource_id, access, state)
    if entry.method == "PUT":
        assert entry.resource is not None
        return decide_update(entry.resource, state.get(entry.ref), at, entry.if_match, access, state)
    if entry.method == "DELETE":
        return decide_delete(entry.ref, state.get(entry.ref), at, entry.if_match, access)
    older = versions.get((entry.ref, entry.version)) if entry.version is not None else None
    return decide_read(entry.ref, state.get(entry.ref), entry.version, access, older)


def versioned_reads(entries: list[Entry]) -> list[tuple[str, int]]:
    """(ref, version) of every versioned read among the entries."""
    return [(e.ref, e.version) for e in entries if e.method == "GET" and e.version is not None]


def plan_transaction(
    entries: list[Entry],
    stored: Mapping[str, Any],
    at: datetime,
    access: Access = UNRESTRICTED,
    versions: Versions = NO_VERSIONS,
) -> dict[int, Change]:
    """Every entry's change in FHIR processing order; the first failing entry fails all (FhirError)."""
    state = dict(stored)
    changes: dict[int, Change] = {}
    for entry in sorted(entries, key=lambda e: ORDER[e.method]):
        try:
            change = decide(entry, state, at, access, versions)
        except FhirError as error:
            raise at_entry(entry.index, error) from error
        changes[entry.index] = change
        if change.write:
            state[change.ref] = change.document
    return changes


def response_entry(result: Change | FhirError, base: str, with_resource: bool) -> dict[str, Any]:
    """A `Bundle.entry` of a transaction- or batch-response: status, location, etag, lastModified, outcome."""
    if isinstance(result, FhirError):
        return {"response": {"status": status_line(result.status), "outcome": result.outcome()}}
    response: dict[str, Any] = {"status": status_line(result.status)}
    entry: dict[str, Any] = {}
    document = result.document
    if not document.get("deleted"):
        resource = document["resource"]
        response["location"] = f"{result.ref}/_history/{document['version']}"
        response["etag"] = etag(document["version"])
        response["lastModified"] = resource["meta"]["lastUpdated"]
        entry["fullUrl"] = f"{base}/{result.ref}"
        if with_resource:
            entry["resource"] = resource
    entry["response"] = response
    return entry


def response_bundle(kind: Kind, results: list[EntryResult], base: str, with_resources: bool) -> Resource:
    """The `transaction-response` / `batch-response` in request order; reads always carry the resource."""
    return {
        "resourceType": "Bundle",
        "id": new_id(),
        "type": f"{kind}-response",
        "entry": [
            response_entry(result, base, with_resources or method == "GET") for method, result in results
        ],
    }


def status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"
