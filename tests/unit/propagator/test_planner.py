"""The planner over in-memory stores: one update per member, a redelivered command planned once, a cancel
that stops the fan-out, and the answers to commands that cannot run."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from setaccounts.events import (
    COMMANDS,
    RESULTS,
    UPDATES,
    CommandFailed,
    CommandFinished,
    CommandPlanned,
    EndOfCommand,
    Event,
    EventError,
    MemberUpdate,
)
from setaccounts.events.wire import partition_for
from setaccounts.status import JobStatus
from setaccounts_propagator.planner import DuplicateCommandId
from tests.helpers.fakes import InMemory, command
from tests.helpers.resources import patient_with_members


async def test_a_command_sets_the_target_and_sends_one_update_per_member_to_its_partition() -> None:
    memory = InMemory()
    members = memory.resources.seed(*patient_with_members("p1", 7))[1:]
    first = command("Patient/p1", "Organization/o1")
    await memory.send(first)
    await memory.consume("planner", plan_page_size=3)

    assert memory.resources.accounts("Patient/p1") == ["Organization/o1"]
    updates = memory.publisher.records[UPDATES.name]
    assert sorted(i.event.member for i in updates if isinstance(i.event, MemberUpdate)) == members
    for item in updates:
        if isinstance(item.event, MemberUpdate):
            assert item.record.key == item.event.member.encode()
            assert item.record.partition == partition_for(item.record.key, [0, 1, 2])
            assert (item.event.add, item.event.remove) == (["Organization/o1"], [])
    ends = memory.publisher.events(UPDATES, EndOfCommand)
    assert sorted(e.partition for e in ends) == [0, 1, 2]
    assert updates[-3:] == [i for i in updates if isinstance(i.event, EndOfCommand)], "ends come last"
    [planned] = memory.publisher.events(RESULTS, CommandPlanned)
    assert (planned.expected, planned.target_seq, planned.target_changed) == (7, 1, True)
    job = await memory.jobs.get(first.command_id)
    assert job is not None
    assert (job.planned, job.emitted, job.cursor, job.status) == (True, 7, members[-1], JobStatus.APPLYING)


async def test_a_redelivered_command_is_planned_once() -> None:
    memory = InMemory()
    first = await memory.planned(5, plan_page_size=2)
    target = await memory.resources.get("Patient/p1")
    sent = len(memory.publisher.records[UPDATES.name])

    await memory.publisher.publish(COMMANDS, first)  # redelivered (or published twice)
    await memory.consume("planner", plan_page_size=2)

    assert len(memory.publisher.records[UPDATES.name]) == sent, "no update is sent again"
    assert await memory.resources.get("Patient/p1") == target, "the target is not written again"
    assert memory.jobs.sequences == {"Patient/p1": 1}, "the command keeps its place in the target's order"
    first_plan, again = memory.publisher.events(RESULTS, CommandPlanned)
    assert again == first_plan, "the plan is answered again, unchanged"


async def test_cancel_mid_plan_stops_the_fan_out_at_the_next_page() -> None:
    memory = InMemory()
    members = memory.resources.seed(*patient_with_members("p1", 10))[1:]
    running = command("Patient/p1", "Organization/o1")

    async def cancel_after_the_first_page(channel: object, events: list[Event]) -> None:
        if any(isinstance(e, MemberUpdate) for e in events):
            await memory.jobs.cancel(running.command_id, "someone")

    memory.publisher.after_send = cancel_after_the_first_page
    await memory.send(running)
    await memory.consume("planner", plan_page_size=4)

    updates = memory.publisher.events(UPDATES)
    assert sorted(u.member for u in updates) == members[:4], "only the page in flight was sent"
    assert memory.publisher.events(RESULTS) == [], "no plan: the aggregator answers for the cancel"
    job = await memory.jobs.get(running.command_id)
    assert job is not None
    assert (job.status, job.planned, job.emitted) == (JobStatus.CANCELLED, False, 0)

    await memory.publisher.publish(COMMANDS, running)  # redelivered after the cancel
    await memory.consume("planner", plan_page_size=4)
    assert len(memory.publisher.events(UPDATES)) == 4, "a finished job is never planned again"


async def test_a_cancelled_job_is_answered_cancelled_and_its_updates_write_nothing() -> None:
    memory = InMemory()
    memory.resources.seed(*patient_with_members("p1", 6))
    running = command("Patient/p1", "Organization/o1")

    async def cancel_after_the_first_page(channel: object, events: list[Event]) -> None:
        if any(isinstance(e, MemberUpdate) for e in events):
            await memory.cancel(running.command_id)

    memory.publisher.after_send = cancel_after_the_first_page
    await memory.send(running)
    untouched = {r: d for r, d in memory.resources.documents.items() if r != "Patient/p1"}
    await memory.run(plan_page_size=2)

    assert {r: memory.resources.documents[r] for r in untouched} == untouched, "no member was written"
    [finished] = memory.publisher.events(RESULTS, CommandFinished)
    assert (finished.status, finished.resources_updated) == ("cancelled", 1)


async def test_a_missing_target_fails_the_command_with_404() -> None:
    memory = InMemory()
    missing = command("Patient/nobody", "Organization/o1")
    await memory.send(missing)
    await memory.run()

    [failed] = memory.publisher.events(RESULTS, CommandFailed)
    assert failed.command_id == missing.command_id
    [finished] = memory.publisher.events(RESULTS, CommandFinished)
    assert finished.status == "error"
    job = await memory.jobs.get(missing.command_id)
    assert job is not None
    assert (job.status, job.http_status) == (JobStatus.ERROR, 404)
    assert memory.publisher.events(UPDATES) == []


async def test_a_command_id_reused_for_another_command_is_refused_and_leaves_the_job_alone() -> None:
    memory = InMemory()
    memory.resources.seed(*patient_with_members("p1", 2))
    first = command("Patient/p1", "Organization/o1")
    await memory.send(first)
    await memory.run()
    job = await memory.jobs.get(first.command_id)

    other = first.model_copy(update={"accounts": ["Organization/other"]})
    await memory.publisher.publish(COMMANDS, other)
    with pytest.raises(DuplicateCommandId):
        await memory.consume("planner")
    assert await memory.jobs.get(first.command_id) == job
    assert memory.resources.accounts("Patient/p1") == ["Organization/o1"]


async def test_an_invalid_command_with_an_id_gets_a_failed_job_unless_the_id_is_taken() -> None:
    memory = InMemory()
    memory.resources.seed(*patient_with_members("p1", 1))
    valid = command("Patient/p1", "Organization/o1")
    await memory.send(valid)
    await memory.run()
    planner = memory.handler("planner")
    [record] = [i.record for i in memory.publisher.records[COMMANDS.name]]

    invalid = replace(record, value=json.dumps({"command_id": "c-invalid", "target": 7}).encode())
    assert await planner.on_invalid(invalid, EventError("target: not a reference"))
    job = await memory.jobs.get("c-invalid")
    assert job is not None and (job.rejected, job.http_status) == (True, 400)
    assert memory.publisher.events(RESULTS, CommandFailed)[-1].command_id == "c-invalid"

    before = await memory.jobs.get(valid.command_id)
    reused = replace(record, value=json.dumps({"command_id": valid.command_id, "accounts": 7}).encode())
    assert not await planner.on_invalid(reused, EventError("accounts: not a list")), "dead-lettered"
    assert await memory.jobs.get(valid.command_id) == before
