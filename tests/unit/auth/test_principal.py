"""Claims → principal: configurable claim names, dotted paths, accounts as references."""

from __future__ import annotations

from setaccounts.auth.principal import ClaimNames, Principal, principal_of
from setaccounts.auth.scopes import Interaction


def test_defaults_read_roles_accounts_and_scope() -> None:
    principal = principal_of(
        {
            "sub": "alice",
            "azp": "portal",
            "roles": ["setaccounts-admin"],
            "accounts": [
                "Organization/a",
                "Organization/a",
                "not a reference",
                {"reference": "Organization/b"},
            ],
            "scope": "system/*.rs",
        },
        ClaimNames(),
    )
    assert principal.admin and principal.subject == "alice" and principal.client_id == "portal"
    assert principal.accounts == ("Organization/a", "Organization/b")
    assert principal.requested_by == "alice via portal"


def test_keycloak_style_nested_claims() -> None:
    names = ClaimNames(
        admin_claim="realm_access.roles", admin_value="fhir-admin", accounts_claim="fhir.accounts"
    )
    claims = {
        "sub": "svc",
        "client_id": "svc",
        "realm_access": {"roles": ["offline_access", "fhir-admin"]},
        "fhir": {"accounts": "Organization/x Organization/y"},
        "scp": ["user/Observation.rs"],
    }
    principal = principal_of(claims, names)
    assert principal.admin and principal.accounts == ("Organization/x", "Organization/y")
    assert principal.requested_by == "svc"  # the client is the subject: said once
    assert principal.grants.allows(Interaction.READ, "Observation")
    assert not principal_of({**claims, "realm_access": {"roles": "fhir-admin-ish"}}, names).admin


def test_sight_of_a_scoped_principal_and_of_an_admin() -> None:
    scoped = Principal("bob", accounts=("Organization/a",))
    assert scoped.sees(["Patient/1", "Organization/a"]) and not scoped.sees(["Organization/b"])
    assert not scoped.sees([]) and not Principal("nobody").sees(["Organization/a"])
    assert Principal("root", admin=True).sees([])
    assert not scoped.may(Interaction.READ, "Patient")  # no scopes, no interactions
    assert Principal("root", admin=True).may(Interaction.DELETE, "Patient")
