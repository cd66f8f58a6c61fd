"""The JSON the jobs listing and a job's changed resources answer with, and their keyset cursors.

Plain JSON rather than FHIR: a job is not a FHIR resource here (its status URL answers the operation's
FHIR outcome). Cursors are opaque to callers (base64url of JSON) and checked when they come back.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, cast

from pydantic import BaseModel, Field

from setaccounts.events import Mode, accounts_after
from setaccounts.fhir.outcomes import FhirError, invalid
from setaccounts.fhir.references import parse_relative_reference
from setaccounts.jobs import Job
from setaccounts.status import TERMINAL, JobStatus
from setaccounts.store.meta import Document, accounts_of

RUNNING = "running"  # a status filter value: any status that is not final
RUNNING_STATUSES = frozenset(s.value for s in JobStatus if s not in TERMINAL)


class ProgressView(BaseModel):
    done: int = Field(description="Resources processed so far (the target once written, then members).")
    total: int | None = Field(description="Resources to process (target + members), once estimated.")


class JobView(BaseModel):
    """One job as the listing and the console show it."""

    id: str = Field(description="The command id.")
    status: JobStatus
    target: str | None
    mode: str = Field(description="set, add or remove.")
    propagate: bool
    accounts: list[str] = Field(description="The command's given accounts.")
    accounts_before: list[str] | None = Field(description="The target's accounts before (once planned).")
    accounts_after: list[str] | None = Field(description="The target's accounts after (once known).")
    requested_by: str | None
    requested_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    cancelled_at: datetime | None
    cancelled_by: str | None
    planned: bool = Field(description="The fan-out is complete: `expected` is final.")
    expected: int | None = Field(description="Members to update (an estimate until planned).")
    processed: int = Field(description="Members processed so far.")
    resources_updated: int
    resources_changed: int
    progress: ProgressView
    http_status: int | None = Field(description="The HTTP status a failed job answers with.")
    outcome: dict[str, Any] | None = Field(description="The OperationOutcome of a job that failed.")
    trace_id: str | None = Field(description="The trace of the request that started the job, if traced.")
    redrive_of: str | None
    status_url: str = Field(description="Poll it for the operation's answer; DELETE it to cancel.")


class JobPage(BaseModel):
    """A page of jobs, newest first."""

    jobs: list[JobView]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
    next: str | None = Field(description="The URL of the next page; null on the last.")


class ChangedResource(BaseModel):
    """A resource a job changed: the version it wrote."""

    reference: str = Field(examples=["Observation/p1-obs-000001"])
    version: int = Field(description="The version the job wrote (`_history/{version}` reads it).")
    current: bool = Field(description="Still the current version (else later writes superseded it).")
    last_updated: str | None = Field(description="That version's meta.lastUpdated.")
    accounts: list[str] = Field(description="That version's meta.accounts.")


class ChangesPage(BaseModel):
    """A page of the resources a job changed, in reference order."""

    job: str
    resources: list[ChangedResource]
    next_cursor: str | None
    next: str | None


def job_view(job: Job, status_url: str) -> JobView:
    planned = job.target_seq is not None  # the planner fixed the accounts before
    before = list(job.accounts_before) if planned else None
    if job.mode == "set":
        after: list[str] | None = list(dict.fromkeys(job.accounts))
    else:
        after = accounts_after(cast(Mode, job.mode), before, job.accounts) if before is not None else None
    progress = job.progress
    return JobView(
        id=job.id,
        status=job.status,
        target=job.target,
        mode=job.mode,
        propagate=job.propagate,
        accounts=list(job.accounts),
        accounts_before=before,
        accounts_after=after,
        requested_by=job.requested_by,
        requested_at=job.requested_at,
        created_at=job.created_at,
        updated_at=job.updated_at,
        cancelled_at=job.cancelled_at,
        cancelled_by=job.cancelled_by,
        planned=job.planned,
        expected=job.expected,
        processed=job.processed,
        resources_updated=job.resources_updated,
        resources_changed=job.resources_changed,
        progress=ProgressView(done=progress.done, total=progress.total),
        http_status=job.http_status,
        outcome=job.outcome,
        trace_id=job.trace_id,
        redrive_of=job.redrive_of,
        status_url=status_url,
    )


def changed_resource(document: Document, current: bool) -> ChangedResource:
    resource = document.get("resource") or {}
    return ChangedResource(
        reference=document["_id"],
        version=int(document["version"]),
        current=current,
        last_updated=(resource.get("meta") or {}).get("lastUpdated"),
        accounts=accounts_of(resource),
    )


def parse_statuses(raw: str | None) -> set[str]:
    """`status=` values (comma-separated, OR): job statuses, or `running` for any that is not final."""
    statuses: set[str] = set()
    for value in (raw or "").split(","):
        value = value.strip()
        if not value:
            continue
        if value == RUNNING:
            statuses |= RUNNING_STATUSES
        elif value in JobStatus._value2member_map_:
            statuses.add(value)
        else:
            known = ", ".join([RUNNING, *(s.value for s in JobStatus)])
            raise invalid(f"status must be one of {known}, got {value!r}", ["status"])
    return statuses


def parse_reference_filter(name: str, raw: str | None) -> str | None:
    if raw is None or not raw.strip():
        return None
    parsed = parse_relative_reference(raw.strip())
    if parsed is None:
        raise invalid(f"{name} must be a reference like Patient/123, got {raw!r}", [name])
    return f"{parsed[0]}/{parsed[1]}"


def _encode(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(raw: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _bad_cursor(raw: str) -> FhirError:
    return invalid(f"cursor {raw!r} is not a cursor from this listing's next link", ["cursor"])


def job_cursor(job: Job) -> str:
    """Where the page after `job` starts: its creation time and id (newest first)."""
    created = job.created_at.isoformat() if job.created_at is not None else ""
    return _encode([created, job.id])


def parse_job_cursor(raw: str | None) -> tuple[datetime, str] | None:
    if raw is None:
        return None
    value = _decode(raw)
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise _bad_cursor(raw)
    try:
        return datetime.fromisoformat(value[0]), value[1]
    except ValueError as exc:
        raise _bad_cursor(raw) from exc


def changes_cursor(reference: str) -> str:
    return _encode(reference)


def parse_changes_cursor(raw: str | None) -> str | None:
    if raw is None:
        return None
    value = _decode(raw)
    if not isinstance(value, str) or parse_relative_reference(value) is None:
        raise _bad_cursor(raw)
    return value
