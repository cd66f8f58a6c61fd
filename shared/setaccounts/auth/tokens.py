"""Bearer token verification: signature against keys from configuration, then `iss`, `aud`, `exp`, `nbf`.

Keys come from a JWKS file, a JWKS URL, or the issuer's OpenID discovery document (`jwks_uri`). Fetched
keys are cached for `auth_jwks_cache_seconds`; a token naming an unknown `kid` triggers a refresh, at most
once per `auth_jwks_refresh_seconds`, so rotated keys are picked up without letting junk tokens hammer the
issuer. Tokens are never logged.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import structlog

from setaccounts.auth.principal import ClaimNames, Principal, principal_of
from setaccounts.settings import Settings

log = structlog.get_logger(__name__)
FETCH_TIMEOUT = 5.0
DISCOVERY_PATH = "/.well-known/openid-configuration"


class InvalidToken(Exception):
    """The token cannot be trusted; the message is safe to show the caller."""


class KeysUnavailable(Exception):
    """No keys could be loaded (the issuer does not answer, or the JWKS holds no usable key)."""


def parse_jwks(data: Any) -> dict[str | None, jwt.PyJWK]:
    """Signing keys of a JWKS by `kid` (encryption keys and keys of unknown types are skipped)."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise KeysUnavailable("not a JWKS: expected an object with a 'keys' array")
    found: dict[str | None, jwt.PyJWK] = {}
    for entry in data["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            found[entry.get("kid")] = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError):
            continue
    if not found:
        raise KeysUnavailable("the JWKS holds no usable signing key")
    return found


class KeySet:
    """The trusted signing keys, cached and refreshed on an unknown `kid`."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._client = client
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")
        self._jwks_uri = settings.auth_jwks_url or None
        self._discovery: dict[str, Any] | None = None
        self._lock = asyncio.Lock()
        if settings.auth_jwks_file:  # a file is read at start: a bad one stops the process
            self._keys = self._read_file()
            self._fetched_at = time.monotonic()

    def _read_file(self) -> dict[str | None, jwt.PyJWK]:
        try:
            return parse_jwks(json.loads(Path(self.settings.auth_jwks_file).read_text()))
        except (OSError, ValueError) as exc:
            raise KeysUnavailable(f"cannot read {self.settings.auth_jwks_file}: {exc}") from exc

    async def _get_json(self, url: str) -> Any:
        client = self._client or httpx.AsyncClient(timeout=FETCH_TIMEOUT)
        try:
            response = await client.get(url, timeout=FETCH_TIMEOUT)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise KeysUnavailable(f"cannot fetch {url}: {type(exc).__name__}") from exc
        finally:
            if self._client is None:
                await client.aclose()

    async def _fetch(self) -> dict[str | None, jwt.PyJWK]:
        if self.settings.auth_jwks_file:
            return await asyncio.to_thread(self._read_file)
        if self._jwks_uri is None:
            uri = (await self.discovery()).get("jwks_uri")
            if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
                raise KeysUnavailable(
                    f"the discovery document of {self.settings.auth_issuer} names no jwks_uri"
                )
            self._jwks_uri = uri
        return parse_jwks(await self._get_json(self._jwks_uri))

    async def discovery(self) -> dict[str, Any]:
        """The issuer's OpenID discovery document (fetched once); {} when the issuer is not a URL."""
        if self._discovery is None:
            issuer = self.settings.auth_issuer.rstrip("/")
            if not issuer.startswith(("https://", "http://")):
                return {}
            found = await self._get_json(issuer + DISCOVERY_PATH)
            self._discovery = found if isinstance(found, dict) else {}
        return self._discovery

    async def _refresh(self, reason: str) -> None:
        try:
            self._keys = await self._fetch()
        except KeysUnavailable as exc:
            if not self._keys:
                raise
            log.warning("token keys not refreshed; keeping the cached ones", reason=reason, error=str(exc))
        self._fetched_at = time.monotonic()
        log.info("token keys loaded", reason=reason, kids=sorted(str(k) for k in self._keys))

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """The key a token names; a token without `kid` may use the only key there is."""
        age = time.monotonic() - self._fetched_at
        if age > self.settings.auth_jwks_cache_seconds or (
            kid not in self._keys and age > self.settings.auth_jwks_refresh_seconds
        ):
            async with self._lock:  # one fetch for all the requests that found the cache stale
                age = time.monotonic() - self._fetched_at
                if age > self.settings.auth_jwks_cache_seconds or (
                    kid not in self._keys and age > self.settings.auth_jwks_refresh_seconds
                ):
                    reason = "expired" if kid in self._keys else "unknown kid" if self._keys else "first use"
                    await self._refresh(reason)
        if kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise InvalidToken("the token is signed with an unknown key")


class TokenVerifier:
    """Verifies a compact JWS and returns the principal it speaks for."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        problems = settings.auth_problems()
        if problems:
            raise ValueError("token verification is not configured: " + "; ".join(problems))
        self.settings = settings
        self.keys = KeySet(settings, client)
        self.algorithms = [a.strip() for a in settings.auth_algorithms.split(",") if a.strip()]
        self.names = ClaimNames(
            admin_claim=settings.auth_admin_claim,
            admin_value=settings.auth_admin_value,
            accounts_claim=settings.auth_accounts_claim,
            scope_claim=settings.auth_scope_claim,
        )

    async def claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("the token is malformed") from exc
        if header.get("alg") not in self.algorithms:
            raise InvalidToken("the token's signature algorithm is not accepted")
        kid = header.get("kid")
        key = await self.keys.key(kid if isinstance(kid, str) else None)
        required = ["exp", "sub", "aud"] + (["iss"] if self.settings.auth_issuer else [])
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self.algorithms,
                audience=self.settings.auth_audience,
                issuer=self.settings.auth_issuer or None,
                leeway=self.settings.auth_clock_skew_seconds,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("the token is not valid yet") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken("the token is not meant for this server (audience)") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("the token comes from an issuer this server does not trust") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"the token lacks the {exc.claim!r} claim") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("the token's signature or claims are invalid") from exc
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise InvalidToken("the token's subject is empty")
        return claims

    async def verify(self, token: str) -> Principal:
        return principal_of(await self.claims(token), self.names)
