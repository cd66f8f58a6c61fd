"""Reference parsing: the forms a Reference.reference takes in stored resources and transaction bundles."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from setaccounts.fhir.references import (
    RESOURCE_TYPES,
    format_reference,
    is_valid_id,
    parse_reference,
    parse_relative_reference,
    reference_of,
)

IDS = st.from_regex(r"[A-Za-z0-9\-\.]{1,64}", fullmatch=True)
TYPES = st.sampled_from(sorted(RESOURCE_TYPES))


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("Patient/123", ("Patient", "123")),
        ("Observation/a-b.c", ("Observation", "a-b.c")),
        ("Patient/123/_history/2", ("Patient", "123")),
        ("http://x/fhir/R4/Patient/123", ("Patient", "123")),
        ("https://example.org/Practitioner/p9", ("Practitioner", "p9")),
        ("http://x/fhir/R4/Patient/123/_history/7", ("Patient", "123")),
    ],
)
def test_parses_literal_references(ref: str, expected: tuple[str, str]) -> None:
    assert parse_reference(ref) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "#abc",  # contained
        "urn:uuid:0f2a7c3e-1111-4c2d-9d7e-8f1a2b3c4d5e",  # no mapping given
        "urn:oid:1.2.3",
        "Patient",
        "Patient/",
        "/Patient/1",
        "Patient?identifier=x|1",  # conditional
        "NotAType/1",
        "Resource/1",  # abstract
        "Bot/1",  # Medplum-only type, not R4
        "patient/1",
        "Patient/has_underscore",
        "Patient/" + "a" * 65,
        "Patient/1/_history/",
        "Patient/1/_history/bad_version",
        "fhir/Patient/1",  # a relative reference has exactly two segments
        "Patient/1/extra",
        "http://x/fhir/Patient",
        "Patient/1#frag",
    ],
)
def test_rejects_what_names_no_resource(ref: str) -> None:
    assert parse_reference(ref) is None


def test_urn_uuid_resolves_only_through_mapping() -> None:
    urn = "urn:uuid:0f2a7c3e-1111-4c2d-9d7e-8f1a2b3c4d5e"
    assert parse_reference(urn, {urn: "Patient/p1"}) == ("Patient", "p1")
    assert parse_reference(urn, {"urn:uuid:other": "Patient/p1"}) is None
    assert parse_reference(urn, {urn: "urn:uuid:loop"}) is None
    assert parse_reference(urn, {urn: "#contained"}) is None


def test_reference_of_reads_reference_elements_only() -> None:
    assert reference_of({"reference": "Patient/1", "display": "x"}) == ("Patient", "1")
    assert reference_of({"identifier": {"value": "1"}}) is None
    assert reference_of("Patient/1") is None
    assert reference_of({"reference": 1}) is None


@pytest.mark.parametrize("value", ["1", "a.b-C", "A" * 64])
def test_valid_ids(value: str) -> None:
    assert is_valid_id(value)


@pytest.mark.parametrize("value", ["", "a_b", "a b", "a/b", "A" * 65, "é"])
def test_invalid_ids(value: str) -> None:
    assert not is_valid_id(value)


def test_resource_types_are_concrete_r4_types() -> None:
    assert {"Patient", "Observation", "Encounter", "Parameters", "Bundle"} <= RESOURCE_TYPES
    assert not {"Resource", "DomainResource", "Project", "Reference"} & RESOURCE_TYPES


def test_format_reference_refuses_what_it_cannot_read_back() -> None:
    assert format_reference("Patient", "1") == "Patient/1"
    with pytest.raises(ValueError, match="resource type"):
        format_reference("Nope", "1")
    with pytest.raises(ValueError, match="id"):
        format_reference("Patient", "no/slash")


@given(TYPES, IDS)
def test_format_then_parse_round_trips(resource_type: str, resource_id: str) -> None:
    ref = format_reference(resource_type, resource_id)
    assert parse_reference(ref) == (resource_type, resource_id)
    assert parse_reference(f"http://h/fhir/R4/{ref}/_history/3") == (resource_type, resource_id)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("Patient/p1", ("Patient", "p1")),
        ("http://x/fhir/R4/Patient/p1", None),  # absolute
        ("Patient/p1/_history/2", None),  # versioned
        ("#contained", None),
        ("Nope/p1", None),
    ],
)
def test_a_relative_reference_is_exactly_type_slash_id(ref: str, expected: tuple[str, str] | None) -> None:
    assert parse_relative_reference(ref) == expected
