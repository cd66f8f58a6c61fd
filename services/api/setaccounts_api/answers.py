"""How a job is answered over HTTP, the same for the operation's own reply and the status URL."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from setaccounts.fhir.outcomes import operation_outcome
from setaccounts.jobs import Status, progress_of, result_of
from setaccounts.settings import Settings
from setaccounts_api.fhir_body import fhir_base
from setaccounts_api.parameters import output
from setaccounts_api.responses import FhirResponse, fhir

RETRY_AFTER_SECONDS = 1


def status_url(request: Request, settings: Settings, command_id: str) -> str:
    """The absolute URL where a job's status is polled (and DELETEd to cancel)."""
    return f"{fhir_base(request, settings)}/job/{command_id}/status"


def progress_header(job: dict[str, Any]) -> str:
    progress = progress_of(job)
    return f"{progress.done} of {progress.total}" if progress.total is not None else f"{progress.done}"


def accepted(job: dict[str, Any], status_url: str) -> FhirResponse:
    """202: still running; where to poll and how far it got."""
    body = operation_outcome("informational", f"job {job['_id']} is {job['status']}", severity="information")
    return fhir(
        body,
        202,
        {
            "Content-Location": status_url,
            "X-Progress": progress_header(job),
            "Retry-After": str(RETRY_AFTER_SECONDS),
        },
    )


def job_answer(job: dict[str, Any], status_url: str) -> FhirResponse:
    """The final answer once the job ended, else the 202 'still running' answer."""
    status = job["status"]
    if status == Status.COMPLETED:
        updated, changed = result_of(job)
        return fhir(output(updated, changed), 200)
    if status == Status.ERROR:
        body = job.get("outcome") or operation_outcome("exception", f"job {job['_id']} failed")
        return fhir(body, int(job.get("http_status", 500)))
    if status == Status.CANCELLED:
        updated, _ = result_of(job)
        body = operation_outcome(
            "processing",
            f"job {job['_id']} was cancelled; {updated} resources were updated before it stopped",
        )
        return fhir(body, 410, {"X-Progress": f"cancelled at {progress_header(job)}"})
    return accepted(job, status_url)
