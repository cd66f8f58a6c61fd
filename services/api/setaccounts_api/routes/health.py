"""Liveness (`/healthz`: the process answers) and readiness (`/readyz`: Kafka and MongoDB answer)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from setaccounts_api.deps import DbDep, ProducerDep

router = APIRouter(tags=["health"])
CHECK_TIMEOUT = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check(coro: Any) -> str:
    try:
        await asyncio.wait_for(coro, CHECK_TIMEOUT)
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok"


@router.get("/readyz")
async def readyz(db: DbDep, producer: ProducerDep) -> JSONResponse:
    mongo, kafka = await asyncio.gather(
        _check(db.command("ping")), _check(producer.client.fetch_all_metadata())
    )
    ready = mongo == "ok" and kafka == "ok"
    body = {"status": "ready" if ready else "not ready", "mongodb": mongo, "kafka": kafka}
    return JSONResponse(body, status_code=200 if ready else 503)
