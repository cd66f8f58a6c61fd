"""Model-based: random patients, shared members and command sequences go through the real pipeline, and
the store must equal a plain model of the rule applied command by command (target replaced; members gain
the target's accounts and lose the ones it gave up unless another of their patients holds them)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import SetAccountsCommand
from setaccounts.settings import Settings
from setaccounts.store.propagation import member_accounts
from tests.helpers.jobs import wait_job
from tests.helpers.publishing import send_command
from tests.helpers.resources import Seed

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PATIENTS, ACCOUNTS = 3, ("Organization/a", "Organization/b", "Organization/c")

observations = st.lists(
    st.tuples(st.integers(0, PATIENTS - 1), st.none() | st.integers(0, PATIENTS - 1)), min_size=1, max_size=8
)
commands = st.lists(
    st.tuples(st.integers(0, PATIENTS - 1), st.lists(st.sampled_from(ACCOUNTS), max_size=3), st.booleans()),
    min_size=1,
    max_size=4,
)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(graph=observations, steps=commands)
# A member shared by two patients keeps an account the other patient still holds.
@example(
    graph=[(0, 1), (1, None)],
    steps=[(0, ["Organization/a"], True), (1, ["Organization/a"], True), (1, [], True)],
)
# ... and loses it once neither holds it; accounts the target never had stay.
@example(
    graph=[(0, 1)],
    steps=[
        (1, ["Organization/c"], False),
        (0, ["Organization/a", "Organization/b"], True),
        (1, ["Organization/b"], True),
        (0, ["Organization/c"], True),
    ],
)
async def test_store_equals_the_rule_applied_in_order(
    settings: Settings,
    propagator: None,
    db: AsyncDatabase[dict[str, Any]],
    seed: Seed,
    graph: list[tuple[int, int | None]],
    steps: list[tuple[int, list[str], bool]],
) -> None:
    run = uuid.uuid4().hex[:8]
    patients = [f"Patient/{run}-p{i}" for i in range(PATIENTS)]
    members: dict[str, set[str]] = {}
    resources: list[dict[str, Any]] = [{"resourceType": "Patient", "id": p.split("/")[1]} for p in patients]
    for n, (subject, performer) in enumerate(graph):
        ref = f"Observation/{run}-o{n}"
        body: dict[str, Any] = {
            "resourceType": "Observation",
            "id": ref.split("/")[1],
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": patients[subject]},
        }
        if performer is not None:
            body["performer"] = [{"reference": patients[performer]}]
        resources.append(body)
        members[ref] = {patients[subject]} | ({patients[performer]} if performer is not None else set())
    await seed(*resources)

    model: dict[str, list[str]] = {ref: [] for ref in [*patients, *members]}
    for index, accounts, propagate in steps:
        target, wanted = patients[index], list(dict.fromkeys(accounts))
        before, model[target] = model[target], wanted
        in_compartment = [m for m, owners in members.items() if target in owners] if propagate else []
        for member in in_compartment:
            held = {a for p in members[member] - {target} for a in model[p]}
            model[member] = member_accounts(model[member], wanted, set(before) - set(wanted), held)
        cmd = SetAccountsCommand(
            command_id=str(uuid.uuid4()), target=target, accounts=wanted, propagate=propagate
        )
        await send_command(settings, cmd)
        job = await wait_job(db, cmd.command_id)
        assert job["resources_updated"] == 1 + len(in_compartment)

    stored = {
        d["_id"]: [a["reference"] for a in d["resource"].get("meta", {}).get("accounts", [])]
        async for d in db.resources.find({"_id": {"$in": list(model)}})
    }
    assert stored == model
