"""Prometheus metrics of both services (prometheus-client's default registry, as its docs recommend)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECORDS = Counter(
    "setaccounts_records_total", "Kafka records consumed, by role and what became of them", ["role", "result"]
)
BATCH_SECONDS = Histogram(
    "setaccounts_batch_seconds",
    "Time to handle one consumed batch, by role",
    ["role"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
MEMBER_UPDATES = Counter(
    "setaccounts_member_updates_total", "Member updates applied, by outcome", ["outcome"]
)
COMMANDS = Counter(
    "setaccounts_commands_total", "Set-accounts commands published by the API, by mode", ["mode"]
)
OUTAGE = Gauge(
    "setaccounts_dependency_outage",
    "1 while a role waits for the store or the broker to answer again, by role",
    ["role"],
)
TOPICS_MISSING = Gauge(
    "setaccounts_topics_missing",
    "Topics of this service the broker does not have (0 once recreated), by service",
    ["service"],
)
JOBS_FINISHED = Counter("setaccounts_jobs_finished_total", "Jobs that reached a final status", ["status"])


def serve(port: int) -> None:
    """Expose /metrics on `port` (0 = off): the propagator has no HTTP server of its own."""
    if port:
        start_http_server(port)
