"""App factory: builds the FastAPI app, its clients (in the lifespan) and its routes in one place."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import Depends, FastAPI
from starlette.middleware.trustedhost import TrustedHostMiddleware

from setaccounts.auth.tokens import TokenVerifier
from setaccounts.kafka import make_producer
from setaccounts.logs import configure_logging
from setaccounts.mongo import ensure_indexes, make_client
from setaccounts.profile import detect_broker, detect_store
from setaccounts.recovery import TopicRecovery
from setaccounts.settings import Settings
from setaccounts.telemetry import Tracing, tracing_from_env
from setaccounts_api.console import install_console
from setaccounts_api.fhir_body import FHIR_BASE_PATH
from setaccounts_api.limits import BodySizeLimit
from setaccounts_api.responses import install_error_handlers
from setaccounts_api.rest.readers import reader_for
from setaccounts_api.routes import bundle, crud, health, history, jobs, metadata, operation, search, smart
from setaccounts_api.routes.docs import install_docs
from setaccounts_api.routes.job_list import router as job_list_router
from setaccounts_api.security import RateLimiter, SecurityHeaders, authenticate
from setaccounts_api.stores import Stores

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None, tracing: Tracing | None = None) -> FastAPI:
    """The app; refuses to build without a way to verify tokens (keys, audience) or with a bad JWKS file.
    Traces as `tracing` says, else as the `OTEL_*` variables do (then the app owns it and shuts it down)."""
    settings = settings or Settings()
    verifier = TokenVerifier(settings)
    owned_tracing = tracing is None
    tracing = tracing_from_env("setaccounts-api") if tracing is None else tracing

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = make_client(settings, tracing)
        producer = None
        stop = asyncio.Event()
        watch: asyncio.Task[None] | None = None
        try:
            db = client[settings.mongodb_database]
            await ensure_indexes(db)
            store = await detect_store(db, settings)
            broker = await detect_broker(settings)
            producer = make_producer(settings, idempotent=broker.idempotent_producer)
            await producer.start()
            app.state.settings, app.state.db, app.state.producer = settings, db, producer
            app.state.stores = Stores(db, store, await reader_for(store, db))
            app.state.recovery = recovery = TopicRecovery(settings, db, producer, "api")
            watch = asyncio.create_task(recovery.watch(stop), name="topics")
            log.info("api ready", kafka=settings.kafka_bootstrap_servers, database=settings.mongodb_database)
            yield
        finally:
            stop.set()
            if watch is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
            if producer is not None:
                await producer.stop()
            await client.close()
            if owned_tracing:
                tracing.shutdown()

    app = FastAPI(
        title="FHIR $set-accounts",
        version="0.1.0",
        lifespan=lifespan,
        description="FHIR R4 store with an event-driven `$set-accounts` operation.",
        docs_url=None,  # served by install_docs from local assets, never from a CDN
        redoc_url=None,  # ReDoc has no packaged assets: left out rather than loaded from a CDN
    )
    install_docs(app)
    install_console(app, settings)  # /console/: the jobs page, its assets, the dev sign-in
    app.state.settings = settings
    app.state.verifier = verifier
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    hosts = [h.strip() for h in settings.trusted_hosts.split(",") if h.strip()]
    if not settings.base_url and "*" not in hosts:  # public URLs come from the Host header: vet it
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    app.add_middleware(SecurityHeaders)
    install_error_handlers(app)
    app.include_router(health.router)
    # Order matters: fixed paths (metadata, jobs, operations) before the generic /{type}/{id} routes.
    # Everything but the CapabilityStatement needs a bearer token.
    app.include_router(metadata.router, prefix=FHIR_BASE_PATH)
    app.include_router(smart.router, prefix=FHIR_BASE_PATH)
    app.include_router(job_list_router, prefix=FHIR_BASE_PATH, dependencies=[Depends(authenticate)])
    for router in (jobs.router, operation.router, bundle.router, search.router, history.router, crud.router):
        app.include_router(router, prefix=FHIR_BASE_PATH, dependencies=[Depends(authenticate)])
    if tracing.enabled:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # The request span starts a command's trace (or continues the caller's `traceparent`).
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=tracing.provider, excluded_urls="healthz,readyz,metrics"
        )
    return app


def main() -> None:
    """Serve the API with uvicorn (settings from the environment)."""
    import uvicorn

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        create_app(settings),
        host="127.0.0.1",
        port=8000,
        log_level=settings.log_level.lower(),
        server_header=False,
    )
