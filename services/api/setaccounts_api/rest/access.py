"""What a verified caller may read and write, as pure decisions on stored documents.

- Scopes decide which interactions on which types a token may perform (403 `forbidden` otherwise).
- A non-admin token sees only resources whose `compartments` (= `meta.compartment`) hold one of its
  accounts; anything else answers 404 as if it did not exist, never 403.
- A write by a non-admin token: a created resource gets the token's accounts; the token may add accounts
  it holds, but may not add others, nor remove its own; accounts it does not hold stay as they were (a body
  without `meta.accounts` keeps the stored ones). The written resource must stay visible to it.
- Inherited accounts (any caller, unless turned off): a resource in a patient's compartment gains that
  patient's current accounts on every ordinary write, by the rule propagation applies to members.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from setaccounts.auth.principal import Principal
from setaccounts.auth.scopes import Interaction
from setaccounts.fhir.compartments import compartments_of
from setaccounts.fhir.outcomes import FhirError, not_found
from setaccounts.store.meta import Document, Resource, accounts_of, reference_list
from setaccounts.store.propagation import member_accounts

PATIENT = "Patient"
VERBS = {
    Interaction.CREATE: "create",
    Interaction.READ: "read",
    Interaction.UPDATE: "update",
    Interaction.DELETE: "delete",
    Interaction.SEARCH: "search",
}


def forbidden(diagnostics: str) -> FhirError:
    return FhirError(403, "forbidden", diagnostics)


def live(document: Document | None) -> bool:
    return document is not None and not document.get("deleted")


def patients_of(resource: Resource) -> list[str]:
    """The patients whose accounts `resource` inherits: the Patient compartments it is in. A Patient
    never inherits, neither from itself nor from patients it links to."""
    if resource.get("resourceType") == PATIENT:
        return []
    return [c for c in compartments_of(resource) if c.startswith(f"{PATIENT}/")]


def with_account_list(resource: Resource, accounts: list[str]) -> Resource:
    """A copy of `resource` whose `meta.accounts` is `accounts` (removed when empty)."""
    meta = dict(resource.get("meta") or {})
    if accounts:
        meta["accounts"] = reference_list(accounts)
    else:
        meta.pop("accounts", None)
    copied = {key: value for key, value in resource.items() if key != "meta"}
    if meta:
        copied["meta"] = meta
    return copied


@dataclass(frozen=True)
class Access:
    """One request's caller and the write rule's settings, applied to every interaction it performs."""

    principal: Principal
    inherit: bool = True

    def allow(self, interaction: Interaction, resource_type: str) -> None:
        if not self.principal.may(interaction, resource_type):
            raise forbidden(
                f"the token's scopes do not allow {VERBS[interaction]} on {resource_type} "
                f"(needs system/{resource_type}.{interaction.value} or user/{resource_type}."
                f"{interaction.value})"
            )

    def sees(self, document: Document) -> bool:
        compartments: list[str] = document.get("compartments") or []
        return self.principal.sees(compartments)

    def check_visible(self, ref: str, stored: Document | None) -> None:
        """404 for a stored resource (or tombstone) the caller may not see, exactly as if it were missing."""
        if stored is not None and not self.sees(stored):
            raise not_found(ref)

    def search_accounts(self) -> tuple[str, ...] | None:
        """The compartments a search is confined to; None means no confinement (admins)."""
        return None if self.principal.admin else self.principal.accounts

    def patients_to_read(self, resource: Resource) -> list[str]:
        return patients_of(resource) if self.inherit else []

    def shape(self, resource: Resource, previous: Document | None, state: Mapping[str, Any]) -> Resource:
        """The resource to write: the caller's account rules, then inherited accounts from `state`."""
        ref = f"{resource['resourceType']}/{resource.get('id')}"
        if not live(previous):
            previous = None
        self.check_visible(ref, previous)
        accounts = self._accounts(resource, previous)
        for patient in self.patients_to_read(resource):
            stored = state.get(patient)
            if stored is not None and not stored.get("deleted"):
                accounts = member_accounts(accounts, accounts_of(stored["resource"]), (), ())
        if accounts == accounts_of(resource):
            return resource
        return with_account_list(resource, accounts)

    def _accounts(self, resource: Resource, previous: Document | None) -> list[str]:
        given = accounts_of(resource)
        if self.principal.admin:
            return given
        held = self.principal.accounts
        before = accounts_of(previous["resource"]) if previous is not None else []
        has_accounts = "accounts" in (resource.get("meta") or {})
        wanted = given if has_accounts else before
        added = [a for a in wanted if a not in before and a not in held]
        if added:
            raise forbidden(f"the token may not give a resource accounts it does not hold: {added[0]}")
        removed = [a for a in before if a in held and a not in wanted]
        if removed:
            raise forbidden(f"the token may not remove its own account {removed[0]} from a resource")
        kept = [a for a in before if a not in held and a not in wanted]  # not the token's to change
        if previous is None:
            return list(dict.fromkeys([*wanted, *held]))
        return list(dict.fromkeys([*wanted, *kept]))

    def check_written(self, document: Document) -> None:
        """A non-admin may not write a resource out of its own sight."""
        if not self.sees(document):
            raise forbidden(
                "the written resource would not be in any of the token's accounts"
                if self.principal.accounts
                else "the token holds no accounts, so it may not write resources"
            )


UNRESTRICTED = Access(Principal(subject="system", admin=True), inherit=False)
"""Everything, nothing inherited: for code that writes on the server's own behalf and for tests."""
