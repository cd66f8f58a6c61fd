"""How a job is answered over HTTP, the same for the operation's own reply and the status URL."""

from __future__ import annotations

from fastapi import Request

from setaccounts.fhir.outcomes import operation_outcome
from setaccounts.jobs import Job
from setaccounts.settings import Settings
from setaccounts.status import JobStatus
from setaccounts_api.fhir_body import fhir_base
from setaccounts_api.parameters import output
from setaccounts_api.responses import FhirResponse, fhir

RETRY_AFTER_SECONDS = 1


def status_url(request: Request, settings: Settings, command_id: str) -> str:
    """The absolute URL where a job's status is polled (and DELETEd to cancel)."""
    return f"{fhir_base(request, settings)}/job/{command_id}/status"


def progress_header(job: Job) -> str:
    progress = job.progress
    return f"{progress.done} of {progress.total}" if progress.total is not None else f"{progress.done}"


def trace_header(job: Job) -> dict[str, str]:
    """`X-Trace-Id`: the OpenTelemetry trace the job runs in, when it was traced."""
    return {} if job.trace_id is None else {"X-Trace-Id": job.trace_id}


def accepted(job: Job, status_url: str) -> FhirResponse:
    """202: still running; where to poll and how far it got."""
    body = operation_outcome("informational", f"job {job.id} is {job.status}", severity="information")
    return fhir(
        body,
        202,
        {
            "Content-Location": status_url,
            "X-Progress": progress_header(job),
            "Retry-After": str(RETRY_AFTER_SECONDS),
            **trace_header(job),
        },
    )


def job_answer(job: Job, status_url: str) -> FhirResponse:
    """The final answer once the job ended, else the 202 'still running' answer."""
    if job.status == JobStatus.COMPLETED:
        return fhir(output(job.resources_updated, job.resources_changed), 200, trace_header(job))
    if job.status == JobStatus.ERROR:
        body = job.outcome or operation_outcome("exception", f"job {job.id} failed")
        return fhir(body, job.http_status or 500, trace_header(job))
    if job.status == JobStatus.CANCELLED:
        body = operation_outcome(
            "processing",
            f"job {job.id} was cancelled; {job.resources_updated} resources were updated before it stopped",
        )
        return fhir(body, 410, {"X-Progress": f"cancelled at {progress_header(job)}", **trace_header(job)})
    return accepted(job, status_url)
