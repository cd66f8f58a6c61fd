"""`POST /fhir/R4/{type}/{id}/$set-accounts` (and `$add-accounts`, `$remove-accounts`: the same command with
another mode): validate, record the job, publish the command, then either
answer 202 at once (`Prefer: respond-async`) or wait for the result up to a bound."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request

from setaccounts.events import Mode, SetAccountsCommand
from setaccounts.fhir.outcomes import FhirError, invalid, not_found, operation_outcome
from setaccounts.jobs import Job, JobStore
from setaccounts.kafka import publish
from setaccounts.metrics import COMMANDS
from setaccounts.store.meta import Document
from setaccounts.telemetry import trace_id_of
from setaccounts_api.answers import RETRY_AFTER_SECONDS, accepted, job_answer, status_url
from setaccounts_api.deps import ProducerDep, SettingsDep, StoresDep
from setaccounts_api.dry_run import DryRuns, preview
from setaccounts_api.dry_run import failed as dry_run_failed
from setaccounts_api.dry_run import output as dry_run_output
from setaccounts_api.fhir_body import check_id, check_type, fhir_base, read_json
from setaccounts_api.parameters import OPERATION_MODES, SetAccountsInput, operation_definition, parse_input
from setaccounts_api.responses import FhirResponse, fhir
from setaccounts_api.security import PrincipalDep, require_admin

router = APIRouter(tags=["$set-accounts"])
POLL_SECONDS = (0.02, 0.05, 0.05, 0.1, 0.1, 0.1, 0.1, 0.2)  # a sync caller's job, read this often
DEFAULT_SAMPLE, MAX_SAMPLE = 20, 1000  # members listed by a synchronous dry run (`_count`)
PreferHeader = Annotated[str | None, Header()]


SUMMARIES = {
    "set-accounts": "Replace the target's accounts.",
    "add-accounts": "Append accounts to the target (and, with `propagate`, its members).",
    "remove-accounts": "Remove accounts from the target (and, with `propagate`, its members unless another "
    "of their patients holds them).",
}


def _register(operation: str) -> None:
    """The operation's two routes: its OperationDefinition and the call itself (admin-only; the job and
    the command record the token's subject, and client, as `requested_by`)."""

    async def definition() -> FhirResponse:
        return fhir(operation_definition(operation))

    async def call(
        resource_type: str,
        resource_id: str,
        request: Request,
        stores: StoresDep,
        producer: ProducerDep,
        settings: SettingsDep,
        principal: PrincipalDep,
        prefer: PreferHeader = None,
    ) -> FhirResponse:
        return await _run(
            operation, resource_type, resource_id, request, stores, producer, settings, principal, prefer
        )

    name = operation.replace("-", "_")
    router.add_api_route(
        f"/OperationDefinition/{operation}", definition, methods=["GET"], name=f"get_{name}_definition"
    )
    router.add_api_route(
        f"/{{resource_type}}/{{resource_id}}/${operation}",
        call,
        methods=["POST"],
        name=name,
        summary=SUMMARIES[operation],
    )


for _operation in OPERATION_MODES:
    _register(_operation)


async def _run(
    operation: str,
    resource_type: str,
    resource_id: str,
    request: Request,
    stores: StoresDep,
    producer: ProducerDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    prefer: str | None,
) -> FhirResponse:
    require_admin(principal, f"${operation}")
    target = f"{check_type(resource_type)}/{check_id(resource_id)}"
    params = parse_input(await read_json(request), operation)
    stored = await stores.resources().get(target)
    if stored is None:
        raise not_found(target)
    if stored.get("deleted"):
        raise FhirError(410, "deleted", f"{target} was deleted")
    if params.dry_run:
        return await _dry_run(
            request, stores, settings, principal, prefer, stored, OPERATION_MODES[operation], params
        )

    command = SetAccountsCommand(
        command_id=str(uuid.uuid4()),
        target=target,
        accounts=params.accounts,
        mode=OPERATION_MODES[operation],
        propagate=params.propagate,
        requested_by=principal.requested_by,
    )
    jobs = stores.jobs()
    job = await jobs.ensure(command, trace_id=trace_id_of())
    try:
        await publish(producer, settings.topics.commands, command)
    except Exception as exc:
        await jobs.publish_failed(command.command_id)
        raise FhirError(
            503, "transient", "could not publish the command; retry later", retriable=True
        ) from exc

    url = status_url(request, settings, command.command_id)
    if _respond_async(prefer):
        COMMANDS.labels("async").inc()
        return accepted(job, url)
    COMMANDS.labels("sync").inc()
    return job_answer(await _wait(jobs, command.command_id, settings.sync_wait_seconds) or job, url)


async def _wait(jobs: JobStore, command_id: str, seconds: float) -> Job | None:
    """Poll the job until it ends or the bound passes; the caller degrades to the async answer."""
    deadline = time.monotonic() + seconds
    job = await jobs.get(command_id)
    step = 0
    while job is not None and not job.finished and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS[min(step, len(POLL_SECONDS) - 1)])
        step += 1
        job = await jobs.get(command_id)
    return job


def _respond_async(prefer: str | None) -> bool:
    return bool(prefer) and "respond-async" in (prefer or "").replace(" ", "").lower().split(",")


async def _dry_run(
    request: Request,
    stores: StoresDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    prefer: str | None,
    stored: Document,
    mode: Mode,
    params: SetAccountsInput,
) -> FhirResponse:
    """Answer what a real run would, without writing or publishing: at once (with a sample of the members
    that would change, at most `_count`), or 202 and a status URL this process serves from memory when
    asked to respond async or when the compartment is larger than `dry_run_async_above`."""
    sample_size = _sample_size(request)
    store = stores.resources()
    run = functools.partial(preview, store, stored, mode, params.accounts, propagate=params.propagate)
    large = params.propagate and await store.count_members(stored["_id"]) > settings.dry_run_async_above
    if not (large or _respond_async(prefer)):
        return fhir(dry_run_output(await run(sample_size=sample_size), with_sample=True))
    run_id = _dry_runs(request).start(asyncio.create_task(run(sample_size=0)), principal.requested_by)
    url = f"{fhir_base(request, settings)}/dry-run/{run_id}/status"
    body = operation_outcome("informational", f"dry run {run_id} is running", severity="information")
    return fhir(body, 202, {"Content-Location": url, "Retry-After": str(RETRY_AFTER_SECONDS)})


@router.get("/dry-run/{run_id}/status")
async def dry_run_status(run_id: str, request: Request, principal: PrincipalDep) -> FhirResponse:
    """A dry run's answer: 202 while it runs, then its Parameters (served by the API process that runs it)."""
    require_admin(principal, "a dry run")
    task = _dry_runs(request).get(run_id, principal.requested_by, principal.admin)
    if not task.done():
        body = operation_outcome("informational", f"dry run {run_id} is running", severity="information")
        return fhir(body, 202, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    error = task.exception()
    if error is not None:
        return fhir(dry_run_failed(error), 500)
    return fhir(dry_run_output(task.result(), with_sample=False))


def _dry_runs(request: Request) -> DryRuns:
    runs: DryRuns | None = getattr(request.app.state, "dry_runs", None)
    if runs is None:
        runs = request.app.state.dry_runs = DryRuns()
    return runs


def _sample_size(request: Request) -> int:
    raw = request.query_params.get("_count", str(DEFAULT_SAMPLE))
    if not raw.isdigit() or int(raw) > MAX_SAMPLE:
        raise invalid(f"_count must be a whole number from 0 to {MAX_SAMPLE}", ["_count"])
    return int(raw)
