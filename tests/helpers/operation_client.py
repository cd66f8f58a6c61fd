"""Drive `$set-accounts` over HTTP the way a client does: start it asynchronously, poll the status URL,
cancel it, and classify what the API finally answered."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from tests.helpers.parameters import parameters

POLL_SECONDS = 0.1
WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class ApiAnswer:
    """What the API finally answered for one job: status as the caller sees it, and the counts if any."""

    command_id: str
    http_status: int
    status: str  # completed | error | cancelled
    updated: int | None
    changed: int | None
    body: dict[str, Any]


def classify(command_id: str, response: httpx.Response) -> ApiAnswer:
    body = response.json()
    if response.status_code == 200:
        counts = {p["name"]: p["valueInteger"] for p in body["parameter"]}
        updated, changed = counts["resourcesUpdated"], counts["resourcesChanged"]
        return ApiAnswer(command_id, 200, "completed", updated, changed, body)
    cancelled = response.headers.get("X-Progress", "").startswith("cancelled")
    status = "cancelled" if cancelled else "error"
    return ApiAnswer(command_id, response.status_code, status, None, None, body)


class SetAccounts:
    """`POST …/$set-accounts` with `Prefer: respond-async`, then poll the status URL, as a client would."""

    def __init__(self, api: httpx.AsyncClient) -> None:
        self.api = api

    async def start(self, target: str, *accounts: str, propagate: bool | None = None) -> str:
        response = await self.api.post(
            f"/{target}/$set-accounts",
            json=parameters(*accounts, propagate=propagate),
            # X-Requested-By cannot set the requester: the audit records the token's subject
            headers={"Prefer": "respond-async", "X-Requested-By": "audit-test"},
        )
        assert response.status_code == 202, response.text
        return response.headers["Content-Location"].rstrip("/").split("/")[-2]

    async def wait(self, command_id: str) -> ApiAnswer:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            response = await self.api.get(f"/job/{command_id}/status")
            if response.status_code != 202:
                return classify(command_id, response)
            await asyncio.sleep(POLL_SECONDS)
        raise AssertionError(f"job {command_id} did not finish within {WAIT_SECONDS}s")

    async def run(self, target: str, *accounts: str, propagate: bool | None = None) -> ApiAnswer:
        return await self.wait(await self.start(target, *accounts, propagate=propagate))

    async def cancel(self, command_id: str) -> httpx.Response:
        return await self.api.delete(f"/job/{command_id}/status", headers={"X-Requested-By": "audit-test"})
