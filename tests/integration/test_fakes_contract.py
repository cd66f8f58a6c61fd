"""The in-memory fakes the role handlers' unit tests use (`tests/helpers/fakes.py`) answer as the real
stores do: the same steps, run on both, give the same answers and leave the same state."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import SetAccountsCommand
from setaccounts.jobs import Aggregate, JobStore, PartitionTally, StaleJob
from setaccounts.status import JobStatus
from setaccounts.store.meta import tombstone
from setaccounts.store.propagation import Application, Propagation
from setaccounts.store.resources import ResourceStore, now
from setaccounts_propagator.ports import Jobs, Propagates, Resources
from tests.helpers.fakes import FakeJobStore, FakePropagation, FakeResourceStore
from tests.helpers.resources import patient_with_members, shared_member, store_resources

pytestmark = pytest.mark.integration


def normalized(value: Any) -> Any:
    """`value` without what differs by when it ran: times (and the store's precision of them)."""
    if isinstance(value, datetime):
        return "<time>"
    if isinstance(value, dict):
        return {k: "<time>" if k == "lastUpdated" else normalized(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        items = [normalized(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set) else items
    if hasattr(value, "model_dump"):
        return normalized(value.model_dump())
    return value


async def answer(step: Awaitable[Any]) -> Any:
    try:
        return normalized(await step)
    except StaleJob as exc:
        return f"raised {type(exc).__name__}"


def cmd(name: str, target: str = "Patient/p1") -> SetAccountsCommand:
    return SetAccountsCommand(
        command_id=f"{name}-{uuid.uuid4()}", target=target, accounts=["Organization/a"], propagate=True
    )


async def job_steps(jobs: Jobs, cancel: Callable[[str], Awaitable[Any]]) -> list[Any]:
    a, b = cmd("a"), cmd("b")
    partial = Aggregate({"0": PartitionTally(watermark="Observation/1", processed=1)}, 1, 2, 1)
    done = Aggregate({}, 3, 4, 4, JobStatus.COMPLETED)
    answers = [
        await answer(jobs.ensure(a)),
        await answer(jobs.ensure(a)),
        await answer(jobs.next_seq(a.target)),
        await answer(jobs.next_seq(a.target)),
        await answer(jobs.start_plan(a.command_id, 1, ["Organization/x"], 3)),
        await answer(jobs.start_plan(a.command_id, 2, [], 9)),
        await answer(jobs.mark_target_written(a.command_id, True)),
        await answer(jobs.checkpoint(a.command_id, "Observation/1", 2)),
        await answer(jobs.finish_plan(a.command_id, 3, [0, 1])),
        await answer(jobs.record_failure(a.command_id, 500)),
    ]
    read = await jobs.get(a.command_id)
    assert read is not None
    answers += [
        await answer(jobs.save_aggregate(read, partial)),
        await answer(jobs.save_aggregate(read, partial)),
        await answer(jobs.get(a.command_id)),
    ]
    read = await jobs.get(a.command_id)
    assert read is not None
    answers += [
        await answer(jobs.save_aggregate(read, done)),
        await answer(jobs.checkpoint(a.command_id, "Observation/2", 3)),
        await answer(jobs.mark_target_written(a.command_id, False)),
        await answer(jobs.ensure(b)),
        await answer(cancel(b.command_id)),
        await answer(jobs.start_plan(b.command_id, 1, [], 0)),
        await answer(jobs.checkpoint(b.command_id, "Observation/1", 1)),
        await answer(jobs.cancelled_among(sorted([a.command_id, b.command_id, "missing"]))),
        await answer(jobs.reject(b.command_id, None)),
        await answer(jobs.reject("c-rejected", "Patient/p9")),
        await answer(jobs.reject("c-rejected", "Patient/p9")),
        await answer(jobs.get("c-rejected")),
        await answer(jobs.get(a.command_id)),
        await answer(jobs.get(b.command_id)),
        await answer(jobs.get("missing")),
    ]
    ids = {a.command_id: "a", b.command_id: "b"}
    return [_renamed(x, ids) for x in answers]


def _renamed(value: Any, ids: dict[str, str]) -> Any:
    """Command ids replaced by their names, so the runs on both stores compare."""
    text = repr(value)
    for cid, name in ids.items():
        text = text.replace(cid, name)
    return text


async def test_the_fake_job_store_answers_as_the_job_store(db: AsyncDatabase[dict[str, Any]]) -> None:
    real, fake = JobStore(db), FakeJobStore()
    expected = await job_steps(real, lambda cid: real.cancel(cid, "someone"))
    assert await job_steps(fake, lambda cid: fake.cancel(cid, "someone")) == expected


RESOURCES = [
    *patient_with_members("p1", 4),
    {"resourceType": "Patient", "id": "p2", "meta": {"accounts": [{"reference": "Organization/a"}]}},
    shared_member(),
]


def batches(members: list[str]) -> list[list[Application]]:
    """Commands of Patient/p1 as the planner and applier apply them: repeats, a zombie, folds, removals."""
    first = [Application("Patient/p1", "Patient/p1", 1, "c1", ["Organization/a"], exact=True)] + [
        Application(m, "Patient/p1", 1, "c1", ["Organization/a"]) for m in members
    ]
    second = [Application(m, "Patient/p1", 2, "c2", ["Organization/b"], ["Organization/a"]) for m in members]
    folded = [
        Application(members[0], "Patient/p1", 3, "c3", ["Organization/c"]),
        Application(members[0], "Patient/p1", 4, "c4", [], ["Organization/c"]),
        Application("Observation/missing", "Patient/p1", 3, "c3", ["Organization/c"]),
    ]
    return [first, first, second, first, folded, folded, [*second, *first]]


async def resource_steps(
    resources: Resources, propagation: Propagates, delete: Callable[[str], Awaitable[None]]
) -> list[Any]:
    members = [ref async for ref in resources.stream_members("Patient/p1", None, 2)]
    answers: list[Any] = [
        members,
        [ref async for ref in resources.stream_members("Patient/p1", members[1], 2)],
        await resources.count_members("Patient/p1"),
        await resources.count_members("Patient/p2"),
    ]
    applied = batches([m for m in members if m != "Patient/p1"])
    for batch in applied[:5]:
        answers.append(await propagation.apply(batch))
    await delete(members[1])
    for batch in applied[5:]:
        answers.append(await propagation.apply(batch))
    answers += [await resources.count_members("Patient/p1"), await resources.get(members[1])]
    return [normalized(a) for a in answers]


async def test_the_fake_propagation_applies_as_the_propagation(db: AsyncDatabase[dict[str, Any]]) -> None:
    await store_resources(db, *RESOURCES)
    store = ResourceStore(db)

    async def delete_real(ref: str) -> None:
        found = await store.get(ref)
        assert found is not None
        await db.resources.replace_one({"_id": ref}, tombstone(found, now()))

    expected = await resource_steps(store, Propagation(store), delete_real)
    stored = {d["_id"]: d async for d in db.resources.find({})}
    kept = sorted([d["_id"] async for d in db.history.find({}, {"_id": 1})])

    fakes = FakeResourceStore()
    fakes.seed(*RESOURCES)
    propagation = FakePropagation(fakes)

    async def delete_fake(ref: str) -> None:
        fakes.delete(ref)

    assert await resource_steps(fakes, propagation, delete_fake) == expected
    assert normalized(fakes.documents) == normalized(stored)
    assert sorted(f"{d['_id']}/{d['version']}" for d in propagation.history) == kept
