"""`/console/`: the jobs console, a static page and two small scripts served from this package (no CDN, no
build step), which call the API with a bearer token kept in the browser's sessionStorage.

Sign-in is authorization code with PKCE at the OpenID issuer (`SETACCOUNTS_AUTH_ISSUER` and
`SETACCOUNTS_CONSOLE_CLIENT_ID`), or the development sign-in when `make run` configured its key
(`dev_signin`). The page gets its own Content-Security-Policy: scripts and styles from this origin only, and
connections to this origin and the issuer's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from setaccounts.settings import Settings

CONSOLE_PATH = "/console"
ASSETS = Path(__file__).parent / "static" / "console"


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    connect = ["'self'"]
    issuer = _origin(settings.auth_issuer) if settings.console_client_id else None
    if issuer:
        connect.append(issuer)  # discovery and the token endpoint (the authorization step is a navigation)
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src {' '.join(connect)}",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def console_config(settings: Settings) -> dict[str, Any]:
    """What the page needs to sign in and to link traces; no secret (the console is a public client)."""
    oidc: dict[str, str] | None = None
    if settings.console_client_id and _origin(settings.auth_issuer):
        oidc = {
            "issuer": settings.auth_issuer,
            "client_id": settings.console_client_id,
            "scope": settings.console_scope,
        }
    return {
        "oidc": oidc,
        "dev_sign_in": bool(settings.console_dev_key_file),
        "trace_url": settings.console_trace_url or None,
    }


def install_console(app: FastAPI, settings: Settings) -> None:
    """Serve the console at /console/ (and the development sign-in when its key is configured)."""
    page = (ASSETS / "index.html").read_text()
    headers = {"Content-Security-Policy": content_security_policy(settings), "Cache-Control": "no-cache"}
    config = console_config(settings)
    router = APIRouter(include_in_schema=False)

    @router.get(CONSOLE_PATH)
    async def console_redirect(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{request.scope.get('root_path', '')}{CONSOLE_PATH}/", status_code=308)

    @router.get(f"{CONSOLE_PATH}/")
    async def console_page() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    @router.get(f"{CONSOLE_PATH}/config.json")
    async def console_settings() -> JSONResponse:
        return JSONResponse(config, headers={"Cache-Control": "no-cache"})

    app.include_router(router)
    if settings.console_dev_key_file:
        from setaccounts_api.dev_signin import dev_signin_router  # dev only: never imported otherwise

        app.include_router(dev_signin_router(settings))
    app.mount(f"{CONSOLE_PATH}/assets", StaticFiles(directory=ASSETS), name="console-assets")
