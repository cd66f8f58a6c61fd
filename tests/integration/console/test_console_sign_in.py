"""Signing in to the jobs console at an OpenID issuer, in a real browser: the page runs the authorization
code flow with PKCE (S256 through WebCrypto) against the test's issuer, which gives a token only for the
right verifier, and the page then lists the signed-in user's jobs; a refused sign-in is said on the page."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.helpers.auth import Issuer
from tests.helpers.console import Console, job_row
from tests.helpers.resources import Seed, patient_with_members

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_signing_in_at_the_issuer_with_pkce_shows_the_users_own_jobs(
    page: Page, oidc_console: Console, seed: Seed, issuer: Issuer, page_errors: list[str]
) -> None:
    client = issuer.signs_in.client_id
    await seed(*patient_with_members("p1", 2))
    carols = await oidc_console.start_job(
        issuer.token("carol", admin=True, client_id=client), "Patient/p1", "Organization/a"
    )
    daves = await oidc_console.start_job(
        issuer.token("dave", admin=True, client_id=client), "Patient/p1", "Organization/b"
    )
    issuer.signs_in.subject = "carol"

    await page.goto(oidc_console.url)
    assert await page.locator("#dev-sign-in").is_hidden()  # a deployment offers the issuer only
    await page.get_by_role("button", name="Sign in with your organisation").click()
    await page.get_by_text("signed in as carol").wait_for()

    (asked,) = issuer.signs_in.asked
    assert asked["code_challenge_method"] == "S256" and asked["redirect_uri"] == oidc_console.url
    assert issuer.signs_in.exchanges == [200]  # the verifier matched the challenge the page sent
    assert issuer.signs_in.codes == {}  # and the code is spent
    await job_row(page, carols).wait_for()
    assert await job_row(page, daves).count() == 0
    assert await page.locator("#jobs td.requester").all_text_contents() == [f"carol via {client}"]
    assert page.url == oidc_console.url  # the code and state are gone from the address bar
    assert page_errors == []  # the page's CSP let it reach the issuer


async def test_a_refused_sign_in_is_said_on_the_page_and_no_token_is_kept(
    page: Page, oidc_console: Console, issuer: Issuer
) -> None:
    issuer.signs_in.refuse = True
    await page.goto(oidc_console.url)
    await page.get_by_role("button", name="Sign in with your organisation").click()
    await page.get_by_text("sign-in refused: access_denied").wait_for()
    assert await page.get_by_role("button", name="Sign in with your organisation").is_visible()
    assert await page.evaluate("() => sessionStorage.length") == 0
    assert issuer.signs_in.exchanges == []
