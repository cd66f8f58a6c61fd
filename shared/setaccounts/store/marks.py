"""Applied-command marks: each resource remembers, per target, the last set-accounts command applied to it.

A mark makes every application idempotent (the same command twice is one effect, and its original outcome
is reported again) and keeps a target's commands in order (an older command never undoes a newer one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ReplaceOne, UpdateOne

from setaccounts.store.meta import Document, with_accounts


@dataclass(frozen=True)
class Applied:
    document: Document  # the document after applying (the input when nothing was written)
    changed: bool  # content changed: a new version
    write: bool  # something must be stored (a new version, or only a new mark)


def mark_of(document: Document, target: str) -> dict[str, Any] | None:
    return next((m for m in document.get("marks", []) if m["t"] == target), None)


def apply_accounts(
    document: Document, accounts: list[str], *, target: str, seq: int, command_id: str, now: datetime
) -> Applied:
    """Give `document` these accounts on behalf of command `command_id` (the `seq`-th for `target`)."""
    mark = mark_of(document, target)
    if mark is not None and mark["c"] == command_id:
        return Applied(document, changed=bool(mark["ch"]), write=False)
    if mark is not None and mark["s"] > seq:
        return Applied(document, changed=False, write=False)
    written = with_accounts(document, accounts, now)
    result = dict(written.document)
    result["marks"] = [m for m in document.get("marks", []) if m["t"] != target] + [
        {"t": target, "s": seq, "c": command_id, "ch": written.changed}
    ]
    return Applied(result, changed=written.changed, write=True)


def write_op(before: Document, applied: Applied) -> ReplaceOne[Document] | UpdateOne:
    """The guarded write for an applied change: it only lands if the version read is still current."""
    guard = {"_id": before["_id"], "version": before["version"]}
    if applied.changed:
        return ReplaceOne(guard, applied.document)
    return UpdateOne(guard, {"$set": {"marks": applied.document["marks"]}})
