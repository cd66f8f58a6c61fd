"""Audit fixtures: a client that drives `$set-accounts` over HTTP, and the CLI's environment."""

from __future__ import annotations

import os

import httpx
import pytest

from setaccounts.settings import Settings
from tests.helpers.operation_client import SetAccounts


@pytest.fixture(autouse=True)
def piped_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's output as when piped, as the tests read it: wide (pytest-xdist workers set COLUMNS=80,
    which the CLI would take for a narrow terminal and fold the references it prints)."""
    monkeypatch.delenv("COLUMNS", raising=False)


@pytest.fixture
def set_accounts(api: httpx.AsyncClient) -> SetAccounts:
    return SetAccounts(api)


@pytest.fixture
def audit_env(settings: Settings) -> dict[str, str]:
    """The environment the real CLI reads its connection from."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MONGODB_URI": settings.mongodb_uri,
        "SETACCOUNTS_TOPIC_PREFIX": settings.topic_prefix,
        "SETACCOUNTS_MONGODB_DATABASE": settings.mongodb_database,
        "SETACCOUNTS_AUTH_ISSUER": settings.auth_issuer,
        "SETACCOUNTS_AUTH_AUDIENCE": settings.auth_audience,
        "SETACCOUNTS_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "SETACCOUNTS_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "SETACCOUNTS_KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "SETACCOUNTS_KAFKA_SASL_PASSWORD": settings.kafka_sasl_password.get_secret_value(),
    }
