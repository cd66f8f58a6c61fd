"""The jobs console in a real browser (Debian's Chromium under Playwright) against the API and the
propagator as processes on the real engines: sign in, watch a job's progress, open what it changed, cancel a
job, and see that a user who is not an admin is shown only their own jobs."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.status import JobStatus
from tests.helpers.auth import Issuer
from tests.helpers.console import DEV_CLIENT, Console, job_row, progress_of, sign_in
from tests.helpers.jobs import wait_job
from tests.helpers.resources import Seed, patient_with_members

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MEMBERS = 3000


async def test_a_jobs_progress_bar_moves_until_it_completes_and_its_changes_can_be_opened(
    page: Page, console: Console, seed: Seed, issuer: Issuer, page_errors: list[str]
) -> None:
    await seed(*patient_with_members("p1", MEMBERS))
    await sign_in(page, console, "alice", admin=True)
    command_id = await console.start_job(issuer.admin_token(), "Patient/p1", "Organization/o1")
    row = job_row(page, command_id)
    await row.wait_for()

    seen: list[str] = []  # the bar's values while the row says the job runs
    deadline = time.monotonic() + 180
    while (status := await row.locator("td.status").text_content()) != "completed":
        assert status in ("accepted", "planning", "applying"), status
        value = await progress_of(row)
        if value is not None and value not in seen:
            seen.append(value)
        assert time.monotonic() < deadline, f"still {status} after 180 s; values seen: {seen}"
        await asyncio.sleep(0.1)
    assert len(seen) >= 2, f"the progress bar took only {seen} while the job ran"
    assert [float(v) for v in seen] == sorted(float(v) for v in seen), seen
    assert await progress_of(row) == str(MEMBERS + 1)
    assert await row.locator("td.outcome").text_content() == f"{MEMBERS + 1} updated, {MEMBERS + 1} changed"
    assert "none → Organization/o1" in (await row.text_content() or "")

    from playwright.async_api import expect

    await row.get_by_role("button", name=command_id[:8]).click()
    detail = page.locator("#detail")
    await detail.get_by_text("trace").first.wait_for()
    changes = detail.locator("#changes tbody tr")
    await changes.first.wait_for()
    assert await changes.count() == 50  # a page; the next one on demand
    assert await changes.first.locator("td").first.text_content() == "Observation/p1-obs-000000"
    await detail.get_by_role("button", name="More").click()
    await expect(changes).to_have_count(100)  # a string to evaluate would be refused: the page's CSP
    assert page_errors == []


async def test_a_running_job_is_cancelled_from_the_page(
    page: Page,
    console: Console,
    seed: Seed,
    issuer: Issuer,
    db: AsyncDatabase[dict[str, Any]],
    page_errors: list[str],
) -> None:
    await seed(*patient_with_members("p2", MEMBERS))
    await sign_in(page, console, "alice", admin=True)
    command_id = await console.start_job(issuer.admin_token(), "Patient/p2", "Organization/o2")
    row = job_row(page, command_id)
    await row.get_by_role("button", name="Cancel").click()
    await page.get_by_text(f"job {command_id} cancelled").wait_for()
    await row.locator("td.status", has_text="cancelled").wait_for()
    assert await row.get_by_role("button", name="Cancel").count() == 0
    assert "cancelled by alice via setaccounts-cli" in (await row.text_content() or "")

    answer = await console.status(issuer.admin_token(), command_id)
    assert answer.status_code == 410, answer.text  # what the API says of a cancelled job
    job = await wait_job(db, command_id, (JobStatus.CANCELLED,))
    assert job["resources_updated"] < MEMBERS + 1  # it stopped before the end
    assert page_errors == []


async def test_someone_who_is_not_an_admin_is_shown_only_their_own_jobs(
    page: Page, console: Console, seed: Seed, issuer: Issuer, page_errors: list[str]
) -> None:
    await seed(*patient_with_members("p3", 2), *patient_with_members("p4", 2))
    carol = issuer.token("carol", admin=True, client_id=DEV_CLIENT)  # carol, as an admin, earlier
    dave = issuer.token("dave", admin=True, client_id=DEV_CLIENT)
    carols = [
        await console.start_job(carol, "Patient/p3", "Organization/a"),
        await console.start_job(carol, "Patient/p4", "Organization/b"),
    ]
    daves = await console.start_job(dave, "Patient/p3", "Organization/c")

    await sign_in(page, console, "carol", admin=False)
    rows = page.locator("#jobs tbody tr")
    await job_row(page, carols[0]).wait_for()
    await job_row(page, carols[1]).wait_for()
    assert await rows.count() == 2
    assert set(await rows.locator("td.requester").all_text_contents()) == {f"carol via {DEV_CLIENT}"}
    assert await job_row(page, daves).count() == 0

    await page.locator("#filters").get_by_label("Requester").fill(f"dave via {DEV_CLIENT}")
    await page.locator("#filters").get_by_role("button", name="Filter").click()
    await page.get_by_text("No jobs.").wait_for()

    await page.get_by_role("button", name="Sign out").click()
    await sign_in(page, console, "alice", admin=True)
    await job_row(page, daves).wait_for()
    assert await rows.count() == 3
    assert page_errors == []
