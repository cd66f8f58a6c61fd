"""Property: for random resources, accounts and queries, a scoped token never receives a resource outside
its accounts, and `total`, the pages and the paging links agree with what it may see."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.asynchronous.database import AsyncDatabase

from tests.helpers.auth import ClientAs, Issuer
from tests.helpers.resources import Seed

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ACCOUNTS = ("Organization/a", "Organization/b", "Organization/c")
PATIENTS = 3

account_sets = st.lists(st.sampled_from(ACCOUNTS), max_size=2, unique=True)
worlds = st.tuples(
    st.lists(account_sets, min_size=PATIENTS, max_size=PATIENTS),  # each patient's accounts
    st.lists(st.tuples(st.integers(0, PATIENTS - 1), account_sets), max_size=8),  # observations
)
queries = st.fixed_dictionaries(
    {
        "path": st.sampled_from(["", "/Observation", "/Patient"]),
        "_type": st.none() | st.sampled_from(["Observation", "Patient", "Observation,Patient"]),
        "_compartment": st.none() | st.sampled_from([*ACCOUNTS, "Patient/p0", "Patient/p1"]),
        "_count": st.integers(1, 4),
    }
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(world=worlds, held=account_sets, query=queries)
async def test_a_scoped_token_never_sees_outside_its_accounts(
    issuer: Issuer,
    client_as: ClientAs,
    seed: Seed,
    db: AsyncDatabase[dict[str, Any]],
    world: tuple[list[list[str]], list[tuple[int, list[str]]]],
    held: list[str],
    query: dict[str, Any],
) -> None:
    await db.resources.delete_many({})
    patient_accounts, observations = world
    run = uuid.uuid4().hex[:6]
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": f"p{i}", "meta": {"accounts": [{"reference": a} for a in own]}}
        for i, own in enumerate(patient_accounts)
    ]
    resources += [
        {
            "resourceType": "Observation",
            "id": f"{run}-o{n}",
            "subject": {"reference": f"Patient/p{p}"},
            "meta": {"accounts": [{"reference": a} for a in own]},
        }
        for n, (p, own) in enumerate(observations)
    ]
    await seed(*resources)

    stored = await db.resources.find({}).to_list()
    path_type = query["path"].lstrip("/") or None
    types = [path_type] if path_type else (query["_type"].split(",") if query["_type"] else None)
    expected = {
        d["_id"]
        for d in stored
        if set(d["compartments"]) & set(held)
        and (types is None or d["type"] in types)
        and (query["_compartment"] is None or query["_compartment"] in d["compartments"])
    }
    params = {k: v for k, v in query.items() if k != "path" and v is not None}
    if path_type:
        params.pop("_type", None)
    params["_total"] = "accurate"  # on every page: the count must be confined too

    async with client_as(issuer.token("scoped", accounts=held)) as client:
        seen: list[str] = []
        response = await client.get(query["path"], params=params)
        while True:
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["total"] == len(expected)
            for entry in body.get("entry", []):
                resource = entry["resource"]
                compartment = {c["reference"] for c in resource["meta"].get("compartment", [])}
                assert compartment & set(held), f"{resource['id']} is outside {held}"
                seen.append(f"{resource['resourceType']}/{resource['id']}")
            following = [link["url"] for link in body["link"] if link["relation"] == "next"]
            if not following:
                break
            response = await client.get(following[0])
        assert sorted(seen) == sorted(expected)
        for document in stored:
            read = await client.get(f"/{document['_id']}")
            assert read.status_code == (200 if set(document["compartments"]) & set(held) else 404)
