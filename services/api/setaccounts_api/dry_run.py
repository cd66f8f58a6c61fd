"""`dryRun`: what `$set-accounts`, `$add-accounts` or `$remove-accounts` would do, computed in the API from
what is stored now, without writing anything or publishing a command.

The target's new accounts and every member's come from the rules the planner and applier use
(`accounts_after`, `member_changes`, `member_accounts`); members are streamed with a projection (their
accounts and compartments), and the accounts of their other patients are read in chunks once. A preview of
a large compartment runs as a task of this API process and is polled at a status URL that this process
alone serves from memory (nothing is stored).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from setaccounts.events import Mode, accounts_after, member_changes
from setaccounts.fhir.compartments import compartment_owner_types
from setaccounts.fhir.outcomes import FhirError, operation_outcome
from setaccounts.store.meta import Document, accounts_of
from setaccounts.store.propagation import member_accounts
from setaccounts.store.resources import ResourceStore

STREAM_BATCH = 1000
KEEP_SECONDS = 3600.0  # finished previews are answered this long
KEEP_MOST = 100  # previews kept at most (the oldest finished ones go first)


@dataclass(frozen=True)
class Preview:
    """What a real run would answer, plus the target's accounts and a sample of members that would change."""

    accounts_before: list[str]
    accounts_after: list[str]
    updated: int
    changed: int
    sample: list[str] = field(default_factory=list)


async def preview(
    store: ResourceStore,
    target: Document,
    mode: Mode,
    given: Sequence[str],
    *,
    propagate: bool,
    sample_size: int,
) -> Preview:
    """The counts a real run would report now: the target plus every member it would process
    (`resourcesUpdated`), and those whose accounts would change (`resourcesChanged`)."""
    ref: str = target["_id"]
    before = accounts_of(target["resource"])
    after = accounts_after(mode, before, given)
    updated, changed = 1, int(before != after)
    sample: list[str] = []
    if not (propagate and ref.split("/", 1)[0] in compartment_owner_types()):
        return Preview(before, after, updated, changed)
    add, remove = member_changes(mode, before, given)
    held: dict[str, list[str]] = {}  # accounts of the members' other patients, read once each
    cursor = store.collection.find(
        {**store.members_filter(ref), "_id": {"$ne": ref}},
        {"resource.meta.accounts": 1, "members_of": 1},
        sort=[("_id", 1)],
        batch_size=STREAM_BATCH,
    )
    batch: list[Document] = []
    try:
        async for doc in cursor:
            batch.append(doc)
            if len(batch) < STREAM_BATCH:
                continue
            counted = await _members(store, ref, batch, add, remove, held)
            batch = []
            updated, changed = updated + len(counted), changed + sum(1 for c in counted if c is not None)
            sample.extend(c for c in counted if c is not None and len(sample) < sample_size)
    finally:
        await cursor.close()
    counted = await _members(store, ref, batch, add, remove, held)
    updated, changed = updated + len(counted), changed + sum(1 for c in counted if c is not None)
    sample.extend(c for c in counted if c is not None)
    return Preview(before, after, updated, changed, sample[:sample_size])


async def _members(
    store: ResourceStore,
    target: str,
    batch: list[Document],
    add: list[str],
    remove: list[str],
    held: dict[str, list[str]],
) -> list[str | None]:
    """Per member: its reference when its accounts would change, else None (the applier's rule)."""
    if remove:
        wanted = sorted(
            {
                p
                for doc in batch
                for p in doc.get("members_of", ())
                if p.startswith("Patient/") and p != target and p not in held
            }
        )
        found = await store.get_many(wanted, projection={"resource.meta.accounts": 1}) if wanted else {}
        held.update({p: accounts_of((found.get(p) or {}).get("resource") or {}) for p in wanted})
    result: list[str | None] = []
    for doc in batch:
        current = accounts_of(doc.get("resource") or {})
        others = {a for p in doc.get("members_of", ()) if p != target for a in held.get(p, ())}
        new = member_accounts(current, add, remove, others)
        result.append(doc["_id"] if new != current else None)
    return result


def output(result: Preview, *, with_sample: bool) -> dict[str, Any]:
    """The Parameters a dry run answers: the real run's two counts, then what it would show."""
    parameter: list[dict[str, Any]] = [
        {"name": "resourcesUpdated", "valueInteger": result.updated},
        {"name": "resourcesChanged", "valueInteger": result.changed},
        {"name": "dryRun", "valueBoolean": True},
        *({"name": "accountsBefore", "valueReference": {"reference": a}} for a in result.accounts_before),
        *({"name": "accountsAfter", "valueReference": {"reference": a}} for a in result.accounts_after),
    ]
    if with_sample:
        parameter.extend({"name": "member", "valueReference": {"reference": m}} for m in result.sample)
    return {"resourceType": "Parameters", "parameter": parameter}


@dataclass
class _Run:
    task: asyncio.Task[Preview]
    requested_by: str
    started: float


class DryRuns:
    """Previews running (or finished) in this process, by id; bounded in number and age."""

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}

    def start(self, work: asyncio.Task[Preview], requested_by: str) -> str:
        self._evict()
        run_id = f"dry-run-{uuid.uuid4()}"
        self._runs[run_id] = _Run(work, requested_by, time.monotonic())
        return run_id

    def get(self, run_id: str, requested_by: str, admin: bool) -> asyncio.Task[Preview]:
        run = self._runs.get(run_id)
        if run is None or not (admin or run.requested_by == requested_by):
            raise FhirError(404, "not-found", f"no dry run {run_id} in this API process")
        return run.task

    def _evict(self) -> None:
        now = time.monotonic()
        for run_id, run in list(self._runs.items()):
            if run.task.done() and now - run.started > KEEP_SECONDS:
                del self._runs[run_id]
        finished = [r for r, run in self._runs.items() if run.task.done()]
        while len(self._runs) >= KEEP_MOST and finished:
            del self._runs[finished.pop(0)]


def failed(error: BaseException) -> dict[str, Any]:
    return operation_outcome("exception", f"the dry run failed: {type(error).__name__}")
