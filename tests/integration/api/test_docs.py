"""`/docs` works offline: Swagger UI's assets come from this API, never from a public CDN."""

from __future__ import annotations

import re

import pytest

from tests.helpers.auth import ClientAs

pytestmark = pytest.mark.integration
HOST = "http://testserver"
URL = re.compile(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)


@pytest.mark.parametrize("path", ["/docs", "/docs/oauth2-redirect"])
async def test_docs_pages_reference_no_external_host(client_as: ClientAs, path: str) -> None:
    async with client_as(None) as anonymous:  # the docs need no token
        page = await anonymous.get(f"{HOST}{path}")
    assert page.status_code == 200, page.text
    assert [u for u in URL.findall(page.text) if EXTERNAL.match(u)] == []
    assert "cdn" not in page.text.lower()


async def test_docs_assets_are_served_by_the_api(client_as: ClientAs) -> None:
    async with client_as(None) as anonymous:
        page = await anonymous.get(f"{HOST}/docs")
        urls = URL.findall(page.text)
        assert "/docs/assets/swagger-ui-bundle.js" in urls and "/openapi.json" in urls, urls
        for url in urls:
            served = await anonymous.get(f"{HOST}{url}")
            assert served.status_code == 200 and served.content, url
        assert (await anonymous.get(f"{HOST}/redoc")).status_code == 404  # ReDoc would need a CDN
