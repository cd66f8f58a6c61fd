"""The search query shapes and the cursor: pure logic, no store."""

from __future__ import annotations

import pytest

from setaccounts.fhir.outcomes import FhirError
from setaccounts_api.rest.queries import SearchQuery, scans
from setaccounts_api.routes.search import decode_cursor, encode_cursor


def test_a_cursor_round_trips_and_is_url_safe() -> None:
    cursor = encode_cursor("Observation/a-b.c")

    assert decode_cursor(cursor, "Observation") == "Observation/a-b.c"
    assert decode_cursor(cursor, None) == "Observation/a-b.c"
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("raw", ["%%%", encode_cursor("no-slash"), encode_cursor("Patient/1")])
def test_a_cursor_of_another_kind_or_type_is_refused(raw: str) -> None:
    with pytest.raises(FhirError) as refused:
        decode_cursor(raw, "Observation")
    assert refused.value.status == 400


def test_types_are_read_one_after_another_from_the_cursor() -> None:
    query = SearchQuery(types=("Patient", "Condition", "Observation"))

    wheres = [scan.where for scan in scans(query, "Observation/x")]

    assert wheres == [
        {"type": "Observation", "deleted": False, "_id": {"$gt": "Observation/x", "$lt": "Observation0"}},
        {"type": "Patient", "deleted": False, "_id": {"$lt": "Patient0"}},
    ]


def test_a_compartment_search_of_one_type_is_an_id_range_of_that_compartment() -> None:
    query = SearchQuery(
        types=("Observation",), compartments=(("Patient/2", "Patient/1"), ("Organization/a",))
    )

    wheres = [scan.where for scan in scans(query, None)]

    assert wheres == [
        {"compartments": value, "deleted": False, "_id": {"$gt": "Observation/", "$lt": "Observation0"}}
        for value in ("Patient/1", "Patient/2")
    ]


def test_the_other_groups_are_checked_on_each_document() -> None:
    query = SearchQuery(types=("Observation",), compartments=(("Patient/1",), ("Organization/a",)))
    doc = {"_id": "Observation/o", "type": "Observation", "deleted": False, "compartments": ["Patient/1"]}

    assert not query.admits(doc)
    assert query.admits({**doc, "compartments": ["Patient/1", "Organization/a"]})
    assert not query.admits({**doc, "compartments": ["Patient/1", "Organization/a"], "deleted": True})


def test_bare_ids_are_looked_up_under_every_type() -> None:
    keys = SearchQuery(ids=(("x",),), bare_ids=True).id_keys()[0]

    assert "Patient/x" in keys and "Observation/x" in keys
    assert all(key.endswith("/x") for key in keys)
