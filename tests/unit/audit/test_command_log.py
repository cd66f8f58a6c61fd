"""Folding the commands and results topics into one record per command, and the rules built on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from setaccounts.events import (
    BatchApplied,
    CancelRequested,
    CommandFailed,
    CommandFinished,
    CommandPlanned,
    Effect,
    PartitionDone,
    SetAccountsCommand,
)
from setaccounts.store.meta import prepare_write
from setaccounts_audit.command_log import CommandLog, Rejected, by_target, fold_log, since
from setaccounts_audit.redrive import RedriveRefused, choose, redrive_command
from setaccounts_audit.render import as_row
from setaccounts_audit.verify import check_resource, expectations

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def command(
    cid: str,
    target: str = "Patient/p1",
    *accounts: str,
    minutes: int = 0,
    propagate: bool = True,
    redrive_of: str | None = None,
) -> SetAccountsCommand:
    return SetAccountsCommand(
        command_id=cid,
        target=target,
        accounts=list(accounts),
        propagate=propagate,
        requested_at=T0 + timedelta(minutes=minutes),
        requested_by="tester",
        redrive_of=redrive_of,
    )


def planned(c: SetAccountsCommand, before: list[str], expected: int, seq: int = 1) -> CommandPlanned:
    return CommandPlanned(
        command_id=c.command_id,
        target=c.target,
        target_seq=seq,
        accounts_before=before,
        accounts_after=list(c.accounts),
        propagate=c.propagate,
        target_changed=True,
        expected=expected,
        partitions=[0, 1],
        requested_at=c.requested_at,
        requested_by=c.requested_by,
        redrive_of=c.redrive_of,
    )


def finished(
    cid: str,
    status: str = "completed",
    updated: int = 0,
    changed: int = 0,
    outcome: dict[str, Any] | None = None,
) -> CommandFinished:
    return CommandFinished(
        command_id=cid, status=status, resources_updated=updated, resources_changed=changed, outcome=outcome
    )


NOT_FOUND = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "not-found", "diagnostics": "target Patient/x does not exist"}],
}


def test_a_completed_command_carries_plan_and_final_counts() -> None:
    c = command("c1", "Patient/p1", "Organization/o1")
    results = [
        planned(c, ["Organization/o0"], 5),
        BatchApplied(command_id="c1", partition=0, entries=[("Observation/a", Effect.CHANGED)]),
        PartitionDone(command_id="c1", partition=0),
        finished("c1", updated=6, changed=4),
    ]
    [record] = fold_log([(c, (0, 7))], results)
    assert (record.status, record.resources_updated, record.resources_changed) == ("completed", 6, 4)
    assert record.accounts_before == ["Organization/o0"]
    assert record.accounts_after == ["Organization/o1"]
    assert (record.expected, record.position, record.requested_by) == (5, (0, 7), "tester")


def test_a_command_without_an_answer_is_pending() -> None:
    c = command("c1", "Patient/p1", "Organization/o1")
    [record] = fold_log([(c, (0, 0))], [planned(c, [], 3)])
    assert record.status == "pending"
    assert record.resources_updated is None
    assert record.expected == 3


def test_a_failed_command_shows_the_diagnostics() -> None:
    c = command("c1", "Patient/x", "Organization/o1")
    [record] = fold_log(
        [(c, (1, 0))],
        [
            CommandFailed(command_id="c1", target="Patient/x", outcome=NOT_FOUND),
            finished("c1", "error", outcome=NOT_FOUND),
        ],
    )
    assert record.status == "error"
    assert record.diagnostics == "target Patient/x does not exist"
    assert record.accounts_before is None  # never planned


def test_a_cancelled_command_records_who_cancelled() -> None:
    c = command("c1", "Patient/big", "Organization/o1")
    [record] = fold_log(
        [(c, (0, 0))],
        [
            CancelRequested(command_id="c1", requested_at=T0, requested_by="ops"),
            finished("c1", "cancelled", updated=120, changed=120),
        ],
    )
    assert (record.status, record.cancel_requested_by, record.resources_updated) == ("cancelled", "ops", 120)


def test_results_before_commands_fold_the_same() -> None:
    c = command("c1", "Patient/p1", "Organization/o1")
    history = CommandLog()
    history.add_result(finished("c1", updated=1, changed=1))
    history.add_command(c, (0, 0))
    assert history.records() == fold_log([(c, (0, 0))], [finished("c1", updated=1, changed=1)])


def test_a_republished_command_is_one_record_and_a_conflicting_reuse_is_set_aside() -> None:
    c = command("c1", "Patient/p1", "Organization/o1")
    other = command("c1", "Patient/p1", "Organization/evil")
    history = CommandLog()
    for position, event in enumerate([c, c, other]):
        history.add_command(event, (0, position))
    [record] = history.records()
    assert record.copies == 2
    assert record.accounts_after == ["Organization/o1"]
    assert history.conflicting == [("c1", (0, 2))]


def test_a_republished_answer_does_not_duplicate_the_record() -> None:
    c = command("c1", "Patient/p1")
    records = fold_log([(c, (0, 0))], [finished("c1", updated=3), finished("c1", updated=3)])
    assert [(r.command_id, r.resources_updated) for r in records] == [("c1", 3)]


def test_a_command_known_only_from_its_plan_is_still_listed() -> None:
    c = command("c1", "Patient/p1", "Organization/o1")
    [record] = fold_log([], [planned(c, [], 2), finished("c1", updated=3, changed=3)])
    assert (record.target, record.position, record.status) == ("Patient/p1", None, "completed")


def test_results_without_any_description_of_the_command_are_left_out() -> None:
    assert fold_log([], [finished("ghost", updated=1)]) == []


def test_records_are_in_event_time_order_and_since_filters_on_it() -> None:
    late = command("late", "Patient/p1", minutes=10)
    early = command("early", "Patient/p2", minutes=1)
    records = fold_log([(late, (0, 0)), (early, (1, 0))], [])
    assert [r.command_id for r in records] == ["early", "late"]
    assert [r.command_id for r in since(records, T0 + timedelta(minutes=5))] == ["late"]


def test_by_target_uses_log_order_not_event_time() -> None:
    first = command("first", "Patient/p1", minutes=5)  # clock skew: requested_at later, but published first
    second = command("second", "Patient/p1", minutes=1)
    grouped = by_target(fold_log([(first, (2, 10)), (second, (2, 11))], []))
    assert [r.command_id for r in grouped["Patient/p1"]] == ["first", "second"]


def test_redrive_chooses_only_the_last_command_of_a_target_unless_forced() -> None:
    old = command("old", "Patient/p1", "Organization/o1")
    new = command("new", "Patient/p1", "Organization/o2")
    records = fold_log([(old, (0, 0)), (new, (0, 1))], [finished("old"), finished("new")])
    assert choose(records, "new").command_id == "new"
    with pytest.raises(RedriveRefused, match="not the last command for Patient/p1"):
        choose(records, "old")
    assert choose(records, "old", force=True).command_id == "old"
    with pytest.raises(RedriveRefused, match="is not in the commands or results topic"):
        choose(records, "nope")
    again = redrive_command(choose(records, "new"), "ops")
    assert (again.redrive_of, again.target, again.accounts, again.requested_by) == (
        "new",
        "Patient/p1",
        ["Organization/o2"],
        "ops",
    )
    assert again.command_id != "new"


def test_expectations_follow_the_last_completed_command_and_tolerate_a_later_cancel() -> None:
    c1 = command("c1", "Patient/p1", "Organization/o1")
    c2 = command("c2", "Patient/p1", "Organization/o2")
    c3 = command("c3", "Patient/p1", "Organization/o3")
    records = fold_log(
        [(c1, (0, 0)), (c2, (0, 1)), (c3, (0, 2))],
        [finished("c1"), finished("c2", "error", outcome=NOT_FOUND), finished("c3", "cancelled")],
    )
    expect = expectations(records)
    assert expect.targets["Patient/p1"].allowed == (("Organization/o1",), ("Organization/o3",))
    assert "Patient/p1" not in expect.members  # the last command was cancelled: members are partial


def stored(resource: dict[str, Any]) -> dict[str, Any]:
    return prepare_write(resource, None, T0).document


def test_check_resource_reports_member_and_compartment_drift_with_the_ref() -> None:
    c = command("c1", "Patient/p1", "Organization/o1")
    expect = expectations(fold_log([(c, (0, 0))], [finished("c1")]))
    good = stored(
        {
            "resourceType": "Observation",
            "id": "o",
            "status": "final",
            "code": {},
            "subject": {"reference": "Patient/p1"},
            "meta": {"accounts": [{"reference": "Organization/o1"}]},
        }
    )
    assert check_resource(good, expect) == []
    bad = stored({**good["resource"]})
    bad["resource"]["meta"]["accounts"] = []  # edited behind the write rule's back
    kinds = {(d.kind, d.ref) for d in check_resource(bad, expect)}
    assert ("member-accounts", "Observation/o") in kinds
    assert ("compartment", "Observation/o") in kinds


def test_a_time_without_offset_is_read_as_utc() -> None:
    naive = SetAccountsCommand(command_id="naive", target="Patient/p1", requested_at=datetime(2025, 3, 1, 11))
    records = fold_log([(command("aware", "Patient/p2"), (0, 0)), (naive, (1, 0))], [])
    assert [r.command_id for r in records] == ["naive", "aware"]
    assert records[0].requested_at.tzinfo is UTC


def test_a_rejected_command_is_listed_as_the_error_it_was_answered_with() -> None:
    history = CommandLog()
    history.add_rejected(Rejected("bad-1", "Patient/p1", T0, "other-service", (2, 4)))
    history.add_result(CommandFailed(command_id="bad-1", target="Patient/p1", outcome=NOT_FOUND))
    history.add_result(finished("bad-1", "error", outcome=NOT_FOUND))
    [record] = history.records()
    assert (record.target, record.status, record.position, record.rejected) == (
        "Patient/p1",
        "error",
        (2, 4),
        True,
    )
    assert record.diagnostics == "target Patient/x does not exist"


def test_a_rejected_command_neither_blocks_nor_can_be_redriven() -> None:
    good = command("good", "Patient/p1", "Organization/o1")
    history = CommandLog()
    history.add_command(good, (2, 3))
    history.add_result(finished("good"))
    history.add_rejected(Rejected("bad-1", "Patient/p1", T0, None, (2, 4)))
    records = history.records()
    assert [r.command_id for r in by_target(records)["Patient/p1"]] == ["good"]
    assert choose(records, "good").command_id == "good"
    with pytest.raises(RedriveRefused, match="rejected as invalid"):
        choose(records, "bad-1")


def moded(cid: str, mode: str, *accounts: str, propagate: bool = True) -> SetAccountsCommand:
    return command(cid, "Patient/p1", *accounts, propagate=propagate).model_copy(update={"mode": mode})


def planned_as(c: SetAccountsCommand, before: list[str], after: list[str], seq: int) -> CommandPlanned:
    plan = planned(c, before, 3, seq)
    return plan.model_copy(update={"accounts_after": after, "mode": c.mode, "accounts": list(c.accounts)})


def test_add_and_remove_records_carry_mode_given_accounts_and_the_planned_result() -> None:
    c1 = moded("c1", "add", "Organization/o2")
    c2 = moded("c2", "remove", "Organization/o1")
    records = fold_log(
        [(c1, (0, 0)), (c2, (0, 1))],
        [planned_as(c1, ["Organization/o1"], ["Organization/o1", "Organization/o2"], 1)],
    )
    first, second = records
    assert (first.mode, first.accounts, first.accounts_after) == (
        "add",
        ["Organization/o2"],
        ["Organization/o1", "Organization/o2"],
    )
    assert (second.mode, second.accounts_after) == ("remove", None)  # not planned: the result is unknown
    redo = redrive_command(first, "auditor")
    assert (redo.mode, redo.accounts) == ("add", ["Organization/o2"])


def test_expectations_follow_adds_and_removes() -> None:
    c1 = moded("c1", "set", "Organization/o1")
    c2 = moded("c2", "add", "Organization/o2")
    c3 = moded("c3", "add", "Organization/o3")
    c4 = moded("c4", "remove", "Organization/o1")
    o1, o2, o3 = "Organization/o1", "Organization/o2", "Organization/o3"
    results = [
        planned_as(c1, [], [o1], 1),
        finished("c1"),
        planned_as(c2, [o1], [o1, o2], 2),
        finished("c2"),
        planned_as(c3, [o1, o2], [o1, o2, o3], 3),
        finished("c3"),
    ]
    commands = [(c1, (0, 0)), (c2, (0, 1)), (c3, (0, 2))]
    expect = expectations(fold_log(commands, results))
    assert expect.targets["Patient/p1"].allowed == ((o1, o2, o3),)
    assert expect.members["Patient/p1"] == ("c3", frozenset({o1, o2, o3}))

    # a remove still pending (not planned): either the list before it or the list it would compute
    expect = expectations(fold_log([*commands, (c4, (0, 3))], results))
    assert expect.targets["Patient/p1"].allowed == ((o1, o2, o3), (o2, o3))
    assert "Patient/p1" not in expect.members

    done = [*results, planned_as(c4, [o1, o2, o3], [o2, o3], 4), finished("c4")]
    expect = expectations(fold_log([*commands, (c4, (0, 3))], done))
    assert expect.targets["Patient/p1"].allowed == ((o2, o3),)
    assert expect.members["Patient/p1"] == ("c4", frozenset({o2, o3}))


def test_the_log_shows_the_trace_each_command_was_published_in() -> None:
    log = CommandLog()
    traced, untraced = command("c-traced"), command("c-plain", minutes=1)
    log.add_command(traced, (0, 0), trace_id="ab" * 16)
    log.add_command(traced, (0, 1), trace_id="cd" * 16)  # a copy: the first publication's trace stays
    log.add_command(untraced, (0, 2))
    rows = {r.command_id: as_row(r) for r in log.records()}
    assert rows["c-traced"]["trace_id"] == "ab" * 16
    assert rows["c-plain"]["trace_id"] is None
