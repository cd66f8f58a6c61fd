"""Pure helpers for FHIR R4 references: parse `Type/id` out of the forms a Reference.reference can take.

The known resource types come from the generated compartment table (see docs/compartments.md), so the list
always matches the definitions package the compartment rules were built from.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

TABLE_FILE = "compartment_table.json"

_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/]")
_HISTORY = "_history"


@functools.cache
def load_table() -> dict[str, Any]:
    """The generated table, parsed once per process; it is static package data, not a remote source."""
    text = resources.files(__package__).joinpath(TABLE_FILE).read_text(encoding="utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


RESOURCE_TYPES: frozenset[str] = frozenset(load_table()["resourceTypes"])


def is_valid_id(value: str) -> bool:
    """FHIR `id`: 1-64 of letters, digits, `-` and `.`; anything else cannot name a stored resource."""
    return _ID.fullmatch(value) is not None


def is_resource_type(value: str) -> bool:
    return value in RESOURCE_TYPES


def format_reference(resource_type: str, resource_id: str) -> str:
    """The relative reference `Type/id`; refuses values that `parse_reference` would not read back."""
    if not is_resource_type(resource_type):
        raise ValueError(f"unknown resource type {resource_type!r}")
    if not is_valid_id(resource_id):
        raise ValueError(f"invalid FHIR id {resource_id!r}")
    return f"{resource_type}/{resource_id}"


def parse_reference(ref: str, urn_map: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """`(type, id)` of a literal reference, or None when it names no resource we could hold.

    Handles relative `Patient/1`, absolute `http://x/fhir/R4/Patient/1` and versioned `.../_history/2`.
    Contained (`#x`), conditional (`Patient?...`) and other `urn:` references give None; a `urn:uuid:`
    (e.g. a transaction bundle's fullUrl) is resolved only through `urn_map`, whose values are references.
    """
    if not ref or ref.startswith("#"):
        return None
    if ref.startswith("urn:"):
        target = urn_map.get(ref) if urn_map is not None else None
        return parse_reference(target) if target is not None and not target.startswith("urn:") else None
    return _parse_literal(ref)


def parse_relative_reference(ref: str) -> tuple[str, str] | None:
    """`(type, id)` of a reference written exactly `Type/id`, or None for anything else (absolute,
    versioned, contained, urn): what a query parameter or a cursor that names one resource may hold."""
    return parse_reference(ref) if ref.count("/") == 1 else None


def _parse_literal(ref: str) -> tuple[str, str] | None:
    segments = ref.split("/")
    absolute = _ABSOLUTE.match(ref) is not None
    if len(segments) >= 4 and segments[-2] == _HISTORY:
        if not is_valid_id(segments[-1]):
            return None
        segments = segments[:-2]
    if len(segments) < 2 or (len(segments) > 2 and not absolute):
        return None
    resource_type, resource_id = segments[-2], segments[-1]
    if is_resource_type(resource_type) and is_valid_id(resource_id):
        return resource_type, resource_id
    return None


def reference_of(value: Any, urn_map: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """`(type, id)` of a Reference element (a JSON object with a string `reference`), else None."""
    if not isinstance(value, dict):
        return None
    ref = value.get("reference")
    return parse_reference(ref, urn_map) if isinstance(ref, str) else None
