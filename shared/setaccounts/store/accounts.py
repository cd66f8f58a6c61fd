"""Medplum's propagation rule for a member's accounts, as a pure function."""

from __future__ import annotations

from collections.abc import Iterable


def member_accounts(
    current: list[str], add: Iterable[str], remove: Iterable[str], held_by_others: Iterable[str]
) -> list[str]:
    """Add every target account; drop ones the target gave up unless another patient still holds them.

    Accounts the target never had are kept. Order: kept accounts as they were, then new ones.
    """
    drop = set(remove) - set(held_by_others)
    kept = [a for a in current if a not in drop]
    return list(dict.fromkeys([*kept, *add]))
