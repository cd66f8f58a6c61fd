"""SMART scopes: v2 permission letters, v1 read/write, and what grants nothing here."""

from __future__ import annotations

import pytest

from setaccounts.auth.scopes import ALL, Grants, Interaction, Scope, parse_scope

C, R, U, D, S = (Interaction(c) for c in "cruds")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("system/*.cruds", Scope("*", ALL)),
        ("user/Observation.rs", Scope("Observation", frozenset({R, S}))),
        ("system/Patient.c", Scope("Patient", frozenset({C}))),
        ("user/Patient.cud", Scope("Patient", frozenset({C, U, D}))),
        ("user/*.read", Scope("*", frozenset({R, S}))),
        ("system/Observation.write", Scope("Observation", frozenset({C, U, D}))),
        ("user/Observation.*", Scope("Observation", ALL)),
    ],
)
def test_granting_scopes(raw: str, expected: Scope) -> None:
    assert parse_scope(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "patient/Observation.rs",  # needs a launch context this server does not have
        "user/Observation.rs?category=laboratory",  # a query this server cannot enforce
        "user/Observation.sr",  # v2 letters out of order
        "user/Observation.x",
        "user/Observation.",
        "user/.rs",
        "openid",
        "fhirUser",
        "launch/patient",
        "offline_access",
        "user/Obs-ervation.rs",
        "admin/*.cruds",
    ],
)
def test_scopes_that_grant_nothing(raw: str) -> None:
    assert parse_scope(raw) is None


def test_grants_from_a_claim_string_or_list() -> None:
    grants = Grants.parse("openid user/Observation.rs system/Patient.cruds")
    assert grants.allows(R, "Observation") and grants.allows(S, "Observation")
    assert not grants.allows(C, "Observation")
    assert all(grants.allows(i, "Patient") for i in Interaction)
    assert not grants.allows(R, "Encounter")
    assert grants.types_for(S) == frozenset({"Observation", "Patient"})
    assert Grants.parse(["system/*.rs", 3]).types_for(S) is None
    assert Grants.parse(None).scopes == () and Grants.parse(42).scopes == ()
    assert Grants.parse("").types_for(R) == frozenset()
