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

    first = (await api.get("/Observation", params={"_compartment": "Patient/1", "_count": "10"})).json()
    seen, page, pages = ids(first), first, 1
    while (nxt := _link(page, "next")) is not None:
        page = (await api.get(nxt)).json()
        seen += ids(page)
        pages += 1

    assert first["total"] == 25
    assert pages == 3
    assert seen == [f"Observation/o{i:02d}" for i in range(25)]
    assert _link(first, "previous") is None
    assert "_offset=20" in _url(page, "self")
    previous = (await api.get(_url(page, "previous"))).json()
    assert ids(previous) == [f"Observation/o{i:02d}" for i in range(10, 20)]
    assert "_compartment=Patient/1" in _url(first, "self")


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
