"""Settings fail fast with a message that says what is wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from setaccounts.settings import Settings


def test_env_names_without_prefix_for_the_two_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("MONGODB_URI", "mongodb://m:27017")
    monkeypatch.setenv("SETACCOUNTS_PARTITIONS", "12")
    settings = Settings()
    assert (settings.kafka_bootstrap_servers, settings.mongodb_uri, settings.partitions) == (
        "k1:9092,k2:9092",
        "mongodb://m:27017",
        12,
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "host:port"),
        ("MONGODB_URI", "postgres://x", "mongodb://"),
        ("SETACCOUNTS_PARTITIONS", "0", "greater than or equal"),
        ("SETACCOUNTS_SYNC_WAIT_SECONDS", "soon", "valid number"),
    ],
)
def test_bad_values_stop_start_up(monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=says):
        Settings()


def test_settings_are_frozen_and_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(topic_prefix="x.", log_json=True)
    with pytest.raises(ValidationError):
        settings.partitions = 3  # type: ignore[misc]
    for key, value in settings.to_env().items():
        monkeypatch.setenv(key, value)
    assert Settings() == settings
    assert settings.topics.commands == "x.set-accounts.commands"
