"""How long a consumer's fetch waits at the broker: the services' default, and what a broker that answers
waiting fetches late (the embedded Tansu) gets instead, in process and in child processes."""

from __future__ import annotations

import pytest

from setaccounts.kafka import make_consumer
from setaccounts.settings import Settings
from setaccounts_dev.engines import TANSU_FETCH_MAX_WAIT_MS, Engines


async def test_an_idle_consumer_asks_every_two_seconds_by_default() -> None:
    """(async: aiokafka clients are built inside a running loop)"""
    consumer = make_consumer(Settings(), "applier", "t")
    assert consumer._fetch_max_wait_ms == 2000


async def test_a_broker_that_needs_a_shorter_wait_gets_it_in_settings_and_in_child_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = Engines(
        "127.0.0.1:9", "mongodb://127.0.0.1:1", "embedded", kafka_fetch_max_wait_ms=TANSU_FETCH_MAX_WAIT_MS
    )
    in_process = Settings(**found.settings())
    for name, value in found.as_env().items():
        monkeypatch.setenv(name, value)
    in_child = Settings()  # what a service started with `as_env()` reads
    for settings in (in_process, in_child):
        assert make_consumer(settings, "planner", "t")._fetch_max_wait_ms == TANSU_FETCH_MAX_WAIT_MS


async def test_other_brokers_keep_the_default() -> None:
    found = Engines("127.0.0.1:9", "mongodb://127.0.0.1:1", "environment")
    assert "SETACCOUNTS_KAFKA_FETCH_MAX_WAIT_MS" not in found.as_env()
    assert make_consumer(Settings(**found.settings()), "aggregator", "t")._fetch_max_wait_ms == 2000
