"""API test helpers: a snapshot of the resources collection and a check that nothing internal leaks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

Snapshot = Callable[[], Awaitable[list[dict[str, Any]]]]
INTERNAL_KEYS = frozenset({"_id", "members_of", "compartments", "marks", "version", "deleted", "resource"})


@pytest.fixture
def snapshot(db: AsyncDatabase[dict[str, Any]]) -> Snapshot:
    """Every stored document in `_id` order: compare before and after to prove a refusal wrote nothing."""

    async def take() -> list[dict[str, Any]]:
        return await db.resources.find({}).sort("_id", 1).to_list()

    return take


@pytest.fixture
def assert_public() -> Callable[[dict[str, Any]], None]:
    """Fails if a served resource carries a storage field at its top level."""

    def check(resource: dict[str, Any]) -> None:
        leaked = INTERNAL_KEYS & set(resource)
        assert not leaked, f"internal fields served: {sorted(leaked)}"
        assert "resourceType" in resource

    return check
