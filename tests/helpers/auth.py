"""A real token issuer for tests: a signing key whose JWKS and OpenID discovery document are served over
HTTP on 127.0.0.1, and tokens signed with it (or with a stranger's key, or already expired)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from fastapi import FastAPI

from setaccounts_dev.devkeys import SigningKey, claims_for

AUDIENCE = "fhir-set-accounts-test"
ADMIN_SUBJECT = "test-admin"


class Issuer:
    """Signs tokens; `url` serves `/.well-known/openid-configuration` and `/jwks` while running."""

    def __init__(self) -> None:
        self.key = SigningKey.generate()
        self.url = ""
        self.jwks_requests = 0

    def settings(self) -> dict[str, Any]:
        """Settings that make the API trust this issuer (keys found through discovery)."""
        return {"auth_issuer": self.url, "auth_audience": AUDIENCE}

    def token(
        self,
        subject: str,
        *,
        admin: bool = False,
        accounts: Sequence[str] = (),
        scopes: Sequence[str] = (),
        ttl_seconds: int = 3600,
        audience: str = AUDIENCE,
        issuer: str | None = None,
        key: SigningKey | None = None,
        now: float | None = None,
        client_id: str | None = None,
    ) -> str:
        claims = claims_for(
            subject,
            issuer=issuer or self.url,
            audience=audience,
            admin=admin,
            accounts=accounts,
            scopes=scopes,
            client_id=client_id,
            ttl_seconds=ttl_seconds,
            now=now,
        )
        return (key or self.key).sign(claims)

    def admin_token(self) -> str:
        return self.token(ADMIN_SUBJECT, admin=True)

    def _documents(self) -> dict[str, Any]:
        return {
            "/.well-known/openid-configuration": {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/jwks",
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "grant_types_supported": ["authorization_code", "client_credentials"],
            },
            "/jwks": self.key.jwks(),
        }

    @contextmanager
    def serving(self) -> Iterator[Issuer]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = issuer._documents().get(self.path)
                if self.path == "/jwks":
                    issuer.jwks_requests += 1
                if body is None:
                    self.send_error(404)
                    return
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ClientAs = Callable[[str | None], AbstractAsyncContextManager[httpx.AsyncClient]]
"""The `client_as` fixture: `async with client_as(token) as client`, another caller of the same API."""


def client_of(app: FastAPI, token: str | None) -> httpx.AsyncClient:
    """An httpx client on `app` that sends `token` as its bearer token (None: anonymous)."""
    headers = bearer(token) if token else {}
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir/R4", headers=headers)
