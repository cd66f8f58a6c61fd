"""The propagation rule and the marks that make applying idempotent and ordered."""

from __future__ import annotations

from datetime import UTC, datetime

from setaccounts.store.meta import accounts_of, prepare_write
from setaccounts.store.propagation import (
    WRITE_CHUNK,
    apply_accounts,
    changed_fields,
    grouped_writes,
    member_accounts,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_members_gain_target_accounts_and_keep_their_own() -> None:
    assert member_accounts(["Organization/own"], ["Organization/a"], [], []) == [
        "Organization/own",
        "Organization/a",
    ]


def test_accounts_given_up_are_removed_unless_another_patient_holds_them() -> None:
    current = ["Organization/a", "Organization/b", "Organization/own"]
    assert member_accounts(current, [], ["Organization/a", "Organization/b"], ["Organization/b"]) == [
        "Organization/b",
        "Organization/own",
    ]


def test_no_duplicates_and_order_is_stable() -> None:
    assert member_accounts(
        ["Organization/a"], ["Organization/a", "Organization/b", "Organization/b"], [], []
    ) == ["Organization/a", "Organization/b"]


def document() -> dict:  # type: ignore[type-arg]
    return prepare_write(
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p1"},
        },
        None,
        NOW,
    ).document


def test_applying_the_same_command_twice_is_one_effect_and_reports_the_first_outcome() -> None:
    first = apply_accounts(
        document(), ["Organization/a"], target="Patient/p1", seq=1, command_id="c1", now=NOW
    )
    assert first.changed and first.write and first.document["version"] == 2
    again = apply_accounts(
        first.document, ["Organization/a"], target="Patient/p1", seq=1, command_id="c1", now=NOW
    )
    assert again.changed and not again.write and again.document is first.document


def test_an_older_command_never_undoes_a_newer_one() -> None:
    newer = apply_accounts(
        document(), ["Organization/b"], target="Patient/p1", seq=2, command_id="c2", now=NOW
    )
    older = apply_accounts(
        newer.document, ["Organization/a"], target="Patient/p1", seq=1, command_id="c1", now=NOW
    )
    assert not older.write and not older.changed
    assert older.document["resource"]["meta"]["accounts"] == [{"reference": "Organization/b"}]


def test_unchanged_content_writes_only_the_mark_and_makes_no_version() -> None:
    doc = document()
    same = apply_accounts(doc, [], target="Patient/p1", seq=1, command_id="c1", now=NOW)
    assert same.write and not same.changed
    assert same.document["version"] == doc["version"] == 1
    assert same.document["marks"] == [
        {"target": "Patient/p1", "seq": 1, "command_id": "c1", "changed": False}
    ]


def test_marks_of_other_targets_are_kept() -> None:
    one = apply_accounts(document(), ["Organization/a"], target="Patient/p1", seq=1, command_id="c1", now=NOW)
    two = apply_accounts(
        one.document, ["Organization/a"], target="Patient/p2", seq=1, command_id="c9", now=NOW
    )
    assert {m["target"] for m in two.document["marks"]} == {"Patient/p1", "Patient/p2"}


def observation(oid: str, accounts: list[str] | None = None, version: int = 1) -> dict:  # type: ignore[type-arg]
    resource = {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "x"}}
    resource["subject"] = {"reference": "Patient/p1"}
    if accounts:
        resource["meta"] = {"accounts": [{"reference": a} for a in accounts]}
    return {**prepare_write(resource, None, NOW).document, "version": version}


def test_grouped_writes_give_each_resource_exactly_its_own_guarded_change() -> None:
    """Members that end up alike share statements (of at most WRITE_CHUNK ids); any difference, in the
    version read or in what is written, keeps them apart; every member is written once, guarded by the
    version it was read at, with the fields applying gave it."""
    befores = [observation(f"same{i:03d}") for i in range(WRITE_CHUNK + 3)]
    befores += [observation("own", ["Organization/own"]), observation("later", version=4)]
    befores += [observation("other")]
    # already holding the account: only the mark is written, the same fields at different versions
    befores += [
        observation("has-a", ["Organization/a"]),
        observation("has-a-too", ["Organization/a"], version=3),
    ]
    writes = []
    for before in befores:
        command = "c2" if before["_id"] == "Observation/other" else "c1"
        accounts = [*accounts_of(before["resource"]), "Organization/a"]
        applied = apply_accounts(before, accounts, target="Patient/p1", seq=1, command_id=command, now=NOW)
        writes.append((before, applied))

    grouped = grouped_writes(writes)

    assert all(len(w.ids) <= WRITE_CHUNK for w in grouped)
    assert len(grouped) == 2 + 5  # the alike members in two statements, then one each for the others
    written = {ref: w for w in grouped for ref in w.ids}
    assert (
        sorted(ref for w in grouped for ref in w.ids) == sorted(written) == sorted(b["_id"] for b in befores)
    )
    for before, applied in writes:
        statement = written[before["_id"]]
        assert statement.version == before["version"]
        assert statement.fields == changed_fields(applied)
        assert statement.op()._filter == {"_id": {"$in": statement.ids}, "version": before["version"]}
