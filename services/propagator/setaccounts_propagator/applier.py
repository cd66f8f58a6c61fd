"""Applier (apply): applies a consumed batch of member updates with one `find` and one unordered
`bulk_write`, then reports each command's outcomes per partition on the results topic.

Idempotent by the members' marks; guarded by each member's version, so a concurrent normal write is
never overwritten (the member is read again and recomputed).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

import structlog

from setaccounts.events import (
    BatchApplied,
    EndOfCommand,
    MemberUpdate,
    Outcome,
    PartitionDone,
    encode,
    headers_for,
)
from setaccounts.metrics import MEMBER_UPDATES
from setaccounts.store.accounts import member_accounts
from setaccounts.store.marks import Applied, apply_accounts, write_op
from setaccounts.store.meta import Document, accounts_of
from setaccounts.store.resources import VersionConflict, now
from setaccounts_propagator.consumer import Item, RoleHandler

log = structlog.get_logger(__name__)
MAX_CONFLICT_ROUNDS = 5


class Applier(RoleHandler):
    async def __call__(self, items: Sequence[Item]) -> None:
        updates = [(i.record.partition, i.event) for i in items if isinstance(i.event, MemberUpdate)]
        outcomes = await self.apply([u for _, u in updates]) if updates else []
        for outcome in outcomes:
            MEMBER_UPDATES.labels(outcome.value).inc()
        await self._report(items, [(p, u, o) for (p, u), o in zip(updates, outcomes, strict=True)])

    async def apply(self, updates: Sequence[MemberUpdate]) -> list[Outcome]:
        """Apply updates in order; returns one outcome per update."""
        cancelled = await self.jobs.cancelled_among(sorted({u.command_id for u in updates}))
        pending = [i for i, u in enumerate(updates) if u.command_id not in cancelled]
        outcomes: list[Outcome] = [Outcome.CANCELLED] * len(updates)
        for _round in range(MAX_CONFLICT_ROUNDS):
            if not pending:
                return outcomes
            pending = await self._apply_round(updates, pending, outcomes)
        raise VersionConflict(f"{len(pending)} members kept changing under the applier")

    async def _apply_round(
        self, updates: Sequence[MemberUpdate], pending: list[int], outcomes: list[Outcome]
    ) -> list[int]:
        """One read, one bulk write; returns the updates whose members changed meanwhile (to redo)."""
        members = sorted({updates[i].member for i in pending})
        stored = await self.resources.get_many(members)
        held = await self._patients_accounts(updates, pending, stored)
        current: dict[str, Document] = {}
        touched: dict[str, list[int]] = defaultdict(list)
        timestamp = now()
        for i in pending:
            update = updates[i]
            document = current.get(update.member, stored.get(update.member))
            if document is None or document.get("deleted"):
                outcomes[i] = Outcome.GONE
                continue
            others = {
                a for p in document.get("members_of", ()) if p != update.target for a in held.get(p, ())
            }
            accounts = member_accounts(accounts_of(document["resource"]), update.add, update.remove, others)
            applied = apply_accounts(
                document,
                accounts,
                target=update.target,
                seq=update.target_seq,
                command_id=update.command_id,
                now=timestamp,
            )
            outcomes[i] = Outcome.CHANGED if applied.changed else Outcome.UNCHANGED
            if applied.write:
                current[update.member] = applied.document
                touched[update.member].append(i)
        if not current:
            return []
        ops = [write_op(stored[m], _merged(stored[m], current[m])) for m in current]
        result = await self.resources.collection.bulk_write(ops, ordered=False)
        if result.matched_count == len(ops):
            return []
        return await self._unwritten(current, touched)

    async def _unwritten(self, current: dict[str, Document], touched: dict[str, list[int]]) -> list[int]:
        """Updates whose guarded write did not land: the stored version is not the one written."""
        found = await self.resources.get_many(current, projection={"version": 1, "marks": 1})
        landed = {
            ref
            for ref, doc in found.items()
            if doc["version"] == current[ref]["version"] and doc.get("marks") == current[ref]["marks"]
        }
        redo = sorted(i for m, idx in touched.items() if m not in landed for i in idx)
        log.info("members changed meanwhile; applying again", count=len(redo))
        return redo

    async def _patients_accounts(
        self, updates: Sequence[MemberUpdate], pending: list[int], stored: dict[str, Document]
    ) -> dict[str, list[str]]:
        """Current accounts of the other patients of members that lose accounts (one chunked read)."""
        patients = {
            key
            for i in pending
            if updates[i].remove
            for key in (stored.get(updates[i].member) or {}).get("members_of", ())
            if key.startswith("Patient/") and key != updates[i].target
        }
        if not patients:
            return {}
        found = await self.resources.get_many(sorted(patients), projection={"resource.meta.accounts": 1})
        return {ref: accounts_of(doc.get("resource") or {}) for ref, doc in found.items()}

    async def _report(self, items: Sequence[Item], applied: list[tuple[int, MemberUpdate, Outcome]]) -> None:
        """Results per (command, partition) in offset order, then end-of-command markers, all acknowledged."""
        entries: dict[tuple[str, int], list[tuple[str, Outcome]]] = defaultdict(list)
        for partition, update, outcome in applied:
            entries[(update.command_id, partition)].append((update.member, outcome))
        topic = self.settings.topics.results
        events: list[tuple[str, BatchApplied | PartitionDone]] = [
            (cid, BatchApplied(command_id=cid, partition=p, entries=e)) for (cid, p), e in entries.items()
        ]
        events += [
            (i.event.command_id, PartitionDone(command_id=i.event.command_id, partition=i.record.partition))
            for i in items
            if isinstance(i.event, EndOfCommand)
        ]
        sends = [
            await self.producer.send(topic, encode(e), key=k.encode(), headers=headers_for(e))
            for k, e in events
        ]
        await asyncio.gather(*sends)


def _merged(before: Document, after: Document) -> Applied:
    """Several updates to one member in a batch fold into one write: a version only if content changed."""
    changed = after.get("version") != before.get("version")
    return Applied(after, changed=changed, write=True)
