"""How long a consumer's fetch waits at the broker: Kafka's default unless an operator says otherwise, in
process and in the child processes that read the setting from their environment."""

from __future__ import annotations

import pytest

from setaccounts.kafka import make_consumer
from setaccounts.settings import Settings


async def test_consumers_keep_kafkas_default_wait() -> None:
    """(async: aiokafka clients are built inside a running loop)"""
    assert make_consumer(Settings(), "applier", "t")._fetch_max_wait_ms == 500


async def test_an_operators_wait_reaches_every_role_in_process_and_in_child_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    in_process = Settings(kafka_fetch_max_wait_ms=2000)
    for name, value in in_process.to_env().items():
        monkeypatch.setenv(name, value)
    in_child = Settings()  # what a service started with those variables reads
    for settings in (in_process, in_child):
        for role in ("planner", "applier", "aggregator"):
            assert make_consumer(settings, role, "t")._fetch_max_wait_ms == 2000
