"""The three modes of a command: the target's new accounts and what its members gain and lose."""

from __future__ import annotations

import pytest

from setaccounts.events import SetAccountsCommand, accounts_after, member_changes
from setaccounts.store.propagation import member_accounts

A, B, C = "Organization/a", "Organization/b", "Organization/c"


@pytest.mark.parametrize(
    ("mode", "before", "given", "after", "add", "remove"),
    [
        ("set", [A, B], [C, A], [C, A], [C, A], [B]),
        ("set", [A], [], [], [], [A]),
        ("add", [A, B], [C, A], [A, B, C], [C, A], []),
        ("add", [], [B, B], [B], [B], []),
        ("remove", [A, B, C], [B, "Organization/never"], [A, C], [], [B, "Organization/never"]),
        ("remove", [A], [A], [], [], [A]),
    ],
)
def test_modes(
    mode: str, before: list[str], given: list[str], after: list[str], add: list[str], remove: list[str]
) -> None:
    assert accounts_after(mode, before, given) == after  # type: ignore[arg-type]
    assert member_changes(mode, before, given) == (add, sorted(remove))  # type: ignore[arg-type]


def test_two_adds_one_after_another_keep_both_on_target_and_member() -> None:
    target = accounts_after("add", accounts_after("add", [A], [B]), [C])
    assert target == [A, B, C]
    member = [A]
    for before, given in (([A], [B]), ([A, B], [C])):
        add, remove = member_changes("add", before, given)
        member = member_accounts(member, add, remove, held_by_others=[])
    assert member == [A, B, C]


def test_a_member_keeps_a_removed_account_another_patient_holds() -> None:
    add, remove = member_changes("remove", [A, B], [B])
    assert member_accounts([A, B, C], add, remove, held_by_others=[B]) == [A, B, C]
    assert member_accounts([A, B, C], add, remove, held_by_others=[]) == [A, C]


def test_a_command_without_a_mode_is_a_set() -> None:
    old = {"command_id": "c1", "target": "Patient/p1", "accounts": [A]}
    assert SetAccountsCommand.model_validate(old).mode == "set"
    with pytest.raises(ValueError, match="mode"):
        SetAccountsCommand.model_validate({**old, "mode": "replace"})
