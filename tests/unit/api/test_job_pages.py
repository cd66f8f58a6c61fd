"""How a job is shown by the listing and the console, and the listing's parameters and cursors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from setaccounts.fhir.outcomes import FhirError
from setaccounts.jobs import Job
from setaccounts_api.rest.job_pages import (
    RUNNING_STATUSES,
    changes_cursor,
    job_cursor,
    job_view,
    parse_changes_cursor,
    parse_job_cursor,
    parse_reference_filter,
    parse_statuses,
)

AT = datetime(2026, 12, 7, 23, 0, 0, 123000, tzinfo=UTC)


def job(**fields: object) -> Job:
    return Job.model_validate({"_id": "c1", "target": "Patient/p1", "created_at": AT, **fields})


def test_accounts_after_are_known_for_set_at_once_and_for_add_or_remove_once_planned() -> None:
    assert job_view(job(accounts=["Organization/a"]), "u").accounts_after == ["Organization/a"]
    assert job_view(job(accounts=["Organization/a"]), "u").accounts_before is None
    adding = job(mode="add", accounts=["Organization/b"])
    assert job_view(adding, "u").accounts_after is None  # not planned: the target's accounts are unknown
    planned = job(mode="add", accounts=["Organization/b"], target_seq=1, accounts_before=["Organization/a"])
    assert job_view(planned, "u").accounts_after == ["Organization/a", "Organization/b"]
    removing = job(
        mode="remove", accounts=["Organization/a"], target_seq=2, accounts_before=["Organization/a"]
    )
    assert job_view(removing, "u").accounts_after == []


def test_progress_counts_the_target_and_the_members_out_of_the_planned_total() -> None:
    view = job_view(job(status="applying", target_written=True, processed=41, expected=3000), "u")
    assert (view.progress.done, view.progress.total) == (42, 3001)
    assert job_view(job(), "u").progress.total is None


def test_the_trace_id_is_shown_when_the_job_has_one() -> None:
    assert job_view(job(), "u").trace_id is None
    assert job_view(job(trace_id="4bf92f3577b34da6a3ce929d0e0e4736"), "u").trace_id == (
        "4bf92f3577b34da6a3ce929d0e0e4736"
    )


def test_status_filters_take_job_statuses_and_running() -> None:
    assert parse_statuses(None) == set()
    assert parse_statuses("completed,error") == {"completed", "error"}
    assert parse_statuses("running") == set(RUNNING_STATUSES) == {"accepted", "planning", "applying"}
    with pytest.raises(FhirError, match="status must be one of"):
        parse_statuses("finished")


def test_target_filters_are_references() -> None:
    assert parse_reference_filter("target", " Patient/p1 ") == "Patient/p1"
    assert parse_reference_filter("target", "") is None
    with pytest.raises(FhirError, match="target must be a reference"):
        parse_reference_filter("target", "p1")


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    assert parse_job_cursor(job_cursor(job())) == (AT, "c1")
    assert parse_changes_cursor(changes_cursor("Observation/o-1")) == "Observation/o-1"
    assert parse_job_cursor(None) is None and parse_changes_cursor(None) is None
    for bad in ("%%%", "bm90IGpzb24", changes_cursor("Observation/o-1")):
        with pytest.raises(FhirError, match="not a cursor"):
            parse_job_cursor(bad)
    with pytest.raises(FhirError, match="not a cursor"):
        parse_changes_cursor(job_cursor(job()))
