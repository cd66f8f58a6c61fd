"""Driving the jobs console the way a person does: sign in, read a job's row, start jobs through the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from tests.helpers.auth import bearer
from tests.helpers.parameters import parameters

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

DEV_CLIENT = "setaccounts-cli"  # the client the development sign-in (and `setaccounts token`) names


@dataclass(frozen=True)
class Console:
    fhir_base: str  # http://127.0.0.1:<port>/fhir/R4

    @property
    def url(self) -> str:
        return self.fhir_base.removesuffix("/fhir/R4") + "/console/"

    async def start_job(self, token: str, target: str, account: str) -> str:
        """`$set-accounts` with propagation, asynchronously; the job's id."""
        async with httpx.AsyncClient(base_url=self.fhir_base, headers=bearer(token), timeout=30) as client:
            answer = await client.post(
                f"/{target}/$set-accounts",
                json=parameters(account, propagate=True),
                headers={"Prefer": "respond-async"},
            )
        assert answer.status_code == 202, answer.text
        return answer.headers["content-location"].rsplit("/", 2)[-2]

    async def status(self, token: str, command_id: str) -> httpx.Response:
        async with httpx.AsyncClient(headers=bearer(token), timeout=30) as client:
            return await client.get(f"{self.fhir_base}/job/{command_id}/status")


async def sign_in(page: Page, console: Console, subject: str, *, admin: bool) -> None:
    """The development sign-in form, as `make run` offers it."""
    await page.goto(console.url)
    form = page.locator("#dev-sign-in")
    await form.get_by_label("Subject").fill(subject)
    await form.get_by_label("admin").set_checked(admin)
    await form.get_by_role("button", name="Sign in").click()
    await page.get_by_text(f"signed in as {subject}").wait_for()


def job_row(page: Page, command_id: str) -> Locator:
    return page.locator(f'#jobs tr[data-job-id="{command_id}"]')


async def progress_of(row: Locator) -> str | None:
    """The progress bar's value as the page shows it (None: no total known yet)."""
    return await row.get_by_role("progressbar").get_attribute("value")
