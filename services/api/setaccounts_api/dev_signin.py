"""Development sign-in for the jobs console: `POST /console/dev-token` mints a short-lived token for a chosen
subject, admin role and accounts, signed with the development key `make run` creates in `.run/`.

It exists only when `SETACCOUNTS_CONSOLE_DEV_KEY_FILE` names that key (nothing sets it by default; `make run`
does), answers only callers on the loopback interface, and signs tokens the API's own settings accept (its
issuer, audience and claim names), so it is a shortcut to `setaccounts token`, never a way around it.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, field_validator

from setaccounts.fhir.outcomes import FhirError
from setaccounts.fhir.references import parse_relative_reference
from setaccounts.settings import Settings
from setaccounts_dev.devkeys import SigningKey, claims_for

log = structlog.get_logger(__name__)
DEV_TOKEN_PATH = "/console/dev-token"
DEV_TOKEN_SECONDS = 900


class DevSignIn(BaseModel):
    subject: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$", examples=["alice"])
    admin: bool = False
    accounts: list[str] = Field(default_factory=list, max_length=20, examples=[["Organization/acme"]])

    @field_validator("accounts")
    @classmethod
    def _references(cls, value: list[str]) -> list[str]:
        for ref in value:
            if parse_relative_reference(ref) is None:
                raise ValueError(f"expected references like Organization/acme, got {ref!r}")
        return list(dict.fromkeys(value))


class DevToken(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int


def load_key(path: str) -> SigningKey:
    """The development key; a missing or foreign file stops the API at start with the reason."""
    try:
        private = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"SETACCOUNTS_CONSOLE_DEV_KEY_FILE: cannot read a PEM key from {path}: {exc}"
        ) from exc
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise TypeError(f"SETACCOUNTS_CONSOLE_DEV_KEY_FILE: {path} is not the EC development key")
    return SigningKey(private)


def _put(claims: dict[str, Any], path: str, value: Any) -> None:
    """Set a claim at a dotted path (`realm_access.roles`), as the verifier reads it."""
    *parents, last = path.split(".")
    for step in parents:
        claims = claims.setdefault(step, {})
    claims[last] = value


def _loopback(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


def dev_signin_router(settings: Settings) -> APIRouter:
    key = load_key(settings.console_dev_key_file)
    log.warning("console development sign-in is on: loopback callers get tokens for any subject")
    router = APIRouter(tags=["console"])

    @router.post(DEV_TOKEN_PATH, response_model=DevToken)
    async def dev_token(body: DevSignIn, request: Request) -> DevToken:
        """A token for `subject` (development only: signed with the checkout's development key)."""
        if not _loopback(request):
            raise FhirError(403, "forbidden", "the development sign-in answers loopback callers only")
        claims = claims_for(
            body.subject,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            ttl_seconds=DEV_TOKEN_SECONDS,
            scopes=["system/*.cruds"] if body.admin else ["user/*.cruds"],
        )
        if body.admin:
            _put(claims, settings.auth_admin_claim, [settings.auth_admin_value])
        if body.accounts:
            _put(claims, settings.auth_accounts_claim, body.accounts)
        return DevToken(access_token=key.sign(claims), expires_in=DEV_TOKEN_SECONDS)

    return router
