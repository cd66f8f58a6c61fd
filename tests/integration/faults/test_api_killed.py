"""The API process killed (-9) during a synchronous `$set-accounts`: the command it published still runs to
the end, and the status URL answers from a new API process."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.settings import Settings
from tests.helpers.auth import Issuer, bearer
from tests.helpers.parameters import outputs, parameters
from tests.helpers.processes import api_process, kill_9, propagator_process
from tests.helpers.resources import Seed, patient_with_members

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MEMBERS = 3000


async def applying(db: AsyncDatabase[dict[str, Any]], target: str, timeout: float = 60) -> dict[str, Any]:
    """The job of `target` once members are being applied."""
    for _ in range(int(timeout * 10)):
        job = await db.jobs.find_one({"target": target, "status": "applying"})
        if job is not None and await db.resources.count_documents({"marks.command_id": job["_id"]}) >= 200:
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"no job of {target} was applying within {timeout}s")


async def test_kill_9_of_the_api_during_a_sync_call_loses_no_job(
    settings: Settings, db: AsyncDatabase[dict[str, Any]], seed: Seed, issuer: Issuer
) -> None:
    admin = bearer(issuer.admin_token())
    slow = settings.model_copy(update={"apply_batch_size": 100, "sync_wait_seconds": 120})
    await seed(*patient_with_members("p1", MEMBERS))
    with propagator_process(slow):
        with api_process(slow) as (api, base):
            async with httpx.AsyncClient(base_url=base, timeout=180, headers=admin) as client:
                call = asyncio.create_task(
                    client.post(
                        "/Patient/p1/$set-accounts", json=parameters("Organization/a", propagate=True)
                    )
                )
                job = await applying(db, "Patient/p1")
                kill_9(api)
                with contextlib.suppress(httpx.HTTPError):
                    await call  # the connection dies with the process
        with api_process(slow) as (_api, base):
            async with httpx.AsyncClient(base_url=base, timeout=30, headers=admin) as client:
                status_url = f"{base}/job/{job['_id']}/status"
                for _ in range(600):
                    answer = await client.get(status_url)
                    if answer.status_code != 202:
                        break
                    await asyncio.sleep(0.5)
    assert answer.status_code == 200, answer.text
    assert outputs(answer.json()) == {"resourcesUpdated": MEMBERS + 1, "resourcesChanged": MEMBERS + 1}
