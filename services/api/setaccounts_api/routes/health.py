"""Liveness (`/healthz`: the process answers), readiness (`/readyz`: Kafka and MongoDB answer, and the
topics exist or could be recreated), `/metrics`."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from setaccounts.recovery import TopicRecovery
from setaccounts_api.deps import DbDep, RecoveryDep
from setaccounts_api.security import PrincipalDep, require_admin

router = APIRouter(tags=["health"])
CHECK_TIMEOUT = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check(coro: Any) -> str:
    try:
        await asyncio.wait_for(coro, CHECK_TIMEOUT)
    except Exception:
        return "unavailable"  # no driver names or messages on an open endpoint
    return "ok"


@router.get("/metrics")
async def metrics(principal: PrincipalDep) -> Response:
    """Prometheus metrics of this API process (an admin token is needed)."""
    require_admin(principal, "/metrics")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def _topics(recovery: TopicRecovery) -> str:
    """ "ok" when the topics exist (recreated now if they vanished and the back-off allows), else "missing";
    a recreation outlasting the bound goes on in the background."""
    try:
        present = await asyncio.wait_for(asyncio.shield(recovery.check()), CHECK_TIMEOUT)
    except Exception:
        return "unavailable"
    return "ok" if present else "missing"


@router.get("/readyz")
async def readyz(db: DbDep, recovery: RecoveryDep) -> JSONResponse:
    mongo, kafka, topics = await asyncio.gather(
        _check(db.command("ping")), _check(recovery.metadata()), _topics(recovery)
    )
    ready = mongo == "ok" and kafka == "ok" and topics == "ok"
    body = {"status": "ready" if ready else "not ready", "mongodb": mongo, "kafka": kafka, "topics": topics}
    return JSONResponse(body, status_code=200 if ready else 503)
