"""History of what the pipeline writes: one version per changed resource naming its command, and no
extra version, nor a second history entry, when an update is delivered again."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import UPDATES, MemberUpdate, SetAccountsCommand
from setaccounts.kafka import make_producer
from setaccounts.settings import Settings
from setaccounts.store.meta import COMMAND_SYSTEM
from setaccounts.store.propagation import Application, Propagation
from setaccounts.store.resources import ResourceStore
from tests.helpers.groups import caught_up
from tests.helpers.jobs import wait_job
from tests.helpers.publishing import send_command
from tests.helpers.resources import Seed, patient_with_members
from tests.helpers.roles import roles
from tests.helpers.topics import read_topic

pytestmark = pytest.mark.integration
Db = AsyncDatabase[dict[str, Any]]


def command(target: str, *accounts: str) -> SetAccountsCommand:
    return SetAccountsCommand(
        command_id=str(uuid.uuid4()),
        target=target,
        accounts=list(accounts),
        propagate=True,
        requested_by="test",
    )


def command_tags(resource: dict[str, Any]) -> list[str]:
    return [t["code"] for t in resource["meta"].get("tag", []) if t.get("system") == COMMAND_SYSTEM]


async def history(api: httpx.AsyncClient, ref: str) -> list[dict[str, Any]]:
    response = await api.get(f"/{ref}/_history")
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entry"]
    return entries


async def redeliver_member_updates(settings: Settings) -> int:
    """Publish every MemberUpdate of the updates topic again, as it was (key, partition, headers)."""
    records = await read_topic(settings, settings.topics.updates)
    again = [r for r in records if isinstance(UPDATES.decode(r.value), MemberUpdate)]
    producer = make_producer(settings)
    await producer.start()
    try:
        for r in again:
            await producer.send_and_wait(
                settings.topics.updates, r.value, key=r.key, partition=r.partition, headers=list(r.headers)
            )
    finally:
        await producer.stop()
    return len(again)


async def test_each_changed_resource_gets_one_version_naming_the_command(
    settings: Settings, db: Db, seed: Seed, api: httpx.AsyncClient
) -> None:
    patient, *members = patient_with_members("p1", 4)
    already = {**members[0], "meta": {"accounts": [{"reference": "Organization/o1"}]}}
    await seed(patient, already, *members[1:])
    first = command("Patient/p1", "Organization/o1")

    async with roles(settings, "planner", "applier", "aggregator"):
        await send_command(settings, first)
        job = await wait_job(db, first.command_id)
        assert (job["resources_updated"], job["resources_changed"]) == (5, 4)

        changed = ["Patient/p1", *(f"Observation/{m['id']}" for m in members[1:])]
        for ref in changed:
            newest, oldest = await history(api, ref)
            assert newest["response"]["etag"] == 'W/"2"', ref
            assert command_tags(newest["resource"]) == [first.command_id], ref
            assert command_tags(oldest["resource"]) == [], ref
            assert (await api.get(f"/{ref}")).json() == newest["resource"], "vread and read agree"
        [unchanged] = await history(api, f"Observation/{already['id']}")
        assert command_tags(unchanged["resource"]) == []

        # Every MemberUpdate delivered again: the marks absorb it, no version and no history entry is added.
        stored_before = await db.history.count_documents({})
        assert await redeliver_member_updates(settings) == 4
        await caught_up(settings, "applier", settings.topics.updates)
    assert await db.history.count_documents({}) == stored_before == len(changed)
    for ref in changed:
        assert [e["response"]["etag"] for e in await history(api, ref)] == ['W/"2"', 'W/"1"'], ref

    # A later ordinary write is not the command's: its version has no tag, the command's version keeps it.
    edited = {**members[1], "status": "amended"}
    assert (await api.put(f"/Observation/{members[1]['id']}", json=edited)).status_code == 200
    newest, by_command, _ = await history(api, f"Observation/{members[1]['id']}")
    assert command_tags(newest["resource"]) == []
    assert command_tags(by_command["resource"]) == [first.command_id]


async def test_a_crash_between_the_history_copy_and_the_write_converges_to_one_entry(
    db: Db, seed: Seed
) -> None:
    [ref] = await seed({"resourceType": "Organization", "id": "org", "name": "Acme"})
    resources = ResourceStore(db)
    stored = await resources.get(ref)
    assert stored is not None
    app = Application(ref, ref, 1, "cmd-1", ["Organization/o1"], exact=True)

    await resources.history.keep([stored])  # the copy landed, then the process died before the write
    for _delivery in range(2):  # the redelivered command applies, then is delivered once more
        await Propagation(resources).apply([app])

    assert await db.history.count_documents({"ref": ref}) == 1
    current = await resources.get(ref)
    assert current is not None and current["version"] == 2
    assert command_tags(current["resource"]) == ["cmd-1"]
    kept = await resources.history.version(ref, 1)
    assert kept is not None and kept["resource"] == stored["resource"]
