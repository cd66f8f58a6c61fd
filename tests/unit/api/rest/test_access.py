"""The pure authorization decisions: sight (404), account changes by scoped tokens, inheritance."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from setaccounts.auth.principal import Principal
from setaccounts.auth.scopes import Grants
from setaccounts.fhir.outcomes import FhirError
from setaccounts.store.meta import accounts_of, prepare_write
from setaccounts_api.rest.access import Access
from setaccounts_api.rest.decisions import decide_create, decide_delete, decide_read, decide_update

AT = datetime(2026, 1, 1, tzinfo=UTC)
A, B, C = "Organization/a", "Organization/b", "Organization/c"
EVERYTHING = Grants.parse("user/*.cruds")


def scoped(*accounts: str, grants: Grants = EVERYTHING, inherit: bool = True) -> Access:
    return Access(Principal("u", accounts=accounts, grants=grants), inherit=inherit)


ADMIN = Access(Principal("root", admin=True))


def stored(resource: dict[str, Any]) -> dict[str, Any]:
    return prepare_write(resource, None, AT).document


def obs(*accounts: str, patient: str = "p1") -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "o1",
        "subject": {"reference": f"Patient/{patient}"},
    }
    if accounts:
        body["meta"] = {"accounts": [{"reference": a} for a in accounts]}
    return body


def status_of(call: Any) -> int:
    with pytest.raises(FhirError) as caught:
        call()
    return caught.value.status


def test_outside_its_accounts_is_404_for_read_update_and_delete() -> None:
    theirs = stored(obs(B))
    assert status_of(lambda: decide_read("Observation/o1", theirs, access=scoped(A))) == 404
    assert status_of(lambda: decide_update(obs(A), theirs, AT, access=scoped(A))) == 404
    assert status_of(lambda: decide_delete("Observation/o1", theirs, AT, access=scoped(A))) == 404
    assert decide_read("Observation/o1", theirs, access=scoped(B)).status == 200
    assert decide_read("Observation/o1", theirs, access=ADMIN).status == 200


def test_a_tombstone_is_404_to_a_scoped_token_and_410_to_an_admin() -> None:
    deleted = decide_delete("Observation/o1", stored(obs(A)), AT, access=scoped(A)).document
    assert status_of(lambda: decide_read("Observation/o1", deleted, access=scoped(A))) == 404
    assert status_of(lambda: decide_read("Observation/o1", deleted, access=ADMIN)) == 410


def test_scopes_decide_interactions_with_403() -> None:
    reader = scoped(A, grants=Grants.parse("user/Observation.rs"))
    assert decide_read("Observation/o1", stored(obs(A)), access=reader).status == 200
    assert status_of(lambda: decide_create(obs(A), AT, access=reader)) == 403
    assert status_of(lambda: decide_read("Patient/p1", None, access=reader)) == 403
    updater = scoped(A, grants=Grants.parse("user/Observation.u"))
    assert decide_update(obs(A), stored(obs(A)), AT, access=updater).status == 200
    assert status_of(lambda: decide_update(obs(A), None, AT, access=updater)) == 403  # would create


def test_a_created_resource_gets_the_tokens_accounts() -> None:
    change = decide_create(obs(), AT, access=scoped(A, B))
    assert accounts_of(change.document["resource"]) == [A, B]
    assert status_of(lambda: decide_create(obs(C), AT, access=scoped(A))) == 403  # not its account


def test_a_token_without_accounts_may_not_write() -> None:
    assert status_of(lambda: decide_create(obs(), AT, access=scoped())) == 403


def test_scoped_updates_add_held_accounts_keep_others_and_never_remove_their_own() -> None:
    previous = stored(obs(A, C))
    kept = decide_update(obs(), previous, AT, access=scoped(A, B))  # no meta.accounts: keep them
    assert accounts_of(kept.document["resource"]) == [A, C] and not kept.write
    added = decide_update(obs(A, B), previous, AT, access=scoped(A, B))
    assert accounts_of(added.document["resource"]) == [A, B, C]  # C is not its to remove
    assert status_of(lambda: decide_update(obs(C), previous, AT, access=scoped(A, B))) == 403  # drops A
    assert status_of(lambda: decide_update(obs(A, "Organization/x"), previous, AT, access=scoped(A))) == 403
    assert accounts_of(decide_update(obs(B), previous, AT, access=ADMIN).document["resource"]) == [B]


def test_members_inherit_their_patients_accounts_unless_turned_off() -> None:
    patient = stored({"resourceType": "Patient", "id": "p1", "meta": {"accounts": [{"reference": B}]}})
    state = {"Patient/p1": patient}
    change = decide_create(obs(A), AT, access=ADMIN, state=state)
    assert accounts_of(change.document["resource"]) == [A, B]
    assert {"reference": B} in change.document["resource"]["meta"]["compartment"]
    off = Access(Principal("root", admin=True), inherit=False)
    assert accounts_of(decide_create(obs(A), AT, access=off, state=state).document["resource"]) == [A]
    # the admin removes B: the write rule gives it back, as propagation would
    back = decide_update(obs(), stored(obs(A, B)), AT, access=ADMIN, state=state)
    assert accounts_of(back.document["resource"]) == [B]


def test_patients_never_inherit_from_linked_patients() -> None:
    other = stored({"resourceType": "Patient", "id": "p1", "meta": {"accounts": [{"reference": B}]}})
    linked = {"resourceType": "Patient", "id": "p2", "link": [{"other": {"reference": "Patient/p1"}}]}
    change = decide_create(linked, AT, "p2", access=ADMIN, state={"Patient/p1": other})
    assert accounts_of(change.document["resource"]) == []
