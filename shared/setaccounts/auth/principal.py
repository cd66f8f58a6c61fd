"""The verified caller: subject, client, admin role, accounts and scopes, read from a token's claims."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from setaccounts.auth.scopes import Grants, Interaction
from setaccounts.fhir.references import parse_reference

REQUESTED_BY_MAX = 256


def claim(claims: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (`realm_access.roles`); None when any step is missing."""
    value: Any = claims
    for step in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def claim_strings(value: Any) -> list[str]:
    """A claim as strings: a list of strings, or one string of space- or comma-separated values."""
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def account_refs(value: Any) -> tuple[str, ...]:
    """`Type/id` references of an accounts claim (strings or `{"reference": ...}`); junk is dropped."""
    items = value if isinstance(value, list) else claim_strings(value)
    found: list[str] = []
    for item in items:
        raw = item.get("reference") if isinstance(item, dict) else item
        parsed = parse_reference(raw) if isinstance(raw, str) else None
        if parsed is not None and f"{parsed[0]}/{parsed[1]}" not in found:
            found.append(f"{parsed[0]}/{parsed[1]}")
    return tuple(found)


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for. A non-admin sees only what its `accounts` hold."""

    subject: str
    client_id: str | None = None
    admin: bool = False
    accounts: tuple[str, ...] = ()
    grants: Grants = field(default_factory=Grants)

    @property
    def requested_by(self) -> str:
        """What jobs, commands and the audit record as the requester."""
        who = self.subject
        if self.client_id and self.client_id != self.subject:
            who = f"{self.subject} via {self.client_id}"
        return who[:REQUESTED_BY_MAX]

    def may(self, interaction: Interaction, resource_type: str) -> bool:
        return self.admin or self.grants.allows(interaction, resource_type)

    def types_for(self, interaction: Interaction) -> frozenset[str] | None:
        """The types this principal may apply `interaction` to; None means every type."""
        return None if self.admin else self.grants.types_for(interaction)

    def sees(self, compartments: list[str] | tuple[str, ...]) -> bool:
        """Whether a stored resource with these `compartments` is visible: admins see everything."""
        return self.admin or any(c in self.accounts for c in compartments)


@dataclass(frozen=True)
class ClaimNames:
    """Where a token carries the admin role, the accounts and the scopes (configurable per issuer)."""

    admin_claim: str = "roles"
    admin_value: str = "setaccounts-admin"
    accounts_claim: str = "accounts"
    scope_claim: str = "scope"


def principal_of(claims: dict[str, Any], names: ClaimNames) -> Principal:
    """The principal of verified claims (`sub` must be a non-empty string: the verifier requires it)."""
    client = claims.get("azp") or claims.get("client_id")
    scopes = claims.get(names.scope_claim)
    if scopes is None and names.scope_claim == "scope":
        scopes = claims.get("scp")  # some issuers name the claim scp
    return Principal(
        subject=str(claims["sub"]),
        client_id=client if isinstance(client, str) and client else None,
        admin=names.admin_value in claim_strings(claim(claims, names.admin_claim)),
        accounts=account_refs(claim(claims, names.accounts_claim)),
        grants=Grants.parse(scopes),
    )
