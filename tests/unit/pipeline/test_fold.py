"""The aggregator's fold: duplicates, replays and zombies never inflate a count."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from setaccounts.events import BatchApplied, CommandFailed, CommandPlanned, Effect, PartitionDone
from setaccounts.jobs import Job
from setaccounts_propagator.aggregator import aggregate

MEMBERS = [f"Observation/m{i:03d}" for i in range(40)]


def planned(expected: int, partitions: list[int]) -> CommandPlanned:
    return CommandPlanned(
        command_id="c1",
        target="Patient/p",
        target_seq=1,
        accounts_before=[],
        accounts_after=["Organization/a"],
        propagate=True,
        target_changed=True,
        expected=expected,
        partitions=partitions,
        requested_at=datetime.now(UTC),
    )


def batches(assignment: dict[str, int], outcome: dict[str, Effect], size: int) -> list[BatchApplied]:
    """Per partition, members in sorted order, cut into batches: what one clean run of the applier reports."""
    events = []
    for partition in sorted(set(assignment.values())):
        members = sorted(m for m, p in assignment.items() if p == partition)
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            events.append(
                BatchApplied(command_id="c1", partition=partition, entries=[(m, outcome[m]) for m in chunk])
            )
    return events


def run(job: dict[str, Any], events: list[Any]) -> dict[str, Any]:
    """What the job holds after the planner recorded its plan and the aggregator folded `events`."""
    for event in events:
        if isinstance(event, CommandPlanned):  # the planner writes its plan before it sends the event
            job = {**job, "planned": True, "partitions": event.partitions, "target_written": True}
            job["target_changed"] = event.target_changed
    result = aggregate(Job.model_validate(job), events)
    written = {k: v for k, v in vars(result).items() if k != "status" or v is not None}
    written["tallies"] = {p: t.model_dump() for p, t in result.tallies.items()}
    return {**job, **written}


def test_clean_run_counts_target_and_members_and_completes() -> None:
    assignment = {m: i % 3 for i, m in enumerate(MEMBERS)}
    outcome = {m: Effect.CHANGED if i % 4 else Effect.UNCHANGED for i, m in enumerate(MEMBERS)}
    events = [
        planned(40, [0, 1, 2]),
        *batches(assignment, outcome, 7),
        *(PartitionDone(command_id="c1", partition=p) for p in (0, 1, 2)),
    ]
    job = run({"_id": "c1", "status": "applying"}, events)
    assert job["status"] == "completed"
    assert job["resources_updated"] == 41
    assert job["resources_changed"] == 1 + sum(o == Effect.CHANGED for o in outcome.values())


def test_not_complete_until_every_partition_is_done() -> None:
    job = run(
        {"_id": "c1", "status": "applying"}, [planned(0, [0, 1]), PartitionDone(command_id="c1", partition=0)]
    )
    assert job["status"] == "applying"
    job = run(job, [PartitionDone(command_id="c1", partition=1)])
    assert job["status"] == "completed" and job["resources_updated"] == 1


def test_gone_and_cancelled_members_are_not_counted() -> None:
    events = [
        BatchApplied(
            command_id="c1",
            partition=0,
            entries=[
                ("Observation/a", Effect.GONE),
                ("Observation/b", Effect.CANCELLED),
                ("Observation/c", Effect.CHANGED),
            ],
        )
    ]
    job = run({"_id": "c1", "status": "applying", "target_written": True}, events)
    assert (job["processed"], job["resources_updated"], job["resources_changed"]) == (1, 2, 1)


def test_a_failure_ends_the_job_with_its_outcome() -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}
    job = run({"_id": "c1", "status": "accepted"}, [CommandFailed(command_id="c1", outcome=outcome)])
    assert job["status"] == "error" and job["outcome"] == outcome


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    partitions=st.integers(min_value=1, max_value=4),
    size=st.integers(min_value=1, max_value=9),
)
def test_redelivery_replans_and_zombies_never_change_the_counts(
    data: st.DataObject, partitions: int, size: int
) -> None:
    assignment = {m: data.draw(st.integers(0, partitions - 1)) for m in MEMBERS}
    outcome = {
        m: data.draw(st.sampled_from([Effect.CHANGED, Effect.UNCHANGED, Effect.GONE])) for m in MEMBERS
    }
    clean = batches(assignment, outcome, size)
    expected = run({"_id": "c1", "status": "applying"}, clean)
    # Any partition's stream may be repeated from any earlier point (redelivery after a lost commit, a
    # re-planned fan-out from a checkpoint, a zombie's late copies), as long as each copy is in order.
    # Copies are taken from the clean stream, so the noisy one grows linearly, not exponentially.
    noisy: list[Any] = []
    for index, event in enumerate(clean):
        noisy.append(event)
        if data.draw(st.booleans()):
            earlier = [e for e in clean[: index + 1] if e.partition == event.partition]
            noisy.extend(earlier[data.draw(st.integers(0, len(earlier) - 1)) :])
    # The fold is applied in several steps, as the consumer sees several polls.
    job: dict[str, Any] = {"_id": "c1", "status": "applying"}
    cut = data.draw(st.integers(0, len(noisy)))
    job = run(run(job, noisy[:cut]), noisy[cut:])
    assert (job["processed"], job["resources_changed"]) == (
        expected["processed"],
        expected["resources_changed"],
    )
