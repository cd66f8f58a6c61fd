"""structlog set up once per process: console text for people, JSON lines for log shippers; a line logged
inside a span carries its `trace_id` and `span_id`."""

from __future__ import annotations

import logging

import structlog
from opentelemetry import trace
from structlog.types import EventDict, WrappedLogger


def add_trace_ids(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    """The current span's ids, when a span is current (tracing on, or a caller's context)."""
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        event["trace_id"] = format(span.trace_id, "032x")
        event["span_id"] = format(span.span_id, "016x")
    return event


def configure_logging(level: str = "INFO", json: bool = False) -> None:
    logging.basicConfig(level=level.upper(), format="%(message)s")
    for noisy in ("aiokafka", "pymongo"):  # their INFO lines narrate every rebalance and connection
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
