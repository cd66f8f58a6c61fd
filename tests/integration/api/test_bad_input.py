"""Bodies the store cannot hold are refused fast, before the store, in one log line without the body; the
event loop keeps serving while a large one is refused; Bundles have an entry cap."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from setaccounts.settings import Settings
from setaccounts_api.app import create_app
from tests.helpers.auth import Issuer, client_of
from tests.helpers.resources import Snapshot

pytestmark = pytest.mark.integration

FHIR_JSON = {"Content-Type": "application/fhir+json"}
MARKER = "Q7-BODY-MARKER-Z9"


def observation_text(**fields: str) -> str:
    """An Observation as JSON text, the marker in a note; `fields` are raw JSON members spliced in."""
    head = f'{{"resourceType":"Observation","status":"final","note":[{{"text":"{MARKER}"}}]'
    return head + "".join(f',"{name}":{value}' for name, value in fields.items()) + "}"


BAD_BODIES: dict[str, tuple[bytes, int, str]] = {
    "nul-in-key": (
        (observation_text()[:-1] + f',"{MARKER}\\u0000x":1}}').encode(),
        400,
        "NUL character in a key",
    ),
    "lone-surrogate": (observation_text(valueString=f'"{MARKER}\\ud800"').encode(), 400, "lone surrogate"),
    "int-beyond-64-bits": (observation_text(valueInteger=str(2**70)).encode(), 400, "integer outside"),
    "over-bson-limit": (
        json.dumps(
            {
                "resourceType": "Observation",
                "status": "final",
                "note": [{"text": MARKER + "x" * 1000}] * 16_200,
            }
        ).encode(),
        413,
        "resource over the document size limit",
    ),
    "malformed": (observation_text()[:-1].encode() + b',"x":', 400, "malformed JSON"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
async def test_bodies_the_store_cannot_hold_are_refused_before_it(
    api: httpx.AsyncClient, snapshot: Snapshot, case: str
) -> None:
    body, status, says = BAD_BODIES[case]
    before = await snapshot()
    for method, url in (("POST", "/Observation"), ("PUT", "/Observation/o1")):
        started = time.monotonic()
        response = await api.request(method, url, content=body, headers=FHIR_JSON)
        elapsed = time.monotonic() - started
        assert response.status_code == status, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == ("too-costly" if status == 413 else "invalid")
        assert outcome["issue"][0]["diagnostics"].startswith(says)
        assert elapsed < 3.0, f"{case}: {elapsed:.2f}s"  # it took 8-15 s behind a rich traceback
    assert await snapshot() == before


async def test_a_bad_resource_inside_a_bundle_is_refused_as_a_whole(
    api: httpx.AsyncClient, snapshot: Snapshot
) -> None:
    before = await snapshot()
    entry = {"resource": {"resourceType": "Basic", "x": 2**64}, "request": {"method": "POST", "url": "Basic"}}
    for kind in ("transaction", "batch"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
        response = await api.post("", json=bundle)
        assert response.status_code == 400, response.text
        assert response.json()["issue"][0]["expression"] == ["$.entry[0].resource.x"]
    assert await snapshot() == before


async def test_a_refused_body_is_logged_in_one_line_without_the_body(
    api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level("DEBUG")
    capsys.readouterr()
    for body, status, _ in BAD_BODIES.values():
        response = await api.post("/Observation", content=body, headers=FHIR_JSON)
        assert response.status_code == status
    captured = capsys.readouterr()
    logged = "\n".join((caplog.text, captured.out, captured.err))
    assert MARKER not in logged
    assert logged.count("request body refused") == len(BAD_BODIES), logged[:2000]
    refusals = [line for line in logged.splitlines() if "request body refused" in line]
    assert all(len(line) < 400 for line in refusals)


async def test_healthz_answers_promptly_while_a_large_bad_body_is_refused(api: httpx.AsyncClient) -> None:
    """~12 MB of small values with a NUL in the very last key: parsing and the check run off the loop."""
    values = ",".join(f'"k{i}":{i}' for i in range(800_000))
    body = f'{{"resourceType":"Observation","status":"final",{values},"bad\\u0000key":1}}'.encode()
    assert len(body) > 12_000_000
    latencies: list[float] = []
    finished = asyncio.Event()

    async def probe() -> None:
        while not finished.is_set():
            started = time.monotonic()
            assert (await api.get("http://testserver/healthz")).status_code == 200
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.02)

    prober = asyncio.create_task(probe())
    started = time.monotonic()
    try:
        response = await api.post("/Observation", content=body, headers=FHIR_JSON)
    finally:
        finished.set()
        await prober
    elapsed = time.monotonic() - started
    assert response.status_code == 400
    assert response.json()["issue"][0]["diagnostics"].startswith("NUL character in a key")
    assert len(latencies) >= 3, f"healthz answered only {len(latencies)} times in {elapsed:.2f}s"
    # Relative, not absolute (the machine may be busy). The parse runs in a thread, but `json.loads` holds
    # the GIL while it builds the document (about half of the refusal here), so one probe may wait that
    # long; parsing on the loop would make a probe wait out the whole refusal.
    assert max(latencies) < elapsed * 0.75, (
        f"slowest /healthz {max(latencies):.2f}s while refusing ({elapsed:.2f}s)"
    )


@asynccontextmanager
async def app_client(settings: Settings, token: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_of(app, token) as client:
        yield client


def basic_entries(count: int) -> list[dict[str, Any]]:
    return [
        {
            "resource": {"resourceType": "Basic", "code": {"text": str(i)}},
            "request": {"method": "POST", "url": "Basic"},
        }
        for i in range(count)
    ]


async def test_a_bundle_over_the_entry_cap_is_a_413_that_writes_nothing(
    settings: Settings, snapshot: Snapshot, issuer: Issuer
) -> None:
    capped = settings.model_copy(update={"max_bundle_entries": 5})
    async with app_client(capped, issuer.admin_token()) as api:
        for kind in ("transaction", "batch"):
            at_cap = await api.post(
                "", json={"resourceType": "Bundle", "type": kind, "entry": basic_entries(5)}
            )
            assert at_cap.status_code == 200, at_cap.text
            before = await snapshot()
            over = await api.post(
                "", json={"resourceType": "Bundle", "type": kind, "entry": basic_entries(6)}
            )
            assert over.status_code == 413, over.text
            issue = over.json()["issue"][0]
            assert issue["code"] == "too-costly"
            assert "6 entries" in issue["diagnostics"] and "at most 5" in issue["diagnostics"]
            assert await snapshot() == before
