"""The applier over in-memory stores: a redelivered batch, a zombie batch of an older command, a member
deleted between plan and apply, and the updates of a cancelled command."""

from __future__ import annotations

import copy

from setaccounts.events import (
    RESULTS,
    UPDATES,
    BatchApplied,
    CommandFinished,
    Effect,
)
from setaccounts.status import JobStatus
from tests.helpers.fakes import InMemory, command
from tests.helpers.resources import patient_with_members


def outcomes(memory: InMemory) -> dict[str, list[Effect]]:
    """Every outcome the applier reported, by member, in the order reported."""
    found: dict[str, list[Effect]] = {}
    for batch in memory.publisher.events(RESULTS, BatchApplied):
        for member, outcome in batch.entries:
            found.setdefault(member, []).append(outcome)
    return found


async def test_a_redelivered_batch_changes_nothing_and_inflates_no_count() -> None:
    memory = InMemory()
    members = memory.resources.seed(*patient_with_members("p1", 6))[1:]
    first = command("Patient/p1", "Organization/o1")
    await memory.send(first)
    await memory.consume("planner")
    batch = memory.publisher.take(UPDATES)
    applier = memory.handler("applier")
    await applier(batch)
    after_first = copy.deepcopy(memory.resources.documents)
    kept = len(memory.propagation.history)

    await applier(batch)  # the commit was lost: the same batch again

    assert memory.resources.documents == after_first, "no member written again"
    assert len(memory.propagation.history) == kept, "no version made"
    assert outcomes(memory) == {m: [Effect.CHANGED, Effect.CHANGED] for m in members}, (
        "a repeat reports the outcome recorded the first time"
    )
    await memory.run()
    job = await memory.jobs.get(first.command_id)
    assert job is not None
    assert (job.status, job.resources_updated, job.resources_changed) == (JobStatus.COMPLETED, 7, 7)
    [finished] = memory.publisher.events(RESULTS, CommandFinished)
    assert (finished.resources_updated, finished.resources_changed) == (7, 7)


async def test_a_zombie_batch_of_an_older_command_changes_nothing() -> None:
    memory = InMemory()
    members = memory.resources.seed(*patient_with_members("p1", 4))[1:]
    older, newer = command("Patient/p1", "Organization/a"), command("Patient/p1", "Organization/b")
    await memory.send(older)
    await memory.send(newer)
    await memory.consume("planner")  # both planned, in order: the newer one removes what the older set
    updates = memory.publisher.take(UPDATES)
    of_older = [i for i in updates if i.event.command_id == older.command_id]
    of_newer = [i for i in updates if i.event.command_id == newer.command_id]
    applier = memory.handler("applier")
    await applier(of_newer)
    after_newer = copy.deepcopy(memory.resources.documents)

    await applier(of_older)  # a stale applier's batch, arriving late

    assert memory.resources.documents == after_newer
    assert {m: memory.resources.accounts(m) for m in members} == {m: ["Organization/b"] for m in members}
    assert {m: found[-1] for m, found in outcomes(memory).items()} == {m: Effect.UNCHANGED for m in members}


async def test_a_member_deleted_between_plan_and_apply_stays_deleted_and_is_not_counted() -> None:
    memory = InMemory()
    members = memory.resources.seed(*patient_with_members("p1", 5))[1:]
    first = command("Patient/p1", "Organization/o1")
    await memory.send(first)
    await memory.consume("planner")
    gone = members[2]
    memory.resources.delete(gone)
    tombstone = copy.deepcopy(memory.resources.documents[gone])

    await memory.run()

    assert memory.resources.documents[gone] == tombstone, "the deleted member is not resurrected"
    assert outcomes(memory)[gone] == [Effect.GONE]
    assert {m: memory.resources.accounts(m) for m in members if m != gone} == {
        m: ["Organization/o1"] for m in members if m != gone
    }
    job = await memory.jobs.get(first.command_id)
    assert job is not None
    assert (job.status, job.expected, job.processed) == (JobStatus.COMPLETED, 5, 4)
    assert (job.resources_updated, job.resources_changed) == (5, 5)


async def test_updates_of_a_cancelled_command_are_skipped() -> None:
    memory = InMemory()
    first = await memory.planned(3)
    await memory.jobs.cancel(first.command_id, "someone")
    before = copy.deepcopy(memory.resources.documents)

    await memory.consume("applier")

    assert memory.resources.documents == before
    assert set(o for found in outcomes(memory).values() for o in found) == {Effect.CANCELLED}
