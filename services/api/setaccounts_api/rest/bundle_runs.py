"""Running a parsed Bundle against the store: a transaction reads what it needs in one pass and writes in
one bulk write inside a multi-document transaction (all entries or none); a batch runs entry by entry."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import PyMongoError

from setaccounts.fhir.outcomes import FhirError
from setaccounts.store.meta import Document, Resource
from setaccounts.store.resources import VersionConflict, now
from setaccounts_api.rest.bundles import (
    BundleRequest,
    Entry,
    EntryResult,
    assign_ids,
    at_entry,
    check_unique_targets,
    plan_transaction,
    read_targets,
    require_all,
    resolve_entries,
    response_bundle,
    versioned_reads,
)
from setaccounts_api.rest.decisions import Change, new_id
from setaccounts_api.rest.store import RestStore


async def run_transaction(
    store: RestStore,
    request: BundleRequest,
    base: str,
    *,
    with_resources: bool = False,
    make_id: Callable[[], str] = new_id,
) -> Resource:
    """All entries or none: one read of the targets and one bulk write, inside a Mongo transaction."""
    entries = require_all(request)
    check_unique_targets(entries)
    ids, urn_map = assign_ids(entries, make_id)
    entries = resolve_entries(entries, ids, urn_map)
    at = now()
    try:
        async with store.transaction() as session:
            stored = await store.get_many(read_targets(entries, store.access), session)
            versions = await _versions(store, versioned_reads(entries), stored, session)
            changes = plan_transaction(entries, stored, at, store.access, versions)
            await store.apply(list(changes.values()), session)
    except VersionConflict as exc:
        raise FhirError(
            409, "conflict", f"{exc} changed concurrently; retry the transaction", retriable=True
        ) from exc
    except PyMongoError as exc:
        if exc.has_error_label("TransientTransactionError"):
            raise FhirError(
                409, "transient", "the transaction was interrupted; retry it", retriable=True
            ) from exc
        raise
    results: list[EntryResult] = [(entry.method, changes[entry.index]) for entry in entries]
    return response_bundle("transaction", results, base, with_resources)


async def _versions(
    store: RestStore,
    wanted: list[tuple[str, int]],
    stored: Mapping[str, Document],
    session: AsyncClientSession,
) -> dict[tuple[str, int], Document]:
    """The versions the transaction's versioned reads ask for: the one stored now (which the transaction
    may replace before its reads run) or an earlier one from history."""
    found: dict[tuple[str, int], Document] = {}
    for ref, version in wanted:
        current = stored.get(ref)
        if current is not None and current["version"] == version:
            found[(ref, version)] = current
        elif current is not None and version < current["version"]:
            older = await store.history.version(ref, version, session)
            if older is not None:
                found[(ref, version)] = older
    return found


async def run_batch(
    store: RestStore, request: BundleRequest, base: str, *, with_resources: bool = False
) -> Resource:
    """Each entry on its own, in order; a failing entry answers its own outcome and the others go on."""
    results: list[EntryResult] = []
    for entry in request.entries:
        if isinstance(entry, FhirError):
            results.append((None, entry))
            continue
        try:
            results.append((entry.method, await _run_one(store, entry)))
        except FhirError as error:
            results.append((entry.method, at_entry(entry.index, error)))
    return response_bundle("batch", results, base, with_resources)


async def _run_one(store: RestStore, entry: Entry) -> Change:
    if entry.method == "POST":
        assert entry.resource is not None
        return await store.create(entry.resource)
    if entry.method == "PUT":
        assert entry.resource is not None
        return await store.update(entry.resource, entry.if_match)
    if entry.method == "DELETE":
        return await store.delete(entry.ref, entry.if_match)
    return await store.read(entry.ref, entry.version)
