"""App factory: builds the FastAPI app, its clients (in the lifespan) and its routes in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from setaccounts.kafka import make_producer
from setaccounts.logs import configure_logging
from setaccounts.mongo import ensure_indexes, make_client
from setaccounts.settings import Settings
from setaccounts_api.fhir_body import FHIR_BASE_PATH
from setaccounts_api.limits import BodySizeLimit
from setaccounts_api.responses import install_error_handlers
from setaccounts_api.routes import bundle, crud, health, jobs, metadata, operation, search

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = make_client(settings)
        producer = make_producer(settings)
        try:
            db = client[settings.mongodb_database]
            await ensure_indexes(db)
            await producer.start()
            app.state.settings, app.state.db, app.state.producer = settings, db, producer
            log.info("api ready", kafka=settings.kafka_bootstrap_servers, database=settings.mongodb_database)
            yield
        finally:
            await producer.stop()
            await client.close()

    app = FastAPI(
        title="FHIR $set-accounts",
        version="0.1.0",
        lifespan=lifespan,
        description="FHIR R4 store with an event-driven `$set-accounts` operation.",
    )
    app.state.settings = settings
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    app.include_router(health.router)
    # Order matters: fixed paths (metadata, jobs, operations) before the generic /{type}/{id} routes.
    for router in (metadata.router, jobs.router, operation.router, bundle.router, search.router, crud.router):
        app.include_router(router, prefix=FHIR_BASE_PATH)
    return app


def main() -> None:
    """Serve the API with uvicorn (settings from the environment)."""
    import uvicorn

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=8000, log_level=settings.log_level.lower())
