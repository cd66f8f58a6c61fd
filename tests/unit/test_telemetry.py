"""Tracing's pure parts: which exporter the OTEL_* variables ask for, the trace context a record carries,
and the spans a consumed batch makes (an in-memory exporter; no engines)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from setaccounts.logs import add_trace_ids
from setaccounts.telemetry import (
    COMMAND_ID,
    Tracing,
    consuming,
    exporter_from_env,
    extract,
    record_headers,
    serving,
    trace_id_in,
    trace_id_of,
    tracing_with,
)

TRACE_A, TRACE_B = "a" * 32, "b" * 32


def headers(trace_id: str, span_id: str = "1" * 16) -> list[tuple[str, bytes]]:
    return [("event-type", b"MemberUpdate"), ("traceparent", f"00-{trace_id}-{span_id}-01".encode())]


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Iterator[Tracing]:
    built = tracing_with("test", SimpleSpanProcessor(exporter))
    yield built
    built.shutdown()


@pytest.fixture
def tracer(tracing: Tracing) -> Tracer:
    found = tracing.tracer("test")
    assert found is not None
    return found


def trace_of(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


@pytest.mark.parametrize(
    ("environ", "kind"),
    [
        ({}, None),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, OTLPSpanExporter),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, OTLPSpanExporter),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, OTLPSpanExporter),
        ({"OTEL_TRACES_EXPORTER": "console"}, ConsoleSpanExporter),
    ],
)
def test_the_otel_variables_choose_the_exporter(environ: dict[str, str], kind: type | None) -> None:
    found = exporter_from_env(environ)
    assert (found is None) if kind is None else isinstance(found, kind)


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    ],
)
def test_an_exporter_this_build_lacks_is_refused_at_start(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="not supported"):
        exporter_from_env(environ)


def test_no_span_no_header(tracer: Tracer) -> None:
    assert record_headers("c1") == []
    assert trace_id_of() is None


def test_a_record_carries_the_current_span_and_the_next_reader_continues_it(tracer: Tracer) -> None:
    with tracer.start_as_current_span("publish") as span:
        written = record_headers("c1")
    assert [key for key, _ in written] == ["traceparent"]
    assert trace_id_in(written) == f"{span.get_span_context().trace_id:032x}"
    assert trace_id_in([("event-type", b"x")]) is None
    assert trace_id_in([("traceparent", b"garbage")]) is None


def test_tracing_off_makes_no_span(exporter: InMemorySpanExporter) -> None:
    with consuming(None, "applier", [("c1", headers(TRACE_A))]):
        assert record_headers("c1") == []
    assert exporter.get_finished_spans() == ()


def test_a_batch_of_one_command_is_one_span_in_its_trace(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    with consuming(tracer, "applier", [("c1", headers(TRACE_A)), ("c1", headers(TRACE_A))]):
        assert trace_id_in(record_headers("c1")) == TRACE_A
    [span] = exporter.get_finished_spans()
    assert (span.name, trace_of(span)) == ("applier", TRACE_A)
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "1" * 16
    assert span.attributes is not None and span.attributes["messaging.batch.message_count"] == 2


def test_a_batch_of_several_commands_shows_in_each_commands_trace(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    batch = [("c1", headers(TRACE_A)), ("c2", headers(TRACE_B)), ("c2", headers(TRACE_B)), (None, None)]
    with consuming(tracer, "aggregator", batch):
        assert trace_id_in(record_headers("c1")) == TRACE_A
        assert trace_id_in(record_headers("c2")) == TRACE_B
        with serving("c2"):
            assert trace_id_of() == TRACE_B
    spans = {
        s.name + ":" + str((s.attributes or {}).get(COMMAND_ID)): s for s in exporter.get_finished_spans()
    }
    batch_span = spans["aggregator batch:None"]
    assert {f"{link.context.trace_id:032x}" for link in batch_span.links} == {TRACE_A, TRACE_B}
    assert batch_span.attributes is not None and batch_span.attributes["messaging.batch.message_count"] == 4
    for command_id, trace_id, records in (("c1", TRACE_A, 1), ("c2", TRACE_B, 2)):
        span = spans[f"aggregator:{command_id}"]
        assert trace_of(span) == trace_id
        assert [link.context.span_id for link in span.links] == [batch_span.context.span_id]
        assert span.attributes is not None and span.attributes["messaging.batch.message_count"] == records


def test_a_record_without_trace_context_starts_a_trace(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    assert extract(None) is not None
    with consuming(tracer, "planner", [("c9", [("event-type", b"SetAccountsCommand")])]):
        started = trace_id_of()
    [span] = exporter.get_finished_spans()
    assert span.parent is None and started == trace_of(span)


def test_log_lines_inside_a_span_carry_its_ids(tracer: Tracer) -> None:
    assert add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
    with tracer.start_as_current_span("work") as span:
        line = add_trace_ids(None, "info", {"event": "x"})
    ids = span.get_span_context()
    assert line == {"event": "x", "trace_id": f"{ids.trace_id:032x}", "span_id": f"{ids.span_id:016x}"}
