"""Load one transaction Bundle (1 patient + N-1 resources referencing it by urn:uuid) and print resources/s.

Runs the API in-process (httpx ASGITransport, lifespan included) against the engines `setaccounts_dev.engines`
finds or starts, in a throwaway database: `python -m benchmarks.load_bundle [--size 5000] [--runs 3]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from setaccounts.settings import Settings
from setaccounts_api.app import create_app
from setaccounts_dev.devkeys import DEV_AUDIENCE, DEV_ISSUER, JWKS_FILE, claims_for, ensure_dev_key
from setaccounts_dev.engines import engines

KINDS = ("Observation", "Condition", "Encounter")


def member(index: int, patient: str) -> dict[str, Any]:
    kind = KINDS[index % len(KINDS)]
    resource: dict[str, Any] = {"resourceType": kind, "subject": {"reference": patient}}
    if kind == "Observation":
        resource |= {
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
            "valueQuantity": {"value": 60 + index % 40, "unit": "beats/minute"},
            "effectiveDateTime": "2024-05-01T12:00:00Z",
        }
    elif kind == "Condition":
        resource |= {"code": {"text": f"condition {index}"}, "recordedDate": "2024-05-01"}
    else:
        resource |= {"status": "finished", "class": {"code": "AMB"}}
    return resource


def transaction(size: int) -> dict[str, Any]:
    patient = f"urn:uuid:{uuid.uuid4()}"
    entries = [
        {
            "fullUrl": patient,
            "resource": {"resourceType": "Patient", "name": [{"family": "Bench"}]},
            "request": {"method": "POST", "url": "Patient"},
        }
    ]
    for index in range(size - 1):
        resource = member(index, patient)
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def run(settings: Settings, size: int, runs: int, token: str) -> list[float]:
    """Seconds per transaction; each run is checked by a compartment search of the new patient."""
    app = create_app(settings)
    timings: list[float] = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://bench/fhir/R4",
            timeout=600,
            headers={"Authorization": f"Bearer {token}"},
        ) as api:
            for _ in range(runs):
                body = transaction(size)
                started = time.perf_counter()
                response = await api.post("", json=body)
                timings.append(time.perf_counter() - started)
                response.raise_for_status()
                patient = response.json()["entry"][0]["response"]["location"].split("/_history")[0]
                found = await api.get("", params={"_compartment": patient, "_count": "0"})
                total = found.json()["total"]
                if total != size:
                    raise SystemExit(f"expected {size} resources in {patient}'s compartment, found {total}")
    return timings


async def main(size: int, runs: int) -> None:
    with engines() as found, tempfile.TemporaryDirectory() as keys:
        token = ensure_dev_key(Path(keys)).sign(claims_for("bench", admin=True))
        settings = Settings(
            **found.settings(),
            mongodb_database=f"bench_{uuid.uuid4().hex[:8]}",
            auth_issuer=DEV_ISSUER,
            auth_audience=DEV_AUDIENCE,
            auth_jwks_file=str(Path(keys) / JWKS_FILE),
            trusted_hosts="bench",
        )
        try:
            timings = await run(settings, size, runs, token)
        finally:
            client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongodb_uri)
            await client.drop_database(settings.mongodb_database)
            await client.close()
    for index, seconds in enumerate(timings, 1):
        print(f"run {index}: {size} resources in {seconds:.2f} s = {size / seconds:,.0f} resources/s")
    median = statistics.median(timings)
    print(f"median ({found.kind} engines): {size / median:,.0f} resources/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=5000, help="resources per transaction Bundle")
    parser.add_argument("--runs", type=int, default=3, help="transactions to load, one after another")
    args = parser.parse_args()
    asyncio.run(main(args.size, args.runs))
