"""A real token issuer for tests: a signing key whose JWKS and OpenID discovery document are served over
HTTP on 127.0.0.1, and tokens signed with it (or with a stranger's key, or already expired). It also
answers the authorization code flow with PKCE as an OpenID provider does for a public client (RFC 7636,
S256 only): `/authorize` signs in `Issuer.signs_in` at once and sends the browser back with a code, and
`/token` gives the access token only for the verifier whose SHA-256 is the code's challenge."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from fastapi import FastAPI

from setaccounts_dev.devkeys import SigningKey, claims_for

AUDIENCE = "fhir-set-accounts-test"
ADMIN_SUBJECT = "test-admin"


@dataclass
class SignIn:
    """Who `/authorize` signs in, for which client, and what it saw: the requests it answered, the codes
    it gave and that are not spent yet (each with its request), and the status of each token exchange."""

    subject: str = "alice"
    admin: bool = False
    client_id: str = "setaccounts-console"
    refuse: bool = False  # answer `access_denied`, as a person who declines would
    asked: list[dict[str, str]] = field(default_factory=list)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    exchanges: list[int] = field(default_factory=list)


def s256(verifier: str) -> str:
    """The PKCE challenge of `verifier` (RFC 7636, S256)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class Issuer:
    """Signs tokens; `url` serves `/.well-known/openid-configuration` and `/jwks` while running."""

    def __init__(self) -> None:
        self.key = SigningKey.generate()
        self.url = ""
        self.jwks_requests = 0
        self.signs_in = SignIn()

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

    def _authorize(self, query: dict[str, list[str]]) -> str:
        """Where `/authorize` sends the browser: back to the client with a code, or with an error."""
        asked = {name: values[0] for name, values in query.items()}
        self.signs_in.asked.append(asked)
        back = asked["redirect_uri"]
        if self.signs_in.refuse:
            return f"{back}?{urlencode({'error': 'access_denied', 'state': asked.get('state', '')})}"
        if asked.get("client_id") != self.signs_in.client_id or asked.get("code_challenge_method") != "S256":
            return f"{back}?{urlencode({'error': 'invalid_request', 'state': asked.get('state', '')})}"
        code = secrets.token_urlsafe(16)
        self.signs_in.codes[code] = asked
        return f"{back}?{urlencode({'code': code, 'state': asked['state']})}"

    def _exchange(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """`/token`: a code is good once, for the client and redirect it was given to, with its verifier."""
        asked = self.signs_in.codes.pop(form.get("code", ""), None)
        good = (
            asked is not None
            and form.get("grant_type") == "authorization_code"
            and form.get("client_id") == asked["client_id"]
            and form.get("redirect_uri") == asked["redirect_uri"]
            and s256(form.get("code_verifier", "")) == asked["code_challenge"]
        )
        status = 200 if good else 400
        self.signs_in.exchanges.append(status)
        if not good:
            return status, {"error": "invalid_grant"}
        who = self.signs_in
        token = self.token(who.subject, admin=who.admin, client_id=who.client_id)
        return status, {"access_token": token, "token_type": "Bearer", "expires_in": 3600}

    @contextmanager
    def serving(self) -> Iterator[Issuer]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/authorize?"):
                    self._redirect(issuer._authorize(parse_qs(urlsplit(self.path).query)))
                    return
                body = issuer._documents().get(self.path)
                if self.path == "/jwks":
                    issuer.jwks_requests += 1
                if body is None:
                    self.send_error(404)
                    return
                self._json(200, body)

            def do_POST(self) -> None:
                if self.path != "/token":
                    self.send_error(404)
                    return
                form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
                status, body = issuer._exchange({name: values[0] for name, values in form.items()})
                self._json(status, body)

            def _json(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.send_header("Access-Control-Allow-Origin", "*")  # a browser app reads it from its origin
                self.end_headers()
                self.wfile.write(raw)

            def _redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

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
