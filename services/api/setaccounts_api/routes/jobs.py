"""The status URL of a job: poll it (202 while running), read the result, or DELETE it to cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Request

from setaccounts.events import CancelRequested
from setaccounts.fhir.outcomes import FhirError, not_found, operation_outcome
from setaccounts.jobs import JobStore, Status
from setaccounts.kafka import publish
from setaccounts_api.answers import job_answer, status_url
from setaccounts_api.deps import DbDep, ProducerDep, SettingsDep
from setaccounts_api.responses import FhirResponse, fhir

router = APIRouter(tags=["jobs"])


@router.get("/job/{command_id}/status")
async def job_status(command_id: str, request: Request, db: DbDep, settings: SettingsDep) -> FhirResponse:
    job = await JobStore(db).get(command_id)
    if job is None:
        raise not_found(f"job {command_id}")
    return job_answer(job, status_url(request, settings, command_id))


@router.delete("/job/{command_id}/status")
async def cancel_job(
    command_id: str,
    db: DbDep,
    producer: ProducerDep,
    settings: SettingsDep,
    x_requested_by: Annotated[str | None, Header()] = None,
) -> FhirResponse:
    """Cancel at any time: the planner and applier stop within one batch; finished jobs stay as they are."""
    jobs = JobStore(db)
    job = await jobs.cancel(command_id, x_requested_by)
    if job is None:
        raise not_found(f"job {command_id}")
    if job["status"] != Status.CANCELLED:
        raise FhirError(409, "conflict", f"job {command_id} already ended with status {job['status']}")
    await publish(
        producer,
        settings.topics.results,
        command_id,
        CancelRequested(command_id=command_id, requested_at=datetime.now(UTC), requested_by=x_requested_by),
    )
    body = operation_outcome("informational", f"job {command_id} cancelled", severity="information")
    return fhir(body, 202)
