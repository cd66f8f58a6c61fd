"""Resources for tests: store them straight through the write rule, build a patient with members, and
read back what is stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.store.meta import prepare_write

Seed = Callable[..., Awaitable[list[str]]]
Snapshot = Callable[[], Awaitable[list[dict[str, Any]]]]


async def store_resources(db: AsyncDatabase[dict[str, Any]], *resources: dict[str, Any]) -> list[str]:
    """Store resources straight through the write rule (fast); returns their references."""
    now = datetime.now(UTC)
    documents = [prepare_write(r, None, now).document for r in resources]
    if documents:
        await db.resources.insert_many(documents)
    return [d["_id"] for d in documents]


def patient_with_members(pid: str, members: int, accounts: list[str] | None = None) -> list[dict[str, Any]]:
    """A patient and `members` Observations in its compartment."""
    meta = {"accounts": [{"reference": a} for a in accounts]} if accounts else None
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid, **({"meta": meta} if meta else {})}
    observations = [
        {
            "resourceType": "Observation",
            "id": f"{pid}-obs-{i:06d}",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": f"Patient/{pid}"},
        }
        for i in range(members)
    ]
    return [patient, *observations]


def shared_member(accounts: list[str] | None = None) -> dict[str, Any]:
    """`Observation/shared`: in Patient/p1's compartment (subject) and Patient/p2's (performer)."""
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "shared",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Patient/p2"}],
    }
    if accounts:
        observation["meta"] = {"accounts": [{"reference": a} for a in accounts]}
    return observation


async def member_accounts(db: AsyncDatabase[dict[str, Any]], prefix: str) -> dict[str, list[str]]:
    found = db.resources.find({"_id": {"$regex": f"^{prefix}"}, "deleted": False})
    return {
        d["_id"]: [a["reference"] for a in d["resource"].get("meta", {}).get("accounts", [])]
        async for d in found
    }


async def stored_documents(db: AsyncDatabase[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every stored document in `_id` order: compare before and after to prove a refusal wrote nothing."""
    return await db.resources.find({}).sort("_id", 1).to_list()
