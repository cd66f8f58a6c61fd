"""SMART on FHIR scopes (v2 `system/Observation.rs`, v1 `user/*.read`): which interactions on which types.

Only `system/` and `user/` scopes grant anything: this server has no launch context, so `patient/` scopes
(which need one) grant nothing, and neither do v2 scopes narrowed by a query (`...rs?category=x`), which
this server cannot enforce. Unknown or malformed scopes are ignored (they grant nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Interaction(StrEnum):
    """The SMART v2 permission letters, in their canonical order."""

    CREATE = "c"
    READ = "r"
    UPDATE = "u"
    DELETE = "d"
    SEARCH = "s"


ALL = frozenset(Interaction)
V1 = {
    "read": frozenset({Interaction.READ, Interaction.SEARCH}),
    "write": frozenset({Interaction.CREATE, Interaction.UPDATE, Interaction.DELETE}),
    "*": ALL,
}
CONTEXTS = ("system", "user")


@dataclass(frozen=True)
class Scope:
    """One granting scope: `resource_type` is a type name or `*`."""

    resource_type: str
    interactions: frozenset[Interaction]


def parse_scope(raw: str) -> Scope | None:
    """The grant of one scope string, or None when it grants nothing here."""
    context, slash, rest = raw.partition("/")
    if not slash or context not in CONTEXTS or "?" in rest:
        return None
    resource_type, dot, permissions = rest.partition(".")
    if not dot or not resource_type or not (resource_type == "*" or resource_type.isalpha()):
        return None
    if permissions in V1:
        return Scope(resource_type, V1[permissions])
    order = "".join(i.value for i in Interaction)
    letters = [c for c in order if c in permissions]
    # v2: a non-empty subset of "cruds" written in that order
    if not permissions or "".join(letters) != permissions:
        return None
    return Scope(resource_type, frozenset(Interaction(c) for c in permissions))


@dataclass(frozen=True)
class Grants:
    """Everything a token's scopes allow."""

    scopes: tuple[Scope, ...] = ()

    @classmethod
    def parse(cls, value: object) -> Grants:
        """From a `scope` claim: a space-separated string (RFC 8693) or a list of strings."""
        if isinstance(value, str):
            raw = value.split()
        elif isinstance(value, list):
            raw = [s for s in value if isinstance(s, str)]
        else:
            raw = []
        return cls(tuple(s for s in (parse_scope(r) for r in raw) if s is not None))

    def allows(self, interaction: Interaction, resource_type: str) -> bool:
        return any(
            interaction in s.interactions and s.resource_type in ("*", resource_type) for s in self.scopes
        )

    def types_for(self, interaction: Interaction) -> frozenset[str] | None:
        """The types `interaction` is allowed on; None means every type."""
        found = {s.resource_type for s in self.scopes if interaction in s.interactions}
        return None if "*" in found else frozenset(found)
