"""One trace per command, from the API's request span through the planner, the applier's batches and the
aggregator, carried in the Kafka records' W3C trace context; a command published by another service with
a `traceparent` joins that service's trace."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.events import SetAccountsCommand, encode, headers_for
from setaccounts.kafka import make_producer
from setaccounts.settings import Settings
from setaccounts.telemetry import COMMAND_ID, Tracing, tracing_with
from setaccounts_api.app import create_app
from tests.helpers.auth import Issuer, client_of
from tests.helpers.jobs import wait_job
from tests.helpers.parameters import parameters
from tests.helpers.resources import Seed, patient_with_members
from tests.helpers.roles import roles

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MEMBERS = 1000


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Tracing:
    return tracing_with("setaccounts-test", SimpleSpanProcessor(exporter))


@pytest.fixture
async def traced_propagator(settings: Settings, tracing: Tracing) -> AsyncIterator[None]:
    async with roles(settings, "planner", "applier", "aggregator", tracing=tracing):
        yield


def spans_of(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [
        s for s in exporter.get_finished_spans() if s.context and f"{s.context.trace_id:032x}" == trace_id
    ]


async def until(check: Callable[[], bool], timeout: float = 30) -> None:
    """Spans end just after the writes a test waits on: give the last ones a moment."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def role_spans(spans: list[ReadableSpan], role: str, command_id: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == role and (s.attributes or {}).get(COMMAND_ID) == command_id]


async def test_one_trace_from_the_request_to_the_aggregator(
    settings: Settings,
    db: AsyncDatabase[dict[str, Any]],
    seed: Seed,
    issuer: Issuer,
    tracing: Tracing,
    exporter: InMemorySpanExporter,
    traced_propagator: None,
) -> None:
    await seed(*patient_with_members("traced", MEMBERS))
    app = create_app(settings, tracing)
    async with app.router.lifespan_context(app), client_of(app, issuer.admin_token()) as api:
        response = await api.post(
            "/Patient/traced/$set-accounts",
            json=parameters("Organization/o1", propagate=True),
            headers={"Prefer": "respond-async"},
        )
        assert response.status_code == 202, response.text
        trace_id = response.headers["X-Trace-Id"]
        command_id = response.headers["Content-Location"].rsplit("/", 2)[-2]
        job = await wait_job(db, command_id)
        assert job["resources_updated"] == MEMBERS + 1
        assert job["trace_id"] == trace_id
        status = await api.get(f"/job/{command_id}/status")
        assert status.headers["X-Trace-Id"] == trace_id

    await until(lambda: bool(role_spans(spans_of(exporter, trace_id), "aggregator", command_id)))
    spans = spans_of(exporter, trace_id)
    [request] = [s for s in spans if s.kind == SpanKind.SERVER and "$set-accounts" in s.name]
    assert request.parent is None, "the request span starts the trace"
    planners = role_spans(spans, "planner", command_id)
    appliers = role_spans(spans, "applier", command_id)
    assert planners and appliers
    assert sum((s.attributes or {}).get("messaging.batch.message_count", 0) for s in appliers) >= MEMBERS
    store = [
        s for s in spans if s.kind == SpanKind.CLIENT and s.name.startswith(f"{settings.mongodb_database}.")
    ]
    assert {s.name.split(".", 1)[1] for s in store} >= {"find", "update"}, "the store's commands are spans"


async def test_a_command_published_with_a_traceparent_joins_that_trace(
    settings: Settings,
    db: AsyncDatabase[dict[str, Any]],
    seed: Seed,
    exporter: InMemorySpanExporter,
    traced_propagator: None,
) -> None:
    await seed(*patient_with_members("direct", 20))
    trace_id, parent_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    command = SetAccountsCommand(
        command_id=str(uuid.uuid4()), target="Patient/direct", accounts=["Organization/o2"], propagate=True
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        headers = [*headers_for(command), ("traceparent", f"00-{trace_id}-{parent_span}-01".encode())]
        await producer.send_and_wait(
            settings.topics.commands, encode(command), key=command.key.encode(), headers=headers
        )
    finally:
        await producer.stop()

    job = await wait_job(db, command.command_id)
    assert job["trace_id"] == trace_id
    await until(lambda: bool(role_spans(spans_of(exporter, trace_id), "aggregator", command.command_id)))
    spans = spans_of(exporter, trace_id)
    [planner] = role_spans(spans, "planner", command.command_id)
    assert planner.parent is not None and f"{planner.parent.span_id:016x}" == parent_span
    assert role_spans(spans, "applier", command.command_id)
