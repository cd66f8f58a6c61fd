"""Reading many documents by `_id` (`store.lookup`), as the applier reads a batch's members: every stored
one comes back once, whatever the chunking, and missing ones are left out. Checked on the real store."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.store.resources import ResourceStore

pytestmark = pytest.mark.integration

CHUNK = 50  # small, so a few hundred documents cross several chunks


async def test_many_ids_across_chunks_come_back_once_and_missing_ones_are_left_out(
    db: AsyncDatabase[dict[str, Any]],
) -> None:
    stored = [f"Observation/o{i:04d}" for i in range(2 * CHUNK + 7)]  # two chunks and part of a third
    await db.resources.insert_many(
        [
            {"_id": ref, "version": 1, "resource": {"id": ref.split("/")[1], "n": i}}
            for i, ref in enumerate(stored)
        ]
    )
    missing = [f"Observation/gone{i}" for i in range(CHUNK)]
    wanted = stored + missing + stored[:5]  # a chunk boundary falls among missing ids; some asked twice
    random.Random(7).shuffle(wanted)

    found = await ResourceStore(db, read_chunk=CHUNK).get_many(wanted)

    assert sorted(found) == stored
    assert all(doc["resource"]["n"] == stored.index(ref) for ref, doc in found.items())


async def test_a_projection_reads_only_the_fields_asked_for(db: AsyncDatabase[dict[str, Any]]) -> None:
    refs = [f"Observation/p{i}" for i in range(CHUNK + 1)]
    await db.resources.insert_many(
        [{"_id": ref, "version": 3, "resource": {"big": "x" * 100}} for ref in refs]
    )

    found = await ResourceStore(db, read_chunk=CHUNK).get_many(refs, projection={"version": 1})

    assert found == {ref: {"_id": ref, "version": 3} for ref in refs}
