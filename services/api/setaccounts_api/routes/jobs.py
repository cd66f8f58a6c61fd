"""The status URL of a job: poll it (202 while running), read the result, or DELETE it to cancel."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from setaccounts.auth.principal import Principal
from setaccounts.events import CancelRequested
from setaccounts.fhir.outcomes import FhirError, not_found, operation_outcome
from setaccounts.jobs import Job, JobStore
from setaccounts.kafka import publish
from setaccounts.status import JobStatus
from setaccounts_api.answers import job_answer, status_url
from setaccounts_api.deps import DbDep, ProducerDep, SettingsDep
from setaccounts_api.responses import FhirResponse, fhir
from setaccounts_api.security import PrincipalDep

router = APIRouter(tags=["jobs"])


def owned(job: Job | None, command_id: str, principal: Principal) -> Job:
    """The job, if the caller requested it or is an admin; anyone else is told it does not exist."""
    if job is None or not (principal.admin or job.requested_by == principal.requested_by):
        raise not_found(f"job {command_id}")
    return job


@router.get("/job/{command_id}/status")
async def job_status(
    command_id: str, request: Request, db: DbDep, settings: SettingsDep, principal: PrincipalDep
) -> FhirResponse:
    job = owned(await JobStore(db).get(command_id), command_id, principal)
    return job_answer(job, status_url(request, settings, command_id))


@router.delete("/job/{command_id}/status")
async def cancel_job(
    command_id: str, db: DbDep, producer: ProducerDep, settings: SettingsDep, principal: PrincipalDep
) -> FhirResponse:
    """Cancel at any time: the planner and applier stop within one batch; finished jobs stay as they are."""
    jobs = JobStore(db)
    owned(await jobs.get(command_id), command_id, principal)
    by = principal.requested_by
    job = await jobs.cancel(command_id, by)
    if job is None:
        raise not_found(f"job {command_id}")
    if job.status != JobStatus.CANCELLED:
        raise FhirError(409, "conflict", f"job {command_id} already ended with status {job.status}")
    await publish(
        producer,
        settings.topics.results,
        CancelRequested(command_id=command_id, requested_at=datetime.now(UTC), requested_by=by),
    )
    body = operation_outcome("informational", f"job {command_id} cancelled", severity="information")
    return fhir(body, 202)
