"""The one write rule: computed meta, versions only on content changes, accounts kept, tombstones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from setaccounts.store.meta import (
    COMMAND_SYSTEM,
    accounts_of,
    content_of,
    prepare_write,
    tombstone,
    with_accounts,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def observation(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "subject": {"reference": "Patient/1"},
        "performer": [{"reference": "Patient/2"}],
        **extra,
    }


def test_first_write_makes_version_one_with_computed_meta() -> None:
    write = prepare_write(observation(), None, T0)

    assert write.changed
    doc = write.document
    assert doc["_id"] == "Observation/o1"
    assert doc["type"] == "Observation"
    assert doc["version"] == 1
    assert doc["deleted"] is False
    assert doc["members_of"] == ["Patient/1", "Patient/2"]
    assert doc["compartments"] == ["Patient/1", "Patient/2"]
    assert doc["resource"]["meta"] == {
        "versionId": "1",
        "lastUpdated": "2024-05-01T12:00:00.123Z",
        "compartment": [{"reference": "Patient/1"}, {"reference": "Patient/2"}],
    }


def test_client_sent_server_meta_is_ignored() -> None:
    forged = observation(
        meta={
            "versionId": "42",
            "lastUpdated": "1999-01-01T00:00:00Z",
            "compartment": [{"reference": "Patient/x"}],
        }
    )

    doc = prepare_write(forged, None, T0).document

    assert doc["resource"]["meta"]["versionId"] == "1"
    assert doc["resource"]["meta"]["lastUpdated"].startswith("2024-05-01")
    assert {"reference": "Patient/x"} not in doc["resource"]["meta"]["compartment"]
    assert "Patient/x" not in doc["compartments"]


def test_accounts_are_kept_deduplicated_and_join_the_compartments() -> None:
    resource = observation(
        meta={
            "accounts": [
                {"reference": "Account/a"},
                {"reference": "Account/a"},
                {"reference": "Account/b"},
                {"display": "junk"},
            ]
        }
    )

    doc = prepare_write(resource, None, T0).document

    assert doc["resource"]["meta"]["accounts"] == [{"reference": "Account/a"}, {"reference": "Account/b"}]
    assert doc["compartments"] == ["Patient/1", "Patient/2", "Account/a", "Account/b"]
    assert doc["members_of"] == ["Patient/1", "Patient/2"]


def test_same_content_makes_no_version() -> None:
    first = prepare_write(observation(), None, T0).document

    again = prepare_write(observation(), first, T1)
    served_back = prepare_write(first["resource"], first, T1)

    assert not again.changed
    assert again.document is first
    assert not served_back.changed


def test_changed_content_makes_the_next_version_and_keeps_marks() -> None:
    first = {**prepare_write(observation(), None, T0).document, "marks": ["cmd-1"]}

    write = prepare_write(observation(status="amended"), first, T1)

    assert write.changed
    assert write.document["version"] == 2
    assert write.document["resource"]["meta"]["versionId"] == "2"
    assert write.document["resource"]["meta"]["lastUpdated"] == "2024-05-01T12:05:00.123Z"
    assert write.document["marks"] == ["cmd-1"]


def test_tombstone_then_rewrite_continues_the_version_line() -> None:
    first = prepare_write(observation(), None, T0).document

    dead = tombstone(first, T1)
    revived = prepare_write(observation(), dead, T1)

    assert dead["deleted"] is True
    assert dead["version"] == 2
    assert dead["resource"] is None
    assert dead["compartments"] == [] and dead["members_of"] == []
    assert revived.changed
    assert revived.document["version"] == 3
    assert revived.document["deleted"] is False


def test_with_accounts_replaces_and_clears() -> None:
    first = prepare_write(observation(meta={"accounts": [{"reference": "Account/a"}]}), None, T0).document

    replaced = with_accounts(first, ["Account/b"], T1).document
    cleared = with_accounts(replaced, [], T1).document

    assert replaced["resource"]["meta"]["accounts"] == [{"reference": "Account/b"}]
    assert "Account/a" not in replaced["compartments"]
    assert "accounts" not in cleared["resource"]["meta"]
    assert cleared["compartments"] == ["Patient/1", "Patient/2"]
    assert not with_accounts(cleared, [], T1).changed


def test_accounts_of_and_content_of() -> None:
    resource = {
        "resourceType": "Patient",
        "meta": {"versionId": "3", "accounts": [{"reference": "Account/a"}, 7]},
    }

    assert accounts_of(resource) == ["Account/a"]
    assert content_of({"resourceType": "Patient", "meta": {"versionId": "3"}}) == {"resourceType": "Patient"}


@given(
    family=st.text(max_size=20),
    accounts=st.lists(st.sampled_from(["Account/a", "Account/b", "Account/c"]), max_size=4),
)
def test_writing_what_is_served_is_always_a_no_op(family: str, accounts: list[str]) -> None:
    resource = observation(note=[{"text": family}], meta={"accounts": [{"reference": a} for a in accounts]})
    first = prepare_write(resource, None, T0).document

    assert not prepare_write(first["resource"], first, T1).changed
    assert not prepare_write(resource, first, T1).changed


def test_a_commands_version_names_it_and_the_next_write_drops_the_tag() -> None:
    mine = {"system": "http://example.org/tags", "code": "keep"}
    first = prepare_write(observation(meta={"tag": [mine]}), None, T0).document
    by_command = with_accounts(first, ["Organization/a"], T1, "cmd-1").document

    assert by_command["resource"]["meta"]["tag"] == [mine, {"system": COMMAND_SYSTEM, "code": "cmd-1"}]
    again = with_accounts(by_command, ["Organization/a"], T1, "cmd-2")
    assert not again.changed, "the tag is server meta: the same accounts are no new version"
    echoed = prepare_write(by_command["resource"], by_command, T1)
    assert not echoed.changed
    edited = prepare_write({**by_command["resource"], "status": "amended"}, by_command, T1).document
    assert edited["resource"]["meta"]["tag"] == [mine]


def test_a_client_cannot_forge_the_command_tag() -> None:
    forged = {"tag": [{"system": COMMAND_SYSTEM, "code": "not-a-command"}]}
    written = prepare_write(observation(meta=forged), None, T0).document

    assert "tag" not in written["resource"]["meta"]


def test_a_tombstone_remembers_where_the_deleted_version_was() -> None:
    live = prepare_write(observation(meta={"accounts": [{"reference": "Organization/a"}]}), None, T0).document
    dead = tombstone(live, T1)

    assert dead["compartments"] == []
    assert dead["deleted_from"] == ["Patient/1", "Patient/2", "Organization/a"]


def _full_rule(document: dict[str, Any], accounts: list[str], at: datetime, command_id: str | None) -> Any:
    """`with_accounts` as the whole write rule computes it: the body with its accounts replaced, rewritten."""
    resource = dict(document["resource"])
    resource["meta"] = {**(resource.get("meta") or {}), "accounts": [{"reference": a} for a in accounts]}
    return prepare_write(resource, document, at, command_id)


ACCOUNT_REFS = st.sampled_from(["Account/a", "Organization/b", "Account/c", "not a reference"])


@given(
    stored_accounts=st.lists(ACCOUNT_REFS, max_size=4),
    new_accounts=st.lists(ACCOUNT_REFS, max_size=4),
    tags=st.lists(st.sampled_from(["x", "y"]), max_size=2),
    subjects=st.lists(st.sampled_from(["Patient/1", "Patient/2", "Encounter/e", "Group/g"]), max_size=3),
    projected=st.booleans(),
    command_id=st.sampled_from([None, "cmd-1"]),
    tagged_before=st.booleans(),
)
def test_with_accounts_gives_what_the_whole_write_rule_gives(
    stored_accounts: list[str],
    new_accounts: list[str],
    tags: list[str],
    subjects: list[str],
    projected: bool,
    command_id: str | None,
    tagged_before: bool,
) -> None:
    """The accounts-only path (meta alone, stored `members_of`) writes exactly what rewriting the whole
    resource writes, also when the document was read without the resource's body."""
    meta: dict[str, Any] = {"accounts": [{"reference": a} for a in stored_accounts]}
    if tags:
        meta["tag"] = [{"code": t} for t in tags]
    resource: dict[str, Any] = {"resourceType": "Observation", "id": "o1", "status": "final", "meta": meta}
    if subjects:
        resource["subject"] = {"reference": subjects[0]}
        resource["performer"] = [{"reference": s} for s in subjects[1:]]
    stored = prepare_write(resource, None, T0, "cmd-0" if tagged_before else None).document
    stored["marks"] = [{"target": "Patient/1", "seq": 1, "command_id": "c", "changed": True}]
    expected = _full_rule(stored, new_accounts, T1, command_id)
    read = stored
    if projected:
        read = {k: v for k, v in stored.items() if k not in ("resource", "_id", "compartments")}
        read["resource"] = {"meta": stored["resource"]["meta"]}

    got = with_accounts(read, new_accounts, T1, command_id)

    assert got.changed == expected.changed
    for field in ("version", "members_of", "compartments", "marks", "deleted"):
        assert got.document.get(field, stored.get(field)) == expected.document[field]
    assert got.document["resource"]["meta"] == expected.document["resource"]["meta"]
    if not projected:
        assert got.document == expected.document
