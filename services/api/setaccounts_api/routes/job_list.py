"""`GET /job`: the jobs a caller may see, newest first, paged; `GET /job/{id}`: one of them;
`GET /job/{id}/changes`: the resources a job changed. Plain JSON (shapes in `rest/job_pages.py`), with
the access rule of the status URL: admins see every job, anyone else only the jobs they requested
(`jobs.owned`)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request

from setaccounts.auth.scopes import Interaction
from setaccounts_api.answers import status_url
from setaccounts_api.deps import SettingsDep, StoresDep
from setaccounts_api.fhir_body import fhir_base
from setaccounts_api.rest.job_pages import (
    ChangesPage,
    JobPage,
    JobView,
    changed_resource,
    changes_cursor,
    job_cursor,
    job_view,
    parse_changes_cursor,
    parse_job_cursor,
    parse_reference_filter,
    parse_statuses,
)
from setaccounts_api.routes.jobs import owned
from setaccounts_api.security import AccessDep, PrincipalDep

router = APIRouter(tags=["jobs"])
DEFAULT_JOBS, MAX_JOBS = 20, 100
DEFAULT_CHANGES, MAX_CHANGES = 50, 1000

Count = Annotated[int | None, Query(alias="_count", ge=0, description="Entries per page.")]
Cursor = Annotated[str | None, Query(description="From the previous page's `next_cursor`.")]


def _next(request: Request, base: str, path: str, cursor: str) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    return f"{base}{path}?{urlencode([*params, ('cursor', cursor)])}"


@router.get("/job", response_model=JobPage)
async def list_jobs(
    request: Request,
    stores: StoresDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    status: Annotated[str | None, Query(description="Statuses (comma-separated), or `running`.")] = None,
    target: Annotated[str | None, Query(description="The target reference, e.g. Patient/p1.")] = None,
    requester: Annotated[str | None, Query(description="`requested_by` as the job records it.")] = None,
    count: Count = None,
    cursor: Cursor = None,
) -> JobPage:
    """Jobs newest first; a caller who is not an admin is shown only their own (another requester's filter
    answers an empty page, as their jobs answer 404)."""
    limit = min(DEFAULT_JOBS if count is None else count, MAX_JOBS)
    statuses, wanted = parse_statuses(status), parse_reference_filter("target", target)
    before = parse_job_cursor(cursor)
    requester = requester.strip() if requester and requester.strip() else None
    if not principal.admin:
        if requester not in (None, principal.requested_by):
            return JobPage(jobs=[], next_cursor=None, next=None)
        requester = principal.requested_by
    found = await stores.jobs().listing(
        limit + 1, statuses=statuses, target=wanted, requester=requester, before=before
    )
    page, more = found[:limit], len(found) > limit
    views = [job_view(job, status_url(request, settings, job.id)) for job in page]
    following = job_cursor(page[-1]) if more and page else None
    base = fhir_base(request, settings)
    link = _next(request, base, "/job", following) if following else None
    return JobPage(jobs=views, next_cursor=following, next=link)


@router.get("/job/{command_id}", response_model=JobView)
async def get_job(
    command_id: str, request: Request, stores: StoresDep, settings: SettingsDep, principal: PrincipalDep
) -> JobView:
    """One job as the listing shows it (404 unless the caller requested it or is an admin)."""
    job = owned(await stores.jobs().get(command_id), command_id, principal)
    return job_view(job, status_url(request, settings, job.id))


@router.get("/job/{command_id}/changes", response_model=ChangesPage)
async def job_changes(
    command_id: str,
    request: Request,
    stores: StoresDep,
    settings: SettingsDep,
    access: AccessDep,
    count: Count = None,
    cursor: Cursor = None,
) -> ChangesPage:
    """The resources the job changed, in reference order: the version it wrote of each (named by its
    `meta.tag`), still current or kept in history. Someone who is not an admin sees only versions in
    their accounts, of types their scopes let them read."""
    principal = access.principal
    job = owned(await stores.jobs().get(command_id), command_id, principal)
    limit = min(DEFAULT_CHANGES if count is None else count, MAX_CHANGES)
    after = parse_changes_cursor(cursor)
    within = access.search_accounts()
    current = []
    if job.target is not None:
        current = await stores.resources().written_by(job.id, job.target, after, limit + 1, within)
    kept = await stores.history().written_by(job.id, after, limit + 1, within)
    merged = sorted(
        [changed_resource(d, current=True) for d in current] + [changed_resource(d, False) for d in kept],
        key=lambda entry: entry.reference,
    )
    page, more = merged[:limit], len(merged) > limit
    following = changes_cursor(page[-1].reference) if more and page else None
    base = fhir_base(request, settings)
    link = _next(request, base, f"/job/{command_id}/changes", following) if following else None
    shown = [e for e in page if principal.may(Interaction.READ, e.reference.split("/", 1)[0])]
    return ChangesPage(job=job.id, resources=shown, next_cursor=following, next=link)
