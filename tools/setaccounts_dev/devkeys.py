"""A development signing key per checkout, and tokens signed with it (never for production).

`make run` creates the key under `.run/` (gitignored) and points the API at its public JWKS; the
`setaccounts token` command signs tokens with the same key, so they are valid for that stack only.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

DEV_ISSUER = "setaccounts-dev"
DEV_AUDIENCE = "fhir-set-accounts"
KEY_FILE = "dev-signing-key.pem"
JWKS_FILE = "dev-jwks.json"
ALGORITHM = "ES256"
ADMIN_CLAIM, ADMIN_VALUE, ACCOUNTS_CLAIM = "roles", "setaccounts-admin", "accounts"


class SigningKey:
    """An EC P-256 key pair with its key id; signs ES256 tokens and publishes its public JWKS."""

    def __init__(self, private: ec.EllipticCurvePrivateKey, kid: str | None = None) -> None:
        self.private = private
        public = jwt.algorithms.ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
        self.kid = kid or jwt.PyJWK(public).key_id or _thumbprint(public)
        self.public_jwk: dict[str, Any] = {**public, "kid": self.kid, "use": "sig", "alg": ALGORITHM}

    @classmethod
    def generate(cls, kid: str | None = None) -> SigningKey:
        return cls(ec.generate_private_key(ec.SECP256R1()), kid)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private, algorithm=ALGORITHM, headers={"kid": self.kid})

    def pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an EC public key (the key id)."""
    import base64
    import hashlib

    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def claims_for(
    subject: str,
    *,
    issuer: str = DEV_ISSUER,
    audience: str = DEV_AUDIENCE,
    admin: bool = False,
    accounts: Sequence[str] = (),
    scopes: Sequence[str] = (),
    client_id: str | None = "setaccounts-cli",
    ttl_seconds: int = 3600,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of a token; without scopes an admin gets `system/*.cruds` and a user `user/*.cruds`."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_seconds,
        "jti": str(uuid.uuid4()),
        "scope": " ".join(scopes or (["system/*.cruds"] if admin else ["user/*.cruds"])),
    }
    if client_id:
        claims["azp"] = client_id
    if admin:
        claims[ADMIN_CLAIM] = [ADMIN_VALUE]
    if accounts:
        claims[ACCOUNTS_CLAIM] = list(accounts)
    return claims


def ensure_dev_key(directory: Path) -> SigningKey:
    """The checkout's development key, created on first use (private key readable by the owner only)."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path, jwks_path = directory / KEY_FILE, directory / JWKS_FILE
    if key_path.exists():
        private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise SystemExit(f"{key_path} is not an EC private key; delete it to make a new one")
        key = SigningKey(private)
    else:
        key = SigningKey.generate()
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(key.pem())
    jwks_path.write_text(json.dumps(key.jwks(), indent=2) + "\n")
    return key


def load_dev_key(directory: Path) -> SigningKey:
    key_path = directory / KEY_FILE
    if not key_path.exists():
        raise SystemExit(f"no development key at {key_path}: start the stack with `make run` first")
    return ensure_dev_key(directory)


def dev_auth_env(directory: Path) -> dict[str, str]:
    """The API settings that trust the development key (issuer, audience, JWKS file)."""
    ensure_dev_key(directory)
    return {
        "SETACCOUNTS_AUTH_ISSUER": DEV_ISSUER,
        "SETACCOUNTS_AUTH_AUDIENCE": DEV_AUDIENCE,
        "SETACCOUNTS_AUTH_JWKS_FILE": str(directory / JWKS_FILE),
        "SETACCOUNTS_AUTH_JWKS_URL": "",
    }
