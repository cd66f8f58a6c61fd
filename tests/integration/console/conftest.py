"""The console tests' fixtures: Debian's Chromium under Playwright (skipped, with the reason, where there is
none), and a served stack: the API as a process with the development sign-in, and the propagator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.settings import Settings
from tests.helpers.auth import Issuer, SignIn
from tests.helpers.browser import LAUNCH_ARGS, find_chromium, screenshot_path
from tests.helpers.console import Console
from tests.helpers.processes import api_process, propagator_process

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

FAILED = pytest.StashKey[Path]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A browser test that fails keeps a screenshot of its page (taken as `page` is torn down); the
    failure report names the file."""
    outcome: Any = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "page" in getattr(item, "fixturenames", ()):
        path = screenshot_path(item.name)
        item.stash[FAILED] = path
        report.sections.append(("browser screenshot", f"the page as the test failed: {path}"))


@pytest.fixture(scope="session")
def chromium() -> str:
    pytest.importorskip("playwright.async_api", reason="Playwright is not installed: pip install -e '.[dev]'")
    path = find_chromium()
    if path is None:
        pytest.skip(
            "no Chromium on this machine (/usr/bin/chromium): `apt-get install -y chromium` "
            "(.ci/run does it where it can) to run the browser tests"
        )
    return path


@pytest.fixture(scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, headless=True, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def page_errors() -> list[str]:
    """Script errors and console errors of the page (a CSP refusal is one): tests assert there are none."""
    return []


@pytest.fixture
async def page(
    browser: Browser, console: Console, request: pytest.FixtureRequest, page_errors: list[str]
) -> AsyncIterator[Page]:
    """A fresh browser context (its own sessionStorage), closed before the stack stops, so the screenshot
    of a failed test shows the page as it was."""
    context = await browser.new_context()
    opened = await context.new_page()
    opened.on("pageerror", lambda error: page_errors.append(f"page error: {error}"))
    opened.on(
        "console", lambda message: page_errors.append(message.text) if message.type == "error" else None
    )
    try:
        yield opened
    finally:
        path = request.node.stash.get(FAILED, None)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            await opened.screenshot(path=str(path), full_page=True)
            print(f"screenshot of the failed page: {path}")
        await context.close()


@pytest.fixture
async def console(
    browser: Browser, settings: Settings, db: AsyncDatabase[dict[str, Any]], issuer: Issuer, tmp_path: Path
) -> AsyncIterator[Console]:
    """The API (a uvicorn process, with the development sign-in on the issuer's key) and the propagator
    process, on the test's own database and topics; apply batches of 100 so a job takes a while. Asks for
    the browser first: without Chromium the test skips before any engine starts."""
    key = tmp_path / "dev-signing-key.pem"
    key.write_bytes(issuer.key.pem())
    served = settings.model_copy(update={"console_dev_key_file": str(key), "apply_batch_size": 100})
    with propagator_process(served), api_process(served) as (_api, fhir_base):
        yield Console(fhir_base)


@pytest.fixture
async def oidc_console(
    browser: Browser, settings: Settings, db: AsyncDatabase[dict[str, Any]], issuer: Issuer
) -> AsyncIterator[Console]:
    """The API and the propagator as processes, the console signing in at the test's issuer (authorization
    code with PKCE, `tests.helpers.auth.SignIn`) as a deployment configures it, with no development
    sign-in. The issuer is the session's: what it signs in and saw starts afresh for each test."""
    issuer.signs_in = SignIn()
    served = settings.model_copy(update={"console_client_id": issuer.signs_in.client_id})
    with propagator_process(served), api_process(served) as (_api, fhir_base):
        yield Console(fhir_base)
