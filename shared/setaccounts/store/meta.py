"""The one write rule used by CRUD, bundles, the planner and the applier.

`meta.compartment` is computed (never taken from the client): every compartment the resource is in under
the R4 CompartmentDefinitions, then its `meta.accounts`. `meta.versionId` / `meta.lastUpdated` change only
when the content changes, so a no-op write makes no version. A version written by a `$set-accounts`
command carries a `meta.tag` naming it (`COMMAND_SYSTEM`, code = the command id); the server manages that
tag: a client cannot set it, and any later write drops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from setaccounts.fhir.compartments import compartments_of
from setaccounts.fhir.references import parse_reference

Resource = dict[str, Any]
Document = dict[str, Any]
SERVER_META = ("versionId", "lastUpdated", "compartment")
COMMAND_SYSTEM = "http://example.org/fhir/CodeSystem/set-accounts-command"
"""`meta.tag.system` of the tag naming the command that wrote a version (its code is the command id)."""


def reference_list(refs: list[str]) -> list[dict[str, str]]:
    return [{"reference": r} for r in refs]


def accounts_of(resource: Resource) -> list[str]:
    """The resource's `meta.accounts` as `Type/id` strings (order kept, duplicates and junk dropped)."""
    found: list[str] = []
    for entry in (resource.get("meta") or {}).get("accounts") or []:
        ref = entry.get("reference") if isinstance(entry, dict) else None
        parsed = parse_reference(ref) if isinstance(ref, str) else None
        if parsed:
            key = f"{parsed[0]}/{parsed[1]}"
            if key not in found:
                found.append(key)
    return found


def content_of(resource: Resource) -> Resource:
    """The resource without server-managed meta: what decides whether a write changes anything.

    Copies only the two levels it changes (the resource and its meta); nested values are shared, never
    mutated. Deep copies cost more than everything else in the applier's CPU time.
    """
    content = dict(resource)
    meta = content.get("meta")
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k not in SERVER_META}
        if "tag" in meta:
            _drop_command_tag(meta)
        if meta:
            content["meta"] = meta
        else:
            content.pop("meta")
    return content


def _drop_command_tag(meta: dict[str, Any]) -> None:
    tags = meta["tag"]
    if not isinstance(tags, list):
        return
    kept = [t for t in tags if not (isinstance(t, dict) and t.get("system") == COMMAND_SYSTEM)]
    if len(kept) == len(tags):
        return
    if kept:
        meta["tag"] = kept
    else:
        meta.pop("tag")


def command_tag(command_id: str) -> dict[str, str]:
    return {"system": COMMAND_SYSTEM, "code": command_id}


def command_tag_match(command_id: str) -> dict[str, Any]:
    """A query on `resource.meta.tag` for the versions command `command_id` wrote."""
    return {"$elemMatch": command_tag(command_id)}


def stamped(
    meta: dict[str, Any], version: int, now: datetime, compartment: list[str], command_id: str | None
) -> dict[str, Any]:
    """A new version's meta: the client's meta (without server fields) plus the server-managed ones."""
    meta = dict(meta)
    meta["versionId"] = str(version)
    meta["lastUpdated"] = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if compartment:
        meta["compartment"] = reference_list(compartment)
    if command_id is not None and isinstance(meta.get("tag", []), list):
        meta["tag"] = [*meta.get("tag", []), command_tag(command_id)]
    return meta


@dataclass(frozen=True)
class Write:
    """The document to store and whether it is a new version."""

    document: Document
    changed: bool


def prepare_write(
    resource: Resource, previous: Document | None, now: datetime, command_id: str | None = None
) -> Write:
    """Build the stored document for `resource` given what is stored now (`previous`, may be deleted);
    `command_id` names the command writing it, tagged on the new version."""
    content = content_of(resource)
    accounts = accounts_of(content)
    if accounts:
        content.setdefault("meta", {})["accounts"] = reference_list(accounts)
    elif isinstance(content.get("meta"), dict):
        content["meta"].pop("accounts", None)
        if not content["meta"]:
            content.pop("meta")
    live_previous = previous if previous is not None and not previous.get("deleted") else None
    if live_previous is not None and content_of(live_previous["resource"]) == content:
        return Write(live_previous, changed=False)
    members_of = compartments_of(content)
    compartment = list(dict.fromkeys(members_of + accounts))
    version = (previous or {}).get("version", 0) + 1
    meta = stamped(content.get("meta") or {}, version, now, compartment, command_id)
    served = {**content, "meta": meta}
    document: Document = {
        "_id": f"{served['resourceType']}/{served['id']}",
        "type": served["resourceType"],
        "version": version,
        "deleted": False,
        "resource": served,
        "members_of": members_of,
        "compartments": compartment,
        "marks": (previous or {}).get("marks", []),
    }
    return Write(document, changed=True)


def with_accounts(
    document: Document, accounts: list[str], now: datetime, command_id: str | None = None
) -> Write:
    """A live stored document with `meta.accounts` replaced: the result `prepare_write` gives for the
    resource with these accounts, computed from its meta alone.

    An accounts-only change cannot move the resource into or out of a compartment, so `members_of` is the
    stored one (not recomputed from the body), and the body is not copied (it works on a document read
    without it too). Content is unchanged exactly when the meta without
    server-managed fields is; then the stored document is returned as it is (no version). `command_id`
    names the command writing it, tagged on the new version as `prepare_write` does.
    """
    resource: Resource = document["resource"]
    old_meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else None
    before = content_of({"meta": old_meta}).get("meta", {}) if old_meta else {}
    after = {**before, "accounts": reference_list(accounts)}
    normalized = accounts_of({"meta": after})
    if normalized:
        after["accounts"] = reference_list(normalized)
    else:
        after.pop("accounts")
    if (before or None) == (after or None):
        return Write(document, changed=False)
    members_of: list[str] = document.get("members_of") or []
    compartment = list(dict.fromkeys(members_of + normalized))
    version = document.get("version", 0) + 1
    meta = stamped(after, version, now, compartment, command_id)
    written: Document = {
        **document,
        "version": version,
        "deleted": False,
        "resource": {**resource, "meta": meta},
        "members_of": members_of,
        "compartments": compartment,
        "marks": document.get("marks", []),
    }
    return Write(written, changed=True)


def tombstone(previous: Document, now: datetime) -> Document:
    """A deleted resource keeps its id and a new version so reads can answer 410 Gone; `deleted_from`
    keeps the compartments of the version it deleted, so history shows the deletion to whoever saw that."""
    return {
        "_id": previous["_id"],
        "type": previous["type"],
        "version": previous["version"] + 1,
        "deleted": True,
        "deleted_at": now,
        "resource": None,
        "members_of": [],
        "compartments": [],
        "deleted_from": previous.get("compartments", []),
        "marks": previous.get("marks", []),
    }
