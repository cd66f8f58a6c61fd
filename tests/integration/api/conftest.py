"""API fixtures: a snapshot of the resources collection and a check that nothing internal leaks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from tests.helpers.resources import Snapshot, stored_documents
from tests.helpers.served import check_public


@pytest.fixture
def snapshot(db: AsyncDatabase[dict[str, Any]]) -> Snapshot:
    """Every stored document in `_id` order: compare before and after to prove a refusal wrote nothing."""

    async def take() -> list[dict[str, Any]]:
        return await stored_documents(db)

    return take


@pytest.fixture
def assert_public() -> Callable[[dict[str, Any]], None]:
    """Fails if a served resource carries a storage field at its top level."""
    return check_public
