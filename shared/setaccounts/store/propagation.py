"""The propagation rule and its one guarded, idempotent write: how a command's accounts reach a resource.

The planner applies a command to its target and the applier to each member, both through
`Propagation.apply`. Every resource remembers, per target, the last command applied to it (its *mark*):
the same command twice is one effect and reports its original outcome again, and an older command of a
target never undoes a newer one. Writes are guarded by the stored version, so a concurrent normal write is
never overwritten: the resource is read again and the rule applied again. A new version names its command
(`meta.tag`), and the version it replaces is copied into history before the write (`store.history`).

Marks were stored with the keys `t`, `s`, `c`, `ch` before; those are still read, and rewritten under the
names below the next time the resource is written.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, cast

import bson
import structlog
from pymongo import UpdateMany

from setaccounts.events import Effect
from setaccounts.store.meta import SERVER_META, Document, accounts_of, with_accounts
from setaccounts.store.resources import CONFLICT_ROUNDS, ResourceStore, VersionConflict, now

log = structlog.get_logger(__name__)

# Most resources one `update_many` names, unless the store's profile says otherwise
# (`Settings.store_write_chunk`): one statement commits (and journals) once for all of them. A store whose
# cost per resource grows with the statement wants smaller ones: the development store spends about half the
# server CPU per resource on statements of 25 ids that it spends on one statement per resource, and more
# again on larger `$in`s (`benchmarks/store_costs.py`), so its launcher sets 25.
WRITE_CHUNK = 1000


class Mark(TypedDict):
    """The last command of `target` applied to a resource, and whether it changed the resource."""

    target: str
    seq: int
    command_id: str
    changed: bool


def marks_of(document: Document) -> list[Mark]:
    return cast(list[Mark], document.get("marks") or [])


def mark_of(document: Document, target: str) -> Mark | None:
    return next((m for m in marks_of(document) if m["target"] == target), None)


def member_accounts(
    current: list[str], add: Iterable[str], remove: Iterable[str], held_by_others: Iterable[str]
) -> list[str]:
    """Medplum's rule for a member: add every target account; drop the ones the target gave up unless
    another patient of the member still holds them; keep accounts the target never had.

    Order: kept accounts as they were, then new ones.
    """
    drop = set(remove) - set(held_by_others)
    kept = [a for a in current if a not in drop]
    return list(dict.fromkeys([*kept, *add]))


@dataclass(frozen=True)
class Applied:
    document: Document  # the document after applying (the input when nothing was written)
    changed: bool  # content changed: a new version
    write: bool  # something must be stored (a new version, or only a new mark)


def apply_accounts(
    document: Document, accounts: list[str], *, target: str, seq: int, command_id: str, now: datetime
) -> Applied:
    """Give `document` these accounts on behalf of command `command_id` (the `seq`-th for `target`)."""
    mark = mark_of(document, target)
    if mark is not None and mark["command_id"] == command_id:
        return Applied(document, changed=bool(mark["changed"]), write=False)
    if mark is not None and mark["seq"] > seq:
        return Applied(document, changed=False, write=False)
    written = with_accounts(document, accounts, now, command_id)
    result = dict(written.document)
    new_mark: Mark = {"target": target, "seq": seq, "command_id": command_id, "changed": written.changed}
    result["marks"] = [m for m in marks_of(document) if m["target"] != target] + [new_mark]
    return Applied(result, changed=written.changed, write=True)


def changed_fields(applied: Applied) -> dict[str, Any]:
    """What a write stores for an applied change: only what an accounts change changes (the meta, the
    compartments, the version and the marks), never the resource's body."""
    fields = {"marks": applied.document["marks"]}
    if applied.changed:
        document = applied.document
        fields |= {
            "resource.meta": document["resource"]["meta"],
            "compartments": document["compartments"],
            "version": document["version"],
        }
    return fields


@dataclass(frozen=True)
class GroupWrite:
    """One guarded statement: `fields` set on each of `ids` that is still at `version`."""

    ids: list[str]
    version: int
    fields: dict[str, Any]

    def op(self) -> UpdateMany:
        return UpdateMany({"_id": {"$in": self.ids}, "version": self.version}, {"$set": self.fields})


def grouped_writes(writes: Iterable[tuple[Document, Applied]], chunk: int = WRITE_CHUNK) -> list[GroupWrite]:
    """The guarded writes for applied changes (the document read, what applying made of it), each landing
    only where the version read is still current.

    Resources read at the same version that get exactly the same fields (in a propagation, most members of a
    compartment: same accounts, same compartments, same mark) share one `update_many` of up to
    `chunk` ids: the store commits (and journals) once per statement, not once per resource. One
    `Applied` shared by many resources (`Propagation` decides alike members once) is encoded once.
    """
    encoded: dict[int, tuple[Applied, dict[str, Any], bytes]] = {}  # by id(); holds the Applied alive
    groups: dict[tuple[int, bytes], tuple[dict[str, Any], list[str]]] = {}
    for before, applied in writes:
        known = encoded.get(id(applied))
        if known is None:
            fields = changed_fields(applied)
            known = encoded[id(applied)] = (applied, fields, bson.encode(fields))
        _, fields, key = known
        groups.setdefault((before["version"], key), (fields, []))[1].append(before["_id"])
    return [
        GroupWrite(ids[i : i + chunk], version, fields)
        for (version, _), (fields, ids) in groups.items()
        for i in range(0, len(ids), chunk)
    ]


@dataclass(frozen=True)
class Application:
    """One command's effect on one resource: the target itself (`exact`: its accounts become `add`, in
    order) or a member (gains `add`, loses `remove` unless another of its patients holds it)."""

    resource: str
    target: str
    seq: int
    command_id: str
    add: Sequence[str]
    remove: Sequence[str] = ()
    exact: bool = False


def decide(app: Application, document: Document, held: dict[str, list[str]], now: datetime) -> Applied:
    """What applying `app` makes of `document` (`held`: the accounts of the member's other patients, where
    the application removes some)."""
    if app.exact:
        accounts = list(app.add)
    elif not app.remove:  # nothing to drop: other patients' accounts do not matter
        accounts = list(dict.fromkeys([*accounts_of(document["resource"]), *app.add]))
    else:
        others = {a for p in document.get("members_of", ()) if p != app.target for a in held.get(p, ())}
        accounts = member_accounts(accounts_of(document["resource"]), app.add, app.remove, others)
    return apply_accounts(
        document, accounts, target=app.target, seq=app.seq, command_id=app.command_id, now=now
    )


class Propagation:
    def __init__(self, resources: ResourceStore, write_chunk: int = WRITE_CHUNK) -> None:
        self.resources = resources
        self.write_chunk = write_chunk

    async def apply(self, applications: Sequence[Application]) -> list[Effect]:
        """Apply in order (several to one resource fold into one write); one outcome per application:
        CHANGED, UNCHANGED, or GONE for a resource missing or deleted."""
        outcomes: list[Effect] = [Effect.GONE] * len(applications)
        pending = list(range(len(applications)))
        for _round in range(CONFLICT_ROUNDS):
            if not pending:
                return outcomes
            pending = await self._round(applications, pending, outcomes)
        raise VersionConflict(f"{len(pending)} resources kept changing while their accounts were set")

    async def _round(
        self, applications: Sequence[Application], pending: list[int], outcomes: list[Effect]
    ) -> list[int]:
        """One read, one bulk write; returns the applications whose resources changed meanwhile (to redo).

        The rule reads only a resource's version, meta, compartments and marks, so resources alike in those
        (in a propagation, nearly a whole compartment) are decided once (`alike_key`): deciding and
        encoding each member cost 40 µs of CPU in one measurement, its key 6 µs."""
        refs = sorted({applications[i].resource for i in pending})
        # Whole documents: history keeps the version being replaced, body included (and on the development
        # store a projection without the body reads 10-20% slower than the whole document).
        stored = await self.resources.get_many(refs)
        held = await self._held_by_patients(applications, pending, stored)
        written: dict[str, Applied] = {}
        touched: dict[str, list[int]] = defaultdict(list)
        decided: dict[tuple[Any, ...], Applied] = {}
        timestamp = now()
        for i in pending:
            app = applications[i]
            folded = written.get(app.resource)
            document = folded.document if folded is not None else stored.get(app.resource)
            if document is None or document.get("deleted"):
                outcomes[i] = Effect.GONE
                continue
            if folded is None:
                key = alike_key(app, document)
                applied = decided.get(key)
                if applied is None:
                    applied = decided[key] = decide(app, rule_input(document), held, timestamp)
            else:
                applied = decide(app, document, held, timestamp)
            outcomes[i] = Effect.CHANGED if applied.changed else Effect.UNCHANGED
            if applied.write:
                written[app.resource] = applied if folded is None else _merged(stored[app.resource], applied)
                touched[app.resource].append(i)
        if not written:
            return []
        ops = [
            w.op()
            for w in grouped_writes(
                ((stored[r], applied) for r, applied in written.items()), self.write_chunk
            )
        ]
        await self.resources.history.keep(
            stored[r] for r, applied in written.items() if _new_version(stored[r], applied.document)
        )
        result = await self.resources.collection.bulk_write(ops, ordered=False)
        if result.matched_count == len(written):
            return []
        return await self._unwritten(written, touched)

    async def _held_by_patients(
        self, applications: Sequence[Application], pending: list[int], stored: dict[str, Document]
    ) -> dict[str, list[str]]:
        """Current accounts of the other patients of members that lose accounts (one chunked read)."""
        patients = {
            key
            for i in pending
            if applications[i].remove
            for key in (stored.get(applications[i].resource) or {}).get("members_of", ())
            if key.startswith("Patient/") and key != applications[i].target
        }
        if not patients:
            return {}
        found = await self.resources.get_many(sorted(patients), projection={"resource.meta.accounts": 1})
        return {ref: accounts_of(doc.get("resource") or {}) for ref, doc in found.items()}

    async def _unwritten(self, written: dict[str, Applied], touched: dict[str, list[int]]) -> list[int]:
        """Applications whose guarded write did not land: the stored version is not the one written."""
        found = await self.resources.get_many(written, projection={"version": 1, "marks": 1})
        landed = {
            ref
            for ref, doc in found.items()
            if doc["version"] == written[ref].document["version"]
            and doc.get("marks") == written[ref].document["marks"]
        }
        redo = sorted(i for r, idx in touched.items() if r not in landed for i in idx)
        log.info("resources changed meanwhile; applying again", count=len(redo))
        return redo


def _new_version(before: Document, after: Document) -> bool:
    return after.get("version") != before.get("version")


def _merged(before: Document, applied: Applied) -> Applied:
    """Several applications to one resource in a batch fold into one write: a version only if content
    changed."""
    return Applied(applied.document, changed=_new_version(before, applied.document), write=True)


def rule_input(document: Document) -> Document:
    """What the rule reads of a stored resource, without its body (`alike_key` is derived from it)."""
    return {
        "version": document["version"],
        "resource": {"meta": document["resource"].get("meta")},
        "members_of": document.get("members_of") or [],
        "marks": document.get("marks") or [],
    }


def alike_key(app: Application, document: Document) -> tuple[Any, ...]:
    """Equal for two applications only if the rule decides them alike: the same command's change to
    resources with the same `rule_input`, but for the meta the rule never reads (`SERVER_META`: a new
    version gets its own), so members written at different times still share a key."""
    state = rule_input(document)
    meta = state["resource"]["meta"] or {}
    state["resource"] = {"meta": {k: v for k, v in meta.items() if k not in SERVER_META}}
    change = (app.target, app.seq, app.command_id, tuple(app.add), tuple(app.remove), app.exact)
    return (change, bson.encode(state))
