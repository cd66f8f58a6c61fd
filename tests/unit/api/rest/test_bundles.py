"""The pure part of Bundle processing: parsing, urn:uuid resolution, decisions and the response Bundle."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from setaccounts.fhir.outcomes import FhirError
from setaccounts.store.meta import prepare_write, tombstone
from setaccounts_api.fhir_body import check_resource
from setaccounts_api.rest.bundles import (
    Entry,
    assign_ids,
    check_unique_targets,
    parse_bundle,
    parse_url,
    plan_transaction,
    read_targets,
    require_all,
    resolve_entries,
    response_bundle,
    rewrite_references,
)

AT = datetime(2024, 5, 1, tzinfo=UTC)
BASE = "http://h/fhir/R4"


def bundle(kind: str, *entries: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def entry(method: str, url: str, resource: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"request": {"method": method, "url": url, **extra}}
    if resource is not None:
        item["resource"] = resource
    return item


def entries_of(*items: dict[str, Any]) -> list[Entry]:
    return require_all(parse_bundle(bundle("transaction", *items), check_resource))


def counter() -> Any:
    numbers = itertools.count(1)
    return lambda: f"id{next(numbers)}"


def stored(resource: dict[str, Any]) -> dict[str, Any]:
    return prepare_write(resource, None, AT).document


# --- parsing ---------------------------------------------------------------------------------------------


def test_parse_keeps_good_entries_and_locates_bad_ones() -> None:
    parsed = parse_bundle(
        bundle(
            "batch",
            entry("POST", "Patient", {"resourceType": "Patient"}),
            entry("PUT", "Patient/1", {"resourceType": "Patient", "id": "2"}),
            entry("GET", "Patient/1/_history/3"),
            "not an entry",
            entry("DELETE", "Patient/1", ifMatch='W/"4"'),
        ),
        check_resource,
    )

    assert parsed.kind == "batch"
    first, second, third, fourth, fifth = parsed.entries
    assert isinstance(first, Entry) and first.method == "POST" and first.resource_id is None
    assert isinstance(second, FhirError) and second.diagnostics.startswith("Bundle.entry[1]: ")
    assert isinstance(third, Entry) and third.ref == "Patient/1" and third.version == 3
    assert isinstance(fourth, FhirError) and fourth.expression == ["Bundle.entry[3]", "request"]
    assert isinstance(fifth, Entry) and fifth.if_match == 4


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([], "takes a Bundle"),
        ({"resourceType": "Bundle", "type": "searchset"}, "transaction' or 'batch"),
        ({"resourceType": "Bundle", "type": "batch", "entry": "x"}, "array"),
    ],
)
def test_parse_refuses_what_is_not_a_transaction_or_batch(body: Any, says: str) -> None:
    with pytest.raises(FhirError) as caught:
        parse_bundle(body, check_resource)
    assert caught.value.status == 400
    assert says in caught.value.diagnostics


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("POST", "Patient", ("Patient", None, None)),
        ("POST", "/Patient/", ("Patient", None, None)),
        ("PUT", "Patient/a.b-c", ("Patient", "a.b-c", None)),
        ("GET", "Observation/1/_history/2", ("Observation", "1", 2)),
    ],
)
def test_parse_url(method: str, url: str, expected: tuple[str, str | None, int | None]) -> None:
    assert parse_url(method, url) == expected


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "Patient/1"),
        ("PUT", "Patient"),
        ("DELETE", "Patient/1/_history/1"),
        ("GET", "Patient/1/_history/x"),
        ("GET", "Spaceship/1"),
        ("PUT", "Patient/bad id"),
        ("GET", "Patient?name=x"),
        ("GET", "http://elsewhere/fhir/Patient/1"),
    ],
)
def test_parse_url_refusals(method: str, url: str) -> None:
    with pytest.raises(FhirError) as caught:
        parse_url(method, url)
    assert caught.value.status == 400


def test_require_all_raises_the_first_bad_entry() -> None:
    parsed = parse_bundle(
        bundle("transaction", entry("POST", "Patient", {"resourceType": "Patient"}), entry("GET", "Nope/1")),
        check_resource,
    )

    with pytest.raises(FhirError, match=r"Bundle\.entry\[1\]"):
        require_all(parsed)


# --- urn:uuid resolution ---------------------------------------------------------------------------------


def test_urns_map_to_assigned_and_put_ids_and_are_rewritten_everywhere() -> None:
    entries = entries_of(
        {**entry("POST", "Patient", {"resourceType": "Patient", "id": "ignored"}), "fullUrl": "urn:uuid:p"},
        {
            **entry(
                "PUT",
                "Encounter/e1",
                {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "urn:uuid:p"}},
            ),
            "fullUrl": "urn:uuid:e",
        },
        entry(
            "POST",
            "Observation",
            {
                "resourceType": "Observation",
                "subject": {"reference": "urn:uuid:p"},
                "encounter": {"reference": "urn:uuid:e"},
                "component": [
                    {"extension": [{"valueReference": {"reference": "urn:uuid:p", "display": "x"}}]}
                ],
                "focus": [{"reference": "Patient/plain"}],
            },
        ),
    )

    ids, urn_map = assign_ids(entries, counter())
    resolved = resolve_entries(entries, ids, urn_map)

    assert ids == {0: "id1", 2: "id2"}
    assert urn_map == {"urn:uuid:p": "Patient/id1", "urn:uuid:e": "Encounter/e1"}
    assert resolved[0].resource == {"resourceType": "Patient", "id": "id1"}
    assert resolved[1].resource is not None and resolved[1].resource["subject"] == {
        "reference": "Patient/id1"
    }
    observation = resolved[2].resource
    assert observation is not None and observation["id"] == "id2"
    assert observation["encounter"] == {"reference": "Encounter/e1"}
    assert observation["component"][0]["extension"][0]["valueReference"] == {
        "reference": "Patient/id1",
        "display": "x",
    }
    assert observation["focus"] == [{"reference": "Patient/plain"}]
    assert entries[2].resource is not None and entries[2].resource["subject"] == {"reference": "urn:uuid:p"}


def test_a_dangling_urn_and_a_reused_full_url_are_400() -> None:
    dangling = entries_of(
        entry(
            "POST", "Observation", {"resourceType": "Observation", "subject": {"reference": "urn:uuid:gone"}}
        )
    )
    reused = entries_of(
        {**entry("POST", "Patient", {"resourceType": "Patient"}), "fullUrl": "urn:uuid:a"},
        {**entry("POST", "Patient", {"resourceType": "Patient"}), "fullUrl": "urn:uuid:a"},
    )

    ids, urn_map = assign_ids(dangling, counter())
    with pytest.raises(FhirError, match="urn:uuid:gone"):
        resolve_entries(dangling, ids, urn_map)
    with pytest.raises(FhirError, match=r"Bundle\.entry\[1\].*two entries"):
        assign_ids(reused, counter())


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=20,
)


@given(JSON)
def test_rewriting_without_urns_changes_nothing(value: Any) -> None:
    unresolved: list[str] = []
    assert rewrite_references(value, {"urn:uuid:x": "Patient/1"}, unresolved) == value
    assert unresolved == []


# --- deciding --------------------------------------------------------------------------------------------


def test_a_resource_may_be_changed_only_once() -> None:
    entries = entries_of(
        entry("PUT", "Patient/1", {"resourceType": "Patient", "id": "1"}), entry("DELETE", "Patient/1")
    )

    with pytest.raises(FhirError, match=r"Bundle\.entry\[1\].*only once"):
        check_unique_targets(entries)


def test_plan_runs_deletes_then_writes_then_reads() -> None:
    old = stored({"resourceType": "Patient", "id": "1"})
    doomed = stored({"resourceType": "Patient", "id": "2"})
    entries = entries_of(
        entry("GET", "Patient/1"),
        entry("PUT", "Patient/1", {"resourceType": "Patient", "id": "1", "gender": "male"}, ifMatch='W/"1"'),
        entry("DELETE", "Patient/2"),
        entry("PUT", "Patient/3", {"resourceType": "Patient", "id": "3"}),
        entry("PUT", "Patient/4", {"resourceType": "Patient", "id": "4"}),
    )
    state = {
        "Patient/1": old,
        "Patient/2": doomed,
        "Patient/4": stored({"resourceType": "Patient", "id": "4"}),
    }

    assert read_targets(entries) == ["Patient/1", "Patient/1", "Patient/2", "Patient/3", "Patient/4"]
    changes = plan_transaction(entries, state, AT)

    assert [changes[i].status for i in range(5)] == [200, 200, 204, 201, 200]
    assert changes[0].document["resource"]["gender"] == "male"  # the read sees the update
    assert changes[1].document["version"] == 2 and changes[1].write
    assert changes[2].document["deleted"] is True
    assert not changes[4].write  # unchanged content


@pytest.mark.parametrize(
    ("item", "status"),
    [
        (entry("DELETE", "Patient/missing"), 404),
        (entry("GET", "Patient/missing"), 404),
        (entry("GET", "Patient/dead"), 410),
        (entry("GET", "Patient/1/_history/7"), 404),
        (entry("PUT", "Patient/1", {"resourceType": "Patient", "id": "1"}, ifMatch='W/"2"'), 412),
        (entry("DELETE", "Patient/1", ifMatch='W/"2"'), 412),
    ],
)
def test_plan_fails_at_the_entry_that_cannot_be_done(item: dict[str, Any], status: int) -> None:
    live = stored({"resourceType": "Patient", "id": "1"})
    dead = tombstone(stored({"resourceType": "Patient", "id": "dead"}), AT)
    entries = entries_of(entry("POST", "Patient", {"resourceType": "Patient"}), item)

    with pytest.raises(FhirError) as caught:
        plan_transaction(entries, {"Patient/1": live, "Patient/dead": dead}, AT)

    assert caught.value.status == status
    assert caught.value.diagnostics.startswith("Bundle.entry[1]: ")


def test_deleting_a_deleted_resource_changes_nothing() -> None:
    dead = tombstone(stored({"resourceType": "Patient", "id": "1"}), AT)

    [change] = plan_transaction(entries_of(entry("DELETE", "Patient/1")), {"Patient/1": dead}, AT).values()

    assert change.status == 204
    assert not change.write


# --- answering -------------------------------------------------------------------------------------------


def test_response_bundle_lines() -> None:
    entries = entries_of(
        entry("POST", "Patient", {"resourceType": "Patient"}),
        entry("GET", "Patient/1"),
        entry("DELETE", "Patient/2"),
    )
    ids, urn_map = assign_ids(entries, counter())
    state = {
        "Patient/1": stored({"resourceType": "Patient", "id": "1"}),
        "Patient/2": stored({"resourceType": "Patient", "id": "2"}),
    }
    changes = plan_transaction(resolve_entries(entries, ids, urn_map), state, AT)
    error = FhirError(404, "not-found", "nope")

    answer = response_bundle(
        "batch",
        [(e.method, changes[e.index]) for e in entries] + [(None, error)],
        BASE,
        with_resources=False,
    )

    assert answer["type"] == "batch-response"
    created, read, deleted, failed = answer["entry"]
    assert created["response"] == {
        "status": "201 Created",
        "location": "Patient/id1/_history/1",
        "etag": 'W/"1"',
        "lastModified": "2024-05-01T00:00:00.000Z",
    }
    assert created["fullUrl"] == f"{BASE}/Patient/id1"
    assert "resource" not in created
    assert read["resource"]["id"] == "1"
    assert deleted == {"response": {"status": "204 No Content"}}
    assert failed["response"]["status"] == "404 Not Found"
    assert failed["response"]["outcome"]["issue"][0]["diagnostics"] == "nope"


def test_the_entry_cap_is_checked_before_any_entry_is_parsed() -> None:
    """50,000 entries once held the store for minutes: over the cap the Bundle is refused as a whole, and
    an entry that would fail on its own does not hide it."""
    entries = [entry("POST", "Basic", {"resourceType": "Basic"}) for _ in range(50_000)]
    parse_bundle(bundle("batch", *entries[:10]), check_resource, max_entries=10)
    for kind in ("transaction", "batch"):
        with pytest.raises(FhirError) as refused:
            parse_bundle(bundle(kind, {"junk": True}, *entries), check_resource, max_entries=10_000)
        assert (refused.value.status, refused.value.code) == (413, "too-costly")
        assert refused.value.expression == ["Bundle.entry"]
        assert "50001 entries" in refused.value.diagnostics
