"""Check the resource store against the command log, in one streamed pass over `resources`.

Rules (derived from the log, checked against what is stored):
1. A target's `meta.accounts` equals the accounts its last completed command computed (log order; for
   `$set-accounts` the given ones, for `$add-accounts` / `$remove-accounts` the planned result). A cancelled
   or still pending command after it may or may not have set the target (the planner writes the target
   before fanning out, unless the cancel came first), so either list is accepted. Failed commands never
   wrote the target and are ignored. A target with no completed command is not checked.
2. When a target's last command completed with `propagate`, every current member of its compartment
   (`members_of` holds the target) holds all of that command's accounts: a set's new accounts, plus, for
   a run of adds and removes, what the commands before them required with the added accounts joined and
   the removed ones taken out. A cancelled last command leaves members partially updated by design, so
   its members are not checked.
3. Every resource's `meta.compartment` is `compartments_of(resource)` followed by its accounts, and the
   internal `members_of` / `compartments` index fields agree with it (member resolution reads them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import accounts_after
from setaccounts.fhir.compartments import compartments_of
from setaccounts.store.meta import Document, accounts_of, content_of
from setaccounts_audit.command_log import CommandRecord, by_target

STREAM_BATCH = 1000


@dataclass(frozen=True)
class Drift:
    """One difference between the store and the log, with enough detail to act on it."""

    kind: str  # target-accounts | member-accounts | compartment | index | missing-target
    ref: str
    expected: list[str]
    found: list[str]
    command_id: str | None = None
    note: str = ""


@dataclass(frozen=True)
class TargetRule:
    allowed: tuple[tuple[str, ...], ...]  # account lists the target may hold
    command_ids: tuple[str, ...]  # the commands those lists come from, same order


@dataclass(frozen=True)
class Expectations:
    targets: dict[str, TargetRule]
    members: dict[str, tuple[str, frozenset[str]]]  # target -> (command id, accounts every member holds)


def expectations(records: Sequence[CommandRecord]) -> Expectations:
    """What the log says the store must look like (pure)."""
    targets: dict[str, TargetRule] = {}
    members: dict[str, tuple[str, frozenset[str]]] = {}
    for target, commands in by_target(records).items():
        rule: TargetRule | None = None
        required: tuple[str, frozenset[str]] | None = None
        for command in commands:
            if command.status == "completed":
                after = _afters(command, rule)
                rule = TargetRule(after[-1:], (command.command_id,)) if after else None
            elif command.status in ("cancelled", "pending") and rule is not None:
                more = [a for a in _afters(command, rule) if a not in rule.allowed]
                rule = TargetRule(
                    (*rule.allowed, *more), (*rule.command_ids, *[command.command_id] * len(more))
                )
            required = _members_required(command, required)
        if rule is not None:
            targets[target] = rule
        if required is not None:
            members[target] = required
    return Expectations(targets, members)


def _afters(command: CommandRecord, rule: TargetRule | None) -> tuple[tuple[str, ...], ...]:
    """The account lists the target may hold after `command`: the planned result when the log has it,
    else computed from each list it may have held before (an add or remove not planned yet)."""
    if command.accounts_after is not None:
        return (tuple(command.accounts_after),)
    if rule is None:
        return ()
    return tuple(
        dict.fromkeys(
            tuple(accounts_after(command.mode, before, command.accounts)) for before in rule.allowed
        )
    )


def _members_required(
    command: CommandRecord, required: tuple[str, frozenset[str]] | None
) -> tuple[str, frozenset[str]] | None:
    """Accounts every member must hold after `command`, folded along the target's commands in log order:
    a completed, propagated set gives them the target's new accounts, an add adds its accounts to what
    members held already, a remove takes its accounts away (a lower bound: another patient may keep
    them). Anything else (not propagated, cancelled, pending, failed) leaves members unknown."""
    if command.status != "completed" or not command.propagate or command.accounts_after is None:
        return None
    if command.mode == "set":
        return command.command_id, frozenset(command.accounts_after)
    held = required[1] if required is not None else frozenset()
    if command.mode == "add":
        return command.command_id, held | set(command.accounts)
    return (command.command_id, held - set(command.accounts)) if required is not None else None


def check_resource(document: Document, expect: Expectations) -> list[Drift]:
    """Every rule that applies to one stored (live) resource document (pure)."""
    ref, resource = document["_id"], document.get("resource") or {}
    accounts = accounts_of(resource)
    drifts: list[Drift] = []
    rule = expect.targets.get(ref)
    if rule is not None and tuple(accounts) not in rule.allowed:
        drifts.append(
            Drift(
                "target-accounts",
                ref,
                list(rule.allowed[-1]),
                accounts,
                rule.command_ids[-1],
                "" if len(rule.allowed) == 1 else f"any of {[list(a) for a in rule.allowed]} is accepted",
            )
        )
    for key in document.get("members_of") or ():
        required = expect.members.get(key) if key != ref else None
        if required is not None and not required[1] <= set(accounts):
            drifts.append(
                Drift(
                    "member-accounts",
                    ref,
                    sorted(required[1]),
                    accounts,
                    required[0],
                    f"member of {key}; missing {sorted(required[1] - set(accounts))}",
                )
            )
    members_of = compartments_of(content_of(resource))
    compartment = list(dict.fromkeys(members_of + accounts))
    found = [
        e.get("reference")
        for e in (resource.get("meta") or {}).get("compartment") or []
        if isinstance(e, dict)
    ]
    if found != compartment:
        drifts.append(
            Drift(
                "compartment",
                ref,
                compartment,
                [str(f) for f in found],
                note="meta.compartment must be compartments_of(resource) + meta.accounts",
            )
        )
    indexed = list(document.get("compartments") or [])
    if list(document.get("members_of") or []) != members_of or indexed != compartment:
        drifts.append(
            Drift(
                "index",
                ref,
                compartment,
                indexed,
                note="internal members_of/compartments fields disagree with the resource",
            )
        )
    return drifts


@dataclass
class Report:
    """Drifts found (the first `limit` kept), and what was looked at."""

    limit: int
    drifts: list[Drift] = field(default_factory=list)
    drift_count: int = 0
    resources: int = 0
    targets_checked: int = 0
    members_checked: int = 0
    deleted_targets: list[str] = field(default_factory=list)

    def add(self, drifts: list[Drift]) -> None:
        self.drift_count += len(drifts)
        room = self.limit - len(self.drifts)
        if room > 0:
            self.drifts.extend(drifts[:room])

    @property
    def clean(self) -> bool:
        return self.drift_count == 0


async def verify_store(
    db: AsyncDatabase[Document], records: Sequence[CommandRecord], *, limit: int = 1000
) -> Report:
    """Stream every live resource once (bounded memory) and check it against the log; read-only."""
    expect = expectations(records)
    report = Report(limit=limit)
    seen_targets: set[str] = set()
    cursor = db.resources.find(
        {"deleted": {"$ne": True}},
        {"resource": 1, "members_of": 1, "compartments": 1},
        batch_size=STREAM_BATCH,
    )
    async for document in cursor:
        report.resources += 1
        if document["_id"] in expect.targets:
            seen_targets.add(document["_id"])
        if any(k in expect.members and k != document["_id"] for k in document.get("members_of") or ()):
            report.members_checked += 1
        report.add(check_resource(document, expect))
    report.targets_checked = len(seen_targets)
    unseen = sorted(set(expect.targets) - seen_targets)
    if unseen:
        tombstones = {d["_id"] async for d in db.resources.find({"_id": {"$in": unseen}}, {"_id": 1})}
        report.deleted_targets = sorted(tombstones)
        report.add(
            [
                Drift(
                    "missing-target",
                    t,
                    list(expect.targets[t].allowed[-1]),
                    [],
                    expect.targets[t].command_ids[-1],
                    "not in the store at all (not even deleted)",
                )
                for t in unseen
                if t not in tombstones
            ]
        )
    return report
