"""What a served resource may carry: never the storage fields of its stored document."""

from __future__ import annotations

from typing import Any

INTERNAL_KEYS = frozenset({"_id", "members_of", "compartments", "marks", "version", "deleted", "resource"})


def check_public(resource: dict[str, Any]) -> None:
    """Fails if a served resource carries a storage field at its top level."""
    leaked = INTERNAL_KEYS & set(resource)
    assert not leaked, f"internal fields served: {sorted(leaked)}"
    assert "resourceType" in resource
