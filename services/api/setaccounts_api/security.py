"""Bearer authentication, admin-only checks, the per-client rate limit and the security response headers.

Every FHIR route except the CapabilityStatement depends on `authenticate`; routes that need the caller ask
for `PrincipalDep` (FastAPI verifies the token once per request either way). Tokens are never logged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from setaccounts.auth.principal import Principal
from setaccounts.auth.tokens import InvalidToken, KeysUnavailable, TokenVerifier
from setaccounts.fhir.outcomes import FhirError
from setaccounts.settings import Settings
from setaccounts_api.rest.access import Access, forbidden

log = structlog.get_logger(__name__)
KEYS_RETRY_AFTER_SECONDS = 5


def unauthorized(description: str, *, token_given: bool) -> FhirError:
    """401 with the RFC 6750 challenge; `invalid_token` only when a token was presented."""
    challenge = 'Bearer realm="fhir"'
    if token_given:
        challenge += f', error="invalid_token", error_description="{description}"'
    return FhirError(401, "login", description, headers={"WWW-Authenticate": challenge})


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per client: `rate` requests per second, bursts of `burst`; 0 turns it off."""

    MAX_CLIENTS = 100_000

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, _Bucket] = {}

    def check(self, client: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        if len(self._buckets) > self.MAX_CLIENTS:  # forget the idle ones (their buckets are full again)
            self._buckets = {
                k: b for k, b in self._buckets.items() if b.tokens + (now - b.at) * self.rate < self.burst
            }
        bucket = self._buckets.setdefault(client, _Bucket(float(self.burst), now))
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens < 1:
            wait = math.ceil((1 - bucket.tokens) / self.rate)
            raise FhirError(
                429, "throttled", "too many requests; slow down", headers={"Retry-After": str(wait)}
            )
        bucket.tokens -= 1


async def authenticate(request: Request) -> Principal:
    """The caller of this request, from `Authorization: Bearer <JWT>`; 401 without a valid token."""
    verifier: TokenVerifier = request.app.state.verifier
    limiter: RateLimiter = request.app.state.rate_limiter
    address = request.client.host if request.client else "unknown"
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        limiter.check(f"address:{address}")
        raise unauthorized("this endpoint needs Authorization: Bearer <token>", token_given=False)
    try:
        principal = await verifier.verify(token)
    except InvalidToken as exc:
        limiter.check(f"address:{address}")
        log.info("token refused", reason=str(exc), path=request.url.path)
        raise unauthorized(str(exc), token_given=True) from exc
    except KeysUnavailable as exc:
        log.warning("token keys unavailable", error=str(exc))
        raise FhirError(
            503,
            "transient",
            "the token signing keys are unavailable; retry later",
            retriable=True,
            headers={"Retry-After": str(KEYS_RETRY_AFTER_SECONDS)},
        ) from exc
    limiter.check(f"subject:{principal.requested_by}")
    return principal


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require_admin(principal: Principal, what: str) -> None:
    if not principal.admin:
        raise forbidden(f"{what} is reserved to administrators")


def access_of(principal: PrincipalDep, request: Request) -> Access:
    settings: Settings = request.app.state.settings
    return Access(principal, inherit=settings.inherit_accounts)


AccessDep = Annotated[Access, Depends(access_of)]


SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class SecurityHeaders:
    """Adds the security headers to every response; answers to authenticated requests are not cached."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorized = any(name == b"authorization" for name, _ in scope["headers"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"server"]
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if authorized and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
