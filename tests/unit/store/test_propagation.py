"""The propagation rule and the marks that make applying idempotent and ordered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from setaccounts.store.meta import accounts_of, prepare_write
from setaccounts.store.propagation import (
    Application,
    Applied,
    alike_key,
    apply_accounts,
    changed_fields,
    decide,
    grouped_writes,
    member_accounts,
    rule_input,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 25  # statements of at most this many ids


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
    """Members that end up alike share statements (of at most CHUNK ids); any difference, in the
    version read or in what is written, keeps them apart; every member is written once, guarded by the
    version it was read at, with the fields applying gave it."""
    befores = [observation(f"same{i:03d}") for i in range(CHUNK + 3)]
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

    grouped = grouped_writes(writes, CHUNK)

    assert all(len(w.ids) <= CHUNK for w in grouped)
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


ACCOUNTS = ["Organization/a", "Organization/b", "Organization/own"]
PATIENTS = ["Patient/p1", "Patient/p2"]
HELD = {"Patient/p2": ["Organization/b"]}


@st.composite
def stored_members(draw: st.DrawFn) -> dict:  # type: ignore[type-arg]
    """A stored member as the store holds them: written by the rule, maybe by an earlier command, with
    other meta of its own."""
    resource = {
        "resourceType": "Observation",
        "id": draw(st.sampled_from(["o1", "o2"])),
        "status": draw(st.sampled_from(["final", "amended"])),
        "code": {"text": "x"},
        "subject": {"reference": draw(st.sampled_from(PATIENTS))},
    }
    meta = {"accounts": [{"reference": a} for a in draw(st.lists(st.sampled_from(ACCOUNTS), unique=True))]}
    if draw(st.booleans()):
        meta["security"] = [{"system": "s", "code": draw(st.sampled_from(["R", "N"]))}]
    resource["meta"] = meta
    written = draw(st.sampled_from([NOW, NOW + timedelta(seconds=1)]))
    doc = prepare_write(resource, None, written, draw(st.sampled_from([None, "c0"]))).document
    members_of = draw(st.lists(st.sampled_from(PATIENTS), min_size=1, unique=True))
    marks = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "target": st.sampled_from(PATIENTS),
                    "seq": st.integers(1, 3),
                    "command_id": st.sampled_from(["c1", "c2", "c3"]),
                    "changed": st.booleans(),
                }
            ),
            max_size=2,
            unique_by=lambda m: m["target"],
        )
    )
    return {**doc, "version": draw(st.integers(1, 3)), "members_of": members_of, "marks": marks}


applications = st.builds(
    Application,
    resource=st.just("Observation/o1"),
    target=st.just("Patient/p1"),
    seq=st.integers(1, 3),
    command_id=st.sampled_from(["c1", "c2", "c3"]),
    add=st.lists(st.sampled_from(ACCOUNTS), unique=True),
    remove=st.lists(st.sampled_from(ACCOUNTS), unique=True),
    exact=st.booleans(),
)


def decision(applied: Applied) -> tuple[bool, bool, dict | None]:  # type: ignore[type-arg]
    return applied.changed, applied.write, changed_fields(applied) if applied.write else None


@settings(max_examples=300, deadline=None)
@given(app=applications, one=stored_members(), other=stored_members())
def test_members_with_the_same_key_are_decided_alike_and_as_each_would_be_alone(
    app: Application,
    one: dict,  # type: ignore[type-arg]
    other: dict,  # type: ignore[type-arg]
) -> None:
    """The applier decides each group of alike members once, on the rule's inputs only: that must be what
    deciding each whole stored member gives, and members with one key must be decided the same."""
    for doc in (one, other):
        assert decision(decide(app, rule_input(doc), HELD, NOW)) == decision(decide(app, doc, HELD, NOW))
    if alike_key(app, one) == alike_key(app, other):
        assert decision(decide(app, one, HELD, NOW)) == decision(decide(app, other, HELD, NOW))


def test_members_differing_only_in_their_bodies_and_server_meta_share_a_key() -> None:
    a, b = observation("o1"), observation("o2")
    b["resource"]["status"] = "amended"
    b["resource"]["meta"] |= {"lastUpdated": "2026-01-02T00:00:00.000Z", "versionId": "7"}
    app = Application("Observation/o1", "Patient/p1", 1, "c1", ["Organization/a"])
    assert alike_key(app, a) == alike_key(app, b)
    assert alike_key(app, a) != alike_key(app, {**a, "version": 2})
    assert alike_key(app, a) != alike_key(app, {**a, "members_of": ["Patient/p2"]})
