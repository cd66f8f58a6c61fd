"""OpenTelemetry traces: one trace per command, from the API's request through the planner, the applier's
batches and the aggregator, carried between them in W3C trace context headers on every Kafka record.

Configured by the standard `OTEL_*` variables (`tracing_from_env`). With no exporter named, tracing is off:
no span is made, no header is written, and what is left in the hot paths is one attribute check per batch.

How the context travels:
- `record_headers` (called by the one publish helper, `setaccounts.kafka`) adds `traceparent` (and
  `tracestate`) for an event's command: the span this task made for that command (`consuming`), else the
  current span (the API's request span, a planner's span while it fans out).
- `consuming` (called by the consume loop around each handled batch) reads each command's context from the
  first of its records. A batch serving one command makes one span in that command's trace; a batch
  serving several makes a batch span linked to each command, and in each command's trace a span linked to
  the batch, so every command's trace shows every batch that worked for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

Headers = Sequence[tuple[str, bytes]]
Traced = tuple[str | None, Headers | None]
"""A consumed record as tracing sees it: its command id (if it has one) and its headers."""
TRACE_HEADERS = ("traceparent", "tracestate")
_PROPAGATOR = TraceContextTextMapPropagator()
_COMMAND_CONTEXTS: ContextVar[Mapping[str, Context] | None] = ContextVar("command_contexts", default=None)
COMMAND_ID = "setaccounts.command_id"
ROLE = "setaccounts.role"


@dataclass(frozen=True)
class Tracing:
    """A process's tracing: its provider, or None when tracing is off. Built once per service where it is
    wired (`tracing_from_env`; tests build one over an in-memory exporter)."""

    provider: TracerProvider | None = None

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def tracer(self, name: str) -> Tracer | None:
        return None if self.provider is None else self.provider.get_tracer(name)

    def shutdown(self) -> None:
        """Export what is buffered and stop (at the end of the process)."""
        if self.provider is not None:
            self.provider.shutdown()


OFF = Tracing()


def exporter_from_env(environ: Mapping[str, str]) -> SpanExporter | None:
    """The exporter the `OTEL_*` variables ask for: OTLP over HTTP when `OTEL_TRACES_EXPORTER` is `otlp`
    or an OTLP endpoint is set, the console for `console`; None (off) otherwise, or when
    `OTEL_SDK_DISABLED` is true. The OTLP exporter reads its own `OTEL_EXPORTER_OTLP_*` settings."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if named == "console":
        return ConsoleSpanExporter()
    if named == "otlp" or (endpoint and named in ("", "otlp")):
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol != "http/protobuf":
            raise ValueError(f"OTLP protocol {protocol!r} is not supported here; use http/protobuf")
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if named in ("", "none"):
        return None
    raise ValueError(f"OTEL_TRACES_EXPORTER={named!r} is not supported; use otlp, console or none")


def tracing_from_env(service: str, environ: Mapping[str, str] | None = None) -> Tracing:
    """The process's tracing from the `OTEL_*` variables (`service` names it unless `OTEL_SERVICE_NAME`
    does). Sampling (`OTEL_TRACES_SAMPLER`) and batching (`OTEL_BSP_*`) are the SDK's own settings."""
    exporter = exporter_from_env(os.environ if environ is None else environ)
    if exporter is None:
        return OFF
    return tracing_with(service, BatchSpanProcessor(exporter))


def tracing_with(service: str, processor: SpanProcessor) -> Tracing:
    """Tracing through one span processor (tests: an in-memory exporter behind a simple processor)."""
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    return Tracing(provider)


def trace_id_of(context: Context | None = None) -> str | None:
    """The trace id (32 hex digits) of the span current in `context` (default: now), if one is recording
    or came from a caller."""
    span_context = trace.get_current_span(context).get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def trace_id_in(headers: Headers | None) -> str | None:
    """The trace id a record's `traceparent` header names, if it has a valid one."""
    return trace_id_of(extract(headers))


def extract(headers: Headers | None) -> Context:
    """The trace context in a record's headers (empty when there is none)."""
    carrier = {key: bytes(value).decode("latin-1") for key, value in headers or () if key in TRACE_HEADERS}
    return _PROPAGATOR.extract(carrier) if carrier else Context()


def record_headers(command_id: str | None) -> list[tuple[str, bytes]]:
    """The trace headers for a record of `command_id` published now: nothing when no span is current."""
    contexts = _COMMAND_CONTEXTS.get()
    context = contexts.get(command_id) if contexts is not None and command_id is not None else None
    if not trace.get_current_span(context).get_span_context().is_valid:
        return []
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context)
    return [(key, value.encode("latin-1")) for key, value in carrier.items()]


@contextmanager
def consuming(tracer: Tracer | None, role: str, batch: Iterable[Traced]) -> Iterator[None]:
    """Spans around one handled batch of `(command id, record headers)` pairs (see the module's notes);
    nothing at all when `tracer` is None."""
    if tracer is None:
        yield
        return
    contexts: dict[str, Context] = {}
    counts: dict[str | None, int] = {}
    for command_id, headers in batch:
        counts[command_id] = counts.get(command_id, 0) + 1
        if command_id is not None and command_id not in contexts:
            contexts[command_id] = extract(headers)
    if len(counts) == 1 and contexts:
        [(command_id, parent)] = contexts.items()
        with tracer.start_as_current_span(
            role,
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes=_attributes(role, counts[command_id], command_id),
        ):
            yield
        return
    links = [Link(trace.get_current_span(c).get_span_context()) for c in contexts.values()]
    with tracer.start_as_current_span(
        f"{role} batch",
        context=Context(),
        kind=SpanKind.CONSUMER,
        links=links,
        attributes=_attributes(role, sum(counts.values())),
    ) as batch_span:
        spans = {
            command_id: tracer.start_span(
                role,
                context=parent,
                kind=SpanKind.CONSUMER,
                links=[Link(batch_span.get_span_context())],
                attributes=_attributes(role, counts[command_id], command_id),
            )
            for command_id, parent in contexts.items()
        }
        token = _COMMAND_CONTEXTS.set({cid: trace.set_span_in_context(s) for cid, s in spans.items()})
        try:
            yield
        finally:
            _COMMAND_CONTEXTS.reset(token)
            for span in spans.values():
                span.end()


def _attributes(role: str, records: int, command_id: str | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"messaging.batch.message_count": records, ROLE: role}
    if command_id is not None:
        attributes[COMMAND_ID] = command_id
    return attributes


@contextmanager
def serving(command_id: str) -> Iterator[None]:
    """Within a batch that serves several commands, make `command_id`'s span the current one (a handler
    that works command by command, the planner, calls it so what it publishes joins that command's trace)."""
    contexts = _COMMAND_CONTEXTS.get()
    context = contexts.get(command_id) if contexts is not None else None
    if context is None:
        yield
        return
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)
