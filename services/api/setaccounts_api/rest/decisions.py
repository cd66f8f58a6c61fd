"""Pure decisions: what an interaction answers and writes, given what is stored.

Each interaction is decided by a function (`decide_*`) that returns a `Change`; the store only reads what
the decision needs and applies its writes. Bundles use the same decisions, so a transaction entry and a
plain REST call behave alike.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import InsertOne, ReplaceOne

from setaccounts.auth.scopes import Interaction
from setaccounts.fhir.outcomes import FhirError, not_found
from setaccounts.store.meta import Document, Resource, Write, prepare_write, tombstone
from setaccounts_api.rest.access import UNRESTRICTED, Access

WriteOp = InsertOne[Document] | ReplaceOne[Document]


def new_id() -> str:
    return str(uuid.uuid4())


def gone(ref: str) -> FhirError:
    return FhirError(410, "deleted", f"{ref} was deleted")


def precondition_failed(ref: str, expected: int, current: int | None) -> FhirError:
    actual = "it does not exist" if current is None else f'the current version is W/"{current}"'
    return FhirError(412, "conflict", f'If-Match W/"{expected}" failed for {ref}: {actual}')


def conflict(ref: str) -> FhirError:
    return FhirError(409, "conflict", f"{ref} was changed concurrently; retry the request", retriable=True)


@dataclass(frozen=True)
class Change:
    """One interaction's outcome: the HTTP status, the document current after it and whether to store it.

    `previous` is what was read (None when nothing was stored); the write is applied only if it is unchanged.
    """

    status: int
    document: Document
    previous: Document | None
    write: bool

    @property
    def ref(self) -> str:
        ref: str = self.document["_id"]
        return ref

    def op(self) -> WriteOp | None:
        """The bulk-write operation, guarded by the version that was read."""
        if not self.write:
            return None
        if self.previous is None:
            return InsertOne(self.document)
        return ReplaceOne({"_id": self.ref, "version": self.previous["version"]}, self.document)


def _check_if_match(ref: str, previous: Document | None, if_match: int | None) -> None:
    if if_match is None:
        return
    current = previous["version"] if previous is not None else None
    if current != if_match:
        raise precondition_failed(ref, if_match, current)


NOTHING: Mapping[str, Any] = {}


def decide_create(
    resource: Resource,
    at: datetime,
    resource_id: str | None = None,
    access: Access = UNRESTRICTED,
    state: Mapping[str, Any] = NOTHING,
) -> Change:
    """A new resource under a server-assigned id (any id in the body is ignored, as FHIR create says).

    `access` applies the caller's account rules and inheritance; `state` holds the patients it reads."""
    access.allow(Interaction.CREATE, resource["resourceType"])
    rest = {key: value for key, value in resource.items() if key not in ("resourceType", "id")}
    body = {"resourceType": resource["resourceType"], "id": resource_id or new_id(), **rest}
    write = prepare_write(access.shape(body, None, state), None, at)
    access.check_written(write.document)
    return Change(201, write.document, None, write=True)


def decide_update(
    resource: Resource,
    previous: Document | None,
    at: datetime,
    if_match: int | None = None,
    access: Access = UNRESTRICTED,
    state: Mapping[str, Any] = NOTHING,
) -> Change:
    """Update, or create-on-update (201) when nothing live is stored; a no-op keeps the version (200)."""
    ref = f"{resource['resourceType']}/{resource['id']}"
    access.allow(Interaction.UPDATE, resource["resourceType"])
    if previous is None or previous.get("deleted"):  # create-on-update creates: it needs that scope too
        access.allow(Interaction.CREATE, resource["resourceType"])
    access.check_visible(ref, previous)
    _check_if_match(ref, previous, if_match)
    write: Write = prepare_write(access.shape(resource, previous, state), previous, at)
    access.check_written(write.document)
    existed = previous is not None and not previous.get("deleted")
    return Change(200 if existed else 201, write.document, previous, write=write.changed)


def decide_delete(
    ref: str,
    previous: Document | None,
    at: datetime,
    if_match: int | None = None,
    access: Access = UNRESTRICTED,
) -> Change:
    """Tombstone a live resource; deleting a deleted one changes nothing; a never-stored one is 404."""
    access.allow(Interaction.DELETE, ref.split("/", 1)[0])
    if previous is None:
        raise not_found(ref)
    access.check_visible(ref, previous)
    _check_if_match(ref, previous, if_match)
    if previous.get("deleted"):
        return Change(204, previous, previous, write=False)
    return Change(204, tombstone(previous, at), previous, write=True)


def decide_read(
    ref: str,
    stored: Document | None,
    version: int | None = None,
    access: Access = UNRESTRICTED,
    older: Document | None = None,
) -> Change:
    """Serve the current version, or with `version` that version (`older`: the kept one, from history).

    404 if never stored or no such version, 410 if that version is a deletion. The caller must see the
    current resource, and a version it reads must be in its sight too; what it may not see is 404, as if it
    were never stored (a tombstone is in no compartment; a kept deletion is where the version it deleted was).
    """
    access.allow(Interaction.READ, ref.split("/", 1)[0])
    if stored is None:
        raise not_found(ref)
    access.check_visible(ref, stored)
    if version is not None and version != stored["version"]:
        if older is None or older["version"] != version:
            raise FhirError(404, "not-found", f"{ref} has no version {version}")
        access.check_visible(ref, older)
        stored = older
    if stored.get("deleted"):
        raise gone(ref)
    return Change(200, stored, stored, write=False)
