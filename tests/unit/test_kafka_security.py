"""Kafka TLS and SASL settings reach every client, and incomplete ones stop start-up."""

from __future__ import annotations

import ssl

import pytest
from pydantic import ValidationError

from setaccounts.kafka import make_consumer, make_producer, security
from setaccounts.settings import Settings
from setaccounts_dev.engines import PLAINTEXT, Engines, KafkaSecurity


def test_plaintext_by_default() -> None:
    assert security(Settings()) == {"security_protocol": "PLAINTEXT"}


async def test_sasl_ssl_options_for_every_client() -> None:
    """(async: aiokafka clients are built inside a running loop)"""
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="svc",
        kafka_sasl_password="s3cret",
    )
    options = security(settings)
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-256",
        "svc",
        "s3cret",
    )
    producer, consumer = make_producer(settings), make_consumer(settings, "planner", "t")
    assert producer.client._security_protocol == "SASL_SSL"
    assert consumer._client._sasl_plain_username == "svc"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "SASL_USERNAME"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "svc"}, "SASL_PASSWORD"),
        ({"kafka_ssl_certfile": "c.pem"}, "go together"),
        ({"kafka_security_protocol": "KERBEROS"}, "SASL_SSL"),
    ],
)
def test_incomplete_kafka_security_stops_start_up(values: dict[str, str], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        Settings(**values)  # type: ignore[arg-type]


def test_the_password_survives_the_round_trip_to_child_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="svc", kafka_sasl_password="s3cret"
    )
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    assert Settings() == settings


def test_the_engines_credentials_reach_every_client_in_settings_and_in_child_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "setaccounts", "generated-secret")
    found = Engines("127.0.0.1:9", "mongodb://127.0.0.1:1", "embedded", kafka_security=broker)
    in_process = Settings(**found.settings())
    assert security(in_process)["sasl_plain_password"] == "generated-secret"
    assert "generated-secret" not in repr(found)
    for name, value in found.as_env().items():
        monkeypatch.setenv(name, value)
    assert Settings() == in_process  # what a service started with `as_env()` connects with


def test_a_broker_without_authentication_clears_credentials_the_settings_had() -> None:
    secured = Settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="svc", kafka_sasl_password="s3cret"
    )
    moved = secured.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:9", **PLAINTEXT.settings()})
    assert security(moved) == {"security_protocol": "PLAINTEXT"}
