"""Search over HTTP: `_id`, `_compartment`, `_type`, paging links, lenient/strict handling, tombstones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

Public = Callable[[dict[str, Any]], None]


def observation(oid: str, *subjects: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"text": oid},
    }
    if subjects:
        body["subject"] = {"reference": subjects[0]}
        body["performer"] = [{"reference": s} for s in subjects[1:]]
    return body


async def put_all(api: httpx.AsyncClient, *resources: dict[str, Any]) -> None:
    for resource in resources:
        response = await api.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert response.status_code in (200, 201), response.text


def ids(bundle: dict[str, Any]) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])]


async def test_search_by_id(api: httpx.AsyncClient, assert_public: Public) -> None:
    await put_all(api, observation("a"), observation("b"), observation("c"))

    response = await api.get("/Observation", params={"_id": "c,a,zz"})

    assert response.status_code == 200
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 2
    assert ids(bundle) == ["Observation/a", "Observation/c"]
    for entry in bundle["entry"]:
        assert entry["fullUrl"] == f"http://testserver/fhir/R4/Observation/{entry['resource']['id']}"
        assert entry["search"] == {"mode": "match"}
        assert_public(entry["resource"])


async def test_an_observation_is_in_the_compartment_of_subject_and_performer(api: httpx.AsyncClient) -> None:
    await put_all(
        api,
        {"resourceType": "Patient", "id": "1"},
        {"resourceType": "Patient", "id": "2"},
        observation("o1", "Patient/1", "Patient/2"),
        observation("o2", "Patient/2"),
    )

    one = (await api.get("/Observation", params={"_compartment": "Patient/1"})).json()
    two = (await api.get("/Observation", params={"_compartment": "Patient/2"})).json()
    either = (await api.get("/Observation", params={"_compartment": "Patient/1,Patient/3"})).json()

    assert ids(one) == ["Observation/o1"]
    assert ids(two) == ["Observation/o1", "Observation/o2"]
    assert ids(either) == ["Observation/o1"]
    stored = (await api.get("/Observation/o1")).json()
    assert stored["meta"]["compartment"] == [{"reference": "Patient/1"}, {"reference": "Patient/2"}]


async def test_system_search_by_compartment_and_type(api: httpx.AsyncClient) -> None:
    condition = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/123"}}
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "subject": {"reference": "Patient/123"},
    }
    await put_all(
        api,
        {"resourceType": "Patient", "id": "123"},
        observation("o1", "Patient/123"),
        observation("other", "Patient/9"),
        condition,
        encounter,
    )

    typed = (
        await api.get("", params={"_type": "Observation,Condition", "_compartment": "Patient/123"})
    ).json()
    everything = (await api.get("", params={"_compartment": "Patient/123"})).json()
    by_id = (await api.get("", params={"_id": "o1,c1"})).json()

    assert ids(typed) == ["Condition/c1", "Observation/o1"]
    assert typed["total"] == 2
    assert ids(everything) == ["Condition/c1", "Encounter/e1", "Observation/o1", "Patient/123"]
    assert ids(by_id) == ["Condition/c1", "Observation/o1"]


async def test_paging_links_walk_every_match_once(api: httpx.AsyncClient) -> None:
    await put_all(api, *(observation(f"o{i:02d}", "Patient/1") for i in range(25)))

    params = {"_compartment": "Patient/1", "_count": "10", "_total": "accurate"}
    first = (await api.get("/Observation", params=params)).json()
    seen, page, pages = ids(first), first, 1
    while (nxt := _link(page, "next")) is not None:
        page = (await api.get(nxt)).json()
        seen += ids(page)
        pages += 1

    assert first["total"] == 25
    assert pages == 3
    assert seen == [f"Observation/o{i:02d}" for i in range(25)]
    assert _link(first, "previous") is None
    assert "_cursor=" in _url(first, "next")
    assert "_offset" not in _url(first, "next")
    assert "_compartment=Patient/1" in _url(first, "self")
    assert "_total=accurate" in _url(first, "next")
    again = (await api.get(_url(page, "self"))).json()
    assert ids(again) == ids(page)


async def test_paging_sees_every_resource_once_while_resources_are_created(api: httpx.AsyncClient) -> None:
    """Keyset paging: between page fetches, one resource is created before the read position (with
    `_offset` it pushed everything back by one: a repeat) and one just after it (it must be found)."""
    originals = [f"Observation/o{i:02d}" for i in range(0, 30, 2)]
    await put_all(api, *(observation(ref.split("/")[1]) for ref in originals))

    page = (await api.get("/Observation", params={"_count": "4"})).json()
    seen = ids(page)
    behind: list[str] = []
    ahead: list[str] = []
    while (nxt := _link(page, "next")) is not None:
        last = seen[-1].split("/")[1]
        behind.append(f"Observation/a{len(behind)}")  # sorts before every page
        ahead.append(f"Observation/{last}x")  # sorts right after the page just read
        await put_all(api, *(observation(ref.split("/")[1]) for ref in (behind[-1], ahead[-1])))
        page = (await api.get(nxt)).json()
        seen += ids(page)

    assert len(seen) == len(set(seen)), "a resource was returned twice"
    assert set(originals) <= set(seen), "a resource was skipped"
    assert set(ahead) <= set(seen), "a resource created after the read position was missed"
    assert not set(behind) & set(seen)
    assert seen == sorted(seen)


async def test_total_is_given_when_free_or_asked_for(api: httpx.AsyncClient) -> None:
    await put_all(api, *(observation(f"o{i}") for i in range(5)))

    whole = (await api.get("/Observation", params={"_count": "10"})).json()
    paged = (await api.get("/Observation", params={"_count": "2"})).json()
    accurate = (await api.get("/Observation", params={"_count": "2", "_total": "accurate"})).json()
    none = (await api.get("/Observation", params={"_count": "10", "_total": "none"})).json()
    bad = await api.get("/Observation", params={"_total": "some"})

    assert whole["total"] == 5
    assert "total" not in paged
    assert len(paged["entry"]) == 2
    assert accurate["total"] == 5
    assert "total" not in none
    assert len(none["entry"]) == 5
    assert bad.status_code == 400


async def test_offset_links_still_work_and_continue_by_cursor(api: httpx.AsyncClient) -> None:
    await put_all(api, *(observation(f"o{i}") for i in range(5)))

    page = (await api.get("/Observation", params={"_count": "2", "_offset": "2"})).json()
    rest = (await api.get(_url(page, "next"))).json()

    assert ids(page) == ["Observation/o2", "Observation/o3"]
    assert "_cursor=" in _url(page, "next")
    assert ids(rest) == ["Observation/o4"]
    assert _link(rest, "next") is None


@pytest.mark.parametrize("cursor", ["not-a-cursor!", "UGF0aWVudC8x"])  # the second is Patient/1
async def test_a_cursor_from_elsewhere_is_400(api: httpx.AsyncClient, cursor: str) -> None:
    response = await api.get("/Observation", params={"_cursor": cursor})

    assert response.status_code == 400
    assert "_cursor" in response.json()["issue"][0]["diagnostics"]


async def test_system_search_by_bare_id_finds_it_under_any_type(api: httpx.AsyncClient) -> None:
    await put_all(api, observation("same"), {"resourceType": "Patient", "id": "same"}, observation("other"))

    bundle = (await api.get("", params={"_id": "same"})).json()
    typed = (await api.get("", params={"_id": "same", "_type": "Patient"})).json()

    assert ids(bundle) == ["Observation/same", "Patient/same"]
    assert ids(typed) == ["Patient/same"]


def _link(bundle: dict[str, Any], relation: str) -> str | None:
    for link in bundle["link"]:
        if link["relation"] == relation:
            url: str = link["url"]
            return url
    return None


def _url(bundle: dict[str, Any], relation: str) -> str:
    url = _link(bundle, relation)
    assert url is not None, f"no {relation} link"
    return url


async def test_count_default_max_and_zero(api: httpx.AsyncClient) -> None:
    await put_all(api, *(observation(f"o{i}") for i in range(3)))

    default = (await api.get("/Observation")).json()
    capped = (await api.get("/Observation", params={"_count": "5000"})).json()
    only_total = (await api.get("/Observation", params={"_count": "0"})).json()

    assert "_count=100" in _url(default, "self")
    assert "_count=1000" in _url(capped, "self")
    assert only_total["total"] == 3
    assert "entry" not in only_total


async def test_deleted_resources_never_appear(api: httpx.AsyncClient) -> None:
    await put_all(api, observation("a", "Patient/1"), observation("b", "Patient/1"))
    assert (await api.delete("/Observation/a")).status_code == 204

    for params in ({}, {"_id": "a,b"}, {"_compartment": "Patient/1"}):
        bundle = (await api.get("/Observation", params=params)).json()
        assert ids(bundle) == ["Observation/b"], params
    assert ids((await api.get("", params={"_compartment": "Patient/1"})).json()) == ["Observation/b"]


async def test_unknown_parameters_are_ignored_unless_strict(api: httpx.AsyncClient) -> None:
    await put_all(api, observation("a"))

    lenient = await api.get("/Observation", params={"code": "x", "_id": "a"})
    strict = await api.get("/Observation", params={"code": "x"}, headers={"Prefer": "handling=strict"})

    assert lenient.status_code == 200
    assert ids(lenient.json()) == ["Observation/a"]
    assert "code=" not in _url(lenient.json(), "self")
    assert strict.status_code == 400
    assert "'code'" in strict.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/Observation", {"_count": "many"}),
        ("/Observation", {"_offset": "-1"}),
        ("/Observation", {"_compartment": "nobody"}),
        ("/Observation", {"_id": "not valid!"}),
        ("", {"_type": "Spaceship"}),
        ("/Spaceship", {}),
    ],
)
async def test_bad_search_parameters_are_400(
    api: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    response = await api.get(path, params=params)

    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
