"""`GET /fhir/R4/.well-known/smart-configuration`: where clients get tokens for this server (SMART App
Launch 2.x discovery), from the issuer's OpenID discovery document. Open, like the CapabilityStatement."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from setaccounts.auth.tokens import KeysUnavailable, TokenVerifier
from setaccounts.fhir.outcomes import FhirError
from setaccounts_api.responses import FhirResponse, fhir

router = APIRouter(tags=["metadata"])
CAPABILITIES = [
    "permission-v1",
    "permission-v2",
    "client-confidential-asymmetric",
    "client-confidential-symmetric",
]
SCOPES = ["system/*.cruds", "system/*.rs", "user/*.cruds", "user/*.rs", "system/*.read", "user/*.read"]
COPIED = (
    "issuer",
    "jwks_uri",
    "authorization_endpoint",
    "token_endpoint",
    "grant_types_supported",
    "token_endpoint_auth_methods_supported",
    "code_challenge_methods_supported",
    "introspection_endpoint",
    "revocation_endpoint",
)


@router.get("/.well-known/smart-configuration", response_model=None)
async def smart_configuration(request: Request) -> FhirResponse:
    verifier: TokenVerifier = request.app.state.verifier
    try:
        discovery = await verifier.keys.discovery()
    except KeysUnavailable as exc:
        raise FhirError(503, "transient", "the authorization server does not answer; retry later") from exc
    if "token_endpoint" not in discovery:
        raise FhirError(404, "not-found", "no OAuth authorization server is configured for this server")
    body: dict[str, Any] = {key: discovery[key] for key in COPIED if key in discovery}
    body["capabilities"] = CAPABILITIES
    body["scopes_supported"] = SCOPES
    return fhir(body, 200, {"Content-Type": "application/json"})
