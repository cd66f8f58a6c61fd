"""The exported contracts match the models (snapshot), and every event is frozen, strict and round-trips."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from setaccounts.events import (
    BatchApplied,
    CancelRequested,
    CommandFailed,
    CommandFinished,
    CommandPlanned,
    Effect,
    EndOfCommand,
    MemberUpdate,
    PartitionDone,
    SetAccountsCommand,
    channel,
    encode,
    headers_for,
)
from setaccounts.events.base import Event
from setaccounts.events.channels import CHANNELS, EVENT_TYPES
from setaccounts.events.export import ASYNCAPI_FILE, export

COMMITTED = Path(__file__).resolve().parents[3] / "docs" / "events"
WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
CID = "3f2b9c1e-6d0a-4f55-9a57-1b2f0c8d7e64"

SAMPLES: dict[type[BaseModel], tuple[str, BaseModel]] = {
    SetAccountsCommand: (
        "commands",
        SetAccountsCommand(
            command_id=CID,
            target="Patient/p1",
            accounts=["Organization/o1"],
            propagate=True,
            requested_at=WHEN,
            requested_by="billing",
            redrive_of="older-1",
        ),
    ),
    MemberUpdate: (
        "updates",
        MemberUpdate(
            command_id=CID,
            target="Patient/p1",
            target_seq=3,
            member="Observation/x",
            add=["Organization/o1"],
            remove=["Organization/o0"],
        ),
    ),
    EndOfCommand: ("updates", EndOfCommand(command_id=CID, partition=2)),
    CommandPlanned: (
        "results",
        CommandPlanned(
            command_id=CID,
            target="Patient/p1",
            target_seq=3,
            accounts_before=["Organization/o0"],
            accounts_after=["Organization/o1"],
            propagate=True,
            target_changed=True,
            expected=12,
            partitions=[0, 1, 2],
            requested_at=WHEN,
            requested_by="billing",
        ),
    ),
    BatchApplied: (
        "results",
        BatchApplied(
            command_id=CID,
            partition=1,
            entries=[("Observation/x", Effect.CHANGED), ("Observation/y", Effect.GONE)],
        ),
    ),
    PartitionDone: ("results", PartitionDone(command_id=CID, partition=0)),
    CommandFailed: (
        "results",
        CommandFailed(
            command_id=CID,
            target="Patient/ghost",
            outcome={
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "not-found"}],
            },
        ),
    ),
    CancelRequested: ("results", CancelRequested(command_id=CID, requested_at=WHEN, requested_by="ops")),
    CommandFinished: (
        "results",
        CommandFinished(command_id=CID, status="completed", resources_updated=13, resources_changed=7),
    ),
}


def all_events() -> set[type[Event]]:
    found: set[type[Event]] = set()
    pending = list(Event.__subclasses__())
    while pending:
        event = pending.pop()
        if "type" in event.model_fields:  # a concrete event; bases such as CommandScoped have no type
            found.add(event)
        pending.extend(event.__subclasses__())
    return found


def test_exported_contracts_match_the_committed_files(tmp_path: Path) -> None:
    export(tmp_path)
    fresh = {p.name: p.read_bytes() for p in sorted(tmp_path.iterdir())}
    committed = {p.name: p.read_bytes() for p in sorted(COMMITTED.iterdir())} if COMMITTED.is_dir() else {}
    hint = "the event contracts changed: run `make contracts` and commit docs/events/"
    assert sorted(fresh) == sorted(committed), hint
    for name, content in fresh.items():
        assert content == committed[name], f"{name} differs; {hint}"


def test_export_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    export(first)
    export(second)
    assert [(p.name, p.read_bytes()) for p in sorted(first.iterdir())] == [
        (p.name, p.read_bytes()) for p in sorted(second.iterdir())
    ]


def test_every_event_model_is_exported_and_sampled() -> None:
    assert set(EVENT_TYPES) == all_events()
    assert set(SAMPLES) == all_events()
    assert (COMMITTED / ASYNCAPI_FILE).is_file()
    assert {c.address for c in CHANNELS} == {
        "set-accounts.commands",
        "set-accounts.updates",
        "set-accounts.results",
        "set-accounts.deadletter",
    }


@pytest.mark.parametrize("event", sorted(all_events(), key=lambda e: e.__name__), ids=lambda e: e.__name__)
def test_event_models_are_frozen_strict_and_versioned(event: type[Event]) -> None:
    assert event.model_config.get("frozen") is True
    assert event.model_config.get("extra") == "forbid"
    assert "schema_version" in event.model_fields
    assert "schema_version" in event.model_json_schema()["properties"]
    _kind, sample = SAMPLES[event]
    with pytest.raises(ValidationError):
        setattr(sample, "schema_version", 2)  # noqa: B010 - the point is that assignment fails
    with pytest.raises(ValidationError):
        event.model_validate({**sample.model_dump(mode="json"), "unexpected": 1})


@pytest.mark.parametrize("event", sorted(SAMPLES, key=lambda e: e.__name__), ids=lambda e: e.__name__)
def test_events_round_trip_through_the_codec(event: type[BaseModel]) -> None:
    kind, sample = SAMPLES[event]
    decoded = channel(kind).decode(encode(sample))
    assert type(decoded) is event
    assert decoded == sample
    headers = dict(headers_for(sample))
    assert headers["event-type"] == str(sample.type).encode()  # type: ignore[attr-defined]
    assert headers["schema-version"] == b"1"
    assert headers["content-type"] == b"application/json"
