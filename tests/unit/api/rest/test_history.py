"""The pure part of history: a version as a `history` Bundle entry, and the paging links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from setaccounts.store.history import as_document, entry_of
from setaccounts.store.meta import prepare_write, tombstone
from setaccounts_api.rest.history import HistoryPage, history_bundle, history_entry

AT = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
BASE = "https://fhir.example.org/fhir/R4"


def test_a_kept_deletion_is_a_delete_entry_without_resource() -> None:
    live = prepare_write({"resourceType": "Patient", "id": "p1"}, None, AT).document
    dead = as_document(entry_of(tombstone(live, AT + timedelta(seconds=1))))

    entry = history_entry(dead, BASE)

    assert "resource" not in entry
    assert entry["fullUrl"] == f"{BASE}/Patient/p1"
    assert entry["request"] == {"method": "DELETE", "url": "Patient/p1"}
    assert entry["response"] == {
        "status": "204 No Content",
        "etag": 'W/"2"',
        "lastModified": "2024-05-01T12:00:01.250Z",
    }


def test_a_kept_version_reads_back_as_it_was_stored_without_internal_fields() -> None:
    live = prepare_write({"resourceType": "Patient", "id": "p1"}, None, AT).document
    live["marks"] = [{"target": "Patient/p1", "seq": 1, "command_id": "c", "changed": True}]

    kept = entry_of(live)

    assert kept["_id"] == "Patient/p1/1" and "marks" not in kept and "members_of" not in kept
    assert as_document(kept)["resource"] == live["resource"]


def test_next_link_only_when_older_versions_follow() -> None:
    docs = [prepare_write({"resourceType": "Patient", "id": "p1"}, None, AT).document]
    docs[0]["version"] = 5

    more = history_bundle("Patient/p1", HistoryPage(5, docs, more=True), BASE, 1, None)
    last = history_bundle("Patient/p1", HistoryPage(5, docs, more=False), BASE, 1, 6)

    links = {link["relation"]: link["url"] for link in more["link"]}
    assert links["next"] == f"{BASE}/Patient/p1/_history?_count=1&_cursor=5"
    assert links["self"] == f"{BASE}/Patient/p1/_history?_count=1"
    assert "next" not in {link["relation"] for link in last["link"]}
    assert more["type"] == "history" and more["total"] == 5
