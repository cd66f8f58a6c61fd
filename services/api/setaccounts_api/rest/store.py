"""The REST interactions against the `resources` collection: read, decide (`decisions.py`), then write
with optimistic concurrency on the stored version."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pymongo import ReplaceOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DocumentTooLarge, DuplicateKeyError

from setaccounts.fhir.outcomes import FhirError
from setaccounts.store.lookup import READ_CHUNK
from setaccounts.store.meta import Document, Resource
from setaccounts.store.resources import CONFLICT_ROUNDS, ResourceStore, VersionConflict, now
from setaccounts_api.rest.access import Access
from setaccounts_api.rest.decisions import (
    Change,
    conflict,
    decide_create,
    decide_delete,
    decide_read,
    decide_update,
)
from setaccounts_api.rest.history import HistoryPage, check_history


class RestStore(ResourceStore):
    """The shared reads, plus create / read / update / delete as the REST API and Bundles perform them,
    each on behalf of one caller (`access`: what it may see and write, and the inheritance rule)."""

    def __init__(self, db: AsyncDatabase[Document], access: Access, read_chunk: int = READ_CHUNK) -> None:
        super().__init__(db, read_chunk)
        self.access = access

    async def apply(self, changes: Sequence[Change], session: AsyncClientSession | None = None) -> None:
        """All writes of `changes` in one bulk write; VersionConflict if a guard (version, new id) failed.

        The versions they replace are copied into history first (see `setaccounts.store.history`)."""
        ops = [op for op in (change.op() for change in changes) if op is not None]
        if not ops:
            return
        replaces = sum(isinstance(op, ReplaceOne) for op in ops)
        superseded = [c.previous for c in changes if c.write and c.previous is not None]
        try:
            await self.history.keep(superseded, session)
            result = await self.collection.bulk_write(ops, ordered=False, session=session)
        except DocumentTooLarge:
            raise _too_large() from None
        except (DuplicateKeyError, BulkWriteError) as exc:
            if isinstance(exc, BulkWriteError) and _refused_as_too_large(exc):
                raise _too_large() from None  # the error quotes the whole document: never keep it
            raise VersionConflict(_first_ref(changes)) from exc
        if result.matched_count < replaces:
            raise VersionConflict(_first_ref(changes))

    async def patients(self, resource: Resource, session: AsyncClientSession | None) -> dict[str, Document]:
        """The stored patients whose accounts `resource` inherits."""
        wanted = self.access.patients_to_read(resource)
        return await self.get_many(wanted, session, {"resource.meta.accounts": 1}) if wanted else {}

    async def create(self, resource: Resource, session: AsyncClientSession | None = None) -> Change:
        state = await self.patients(resource, session)
        change = decide_create(resource, now(), access=self.access, state=state)
        await self.apply([change], session)
        return change

    async def read(
        self, ref: str, version: int | None = None, session: AsyncClientSession | None = None
    ) -> Change:
        """The current version, or with `version` that version (an earlier one from history)."""
        stored = await self.get(ref, session)
        older = None
        if version is not None and stored is not None and version < stored["version"]:
            older = await self.history.version(ref, version, session)
        return decide_read(ref, stored, version, self.access, older)

    async def history_page(self, ref: str, before: int | None, count: int) -> HistoryPage:
        """The versions of `ref` the caller may see, newest first: up to `count` older than `before` (all
        when None). The current one comes from `resources`, earlier ones from history."""
        current = check_history(ref, await self.get(ref), self.access)
        top: int = current["version"]
        below = top + 1 if before is None else min(before, top + 1)
        within = self.access.search_accounts()
        newest = [current] if top < below else []
        older = await self.history.page(ref, min(below, top), count + 1 - len(newest), within)
        versions = (newest + older)[: count + 1]
        total = 1 + await self.history.count(ref, top, within)
        return HistoryPage(total, versions[:count], more=len(versions) > count)

    async def update(
        self, resource: Resource, if_match: int | None = None, session: AsyncClientSession | None = None
    ) -> Change:
        """Update or create-on-update; with If-Match, a version that moved meanwhile is a 412."""
        ref = f"{resource['resourceType']}/{resource['id']}"
        state = await self.patients(resource, session)
        return await self._decide_and_apply(
            ref,
            lambda stored: decide_update(resource, stored, now(), if_match, self.access, state),
            session,
        )

    async def delete(
        self, ref: str, if_match: int | None = None, session: AsyncClientSession | None = None
    ) -> Change:
        return await self._decide_and_apply(
            ref, lambda stored: decide_delete(ref, stored, now(), if_match, self.access), session
        )

    async def _decide_and_apply(
        self, ref: str, decide: Callable[[Document | None], Change], session: AsyncClientSession | None
    ) -> Change:
        """Read, decide, write; a concurrent write makes it read again (not inside a transaction, which a
        failed write has aborted: there the conflict goes to the caller)."""
        attempts = 1 if session is not None and session.in_transaction else CONFLICT_ROUNDS
        for _ in range(attempts):
            change = decide(await self.get(ref, session))
            try:
                await self.apply([change], session)
            except VersionConflict:
                continue
            return change
        raise conflict(ref)


# MongoDB's BSONObjectTooLarge, and an update whose result would be too large.
TOO_LARGE_CODES = frozenset({10334, 17419, 17420})


def _refused_as_too_large(exc: BulkWriteError) -> bool:
    return any(error.get("code") in TOO_LARGE_CODES for error in exc.details.get("writeErrors", []))


def _too_large() -> FhirError:
    """The last line of defence: `read_json` refuses such bodies before they reach the store."""
    return FhirError(413, "too-costly", "a resource exceeds the store's document size limit")


def _first_ref(changes: Sequence[Change]) -> str:
    refs = [change.ref for change in changes if change.write]
    return refs[0] if len(refs) == 1 else f"{len(refs)} resources"
