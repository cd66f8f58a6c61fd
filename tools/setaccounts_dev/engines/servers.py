"""The servers a run uses and how clients reach them: `Engines` (addresses, security, the settings the
services need on them) and `KafkaSecurity`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class EngineError(RuntimeError):
    """An engine could not be found or started; the message says which and what to check."""


_SECURITY_VARIABLES = {
    "protocol": "SETACCOUNTS_KAFKA_SECURITY_PROTOCOL",
    "mechanism": "SETACCOUNTS_KAFKA_SASL_MECHANISM",
    "username": "SETACCOUNTS_KAFKA_SASL_USERNAME",
    "password": "SETACCOUNTS_KAFKA_SASL_PASSWORD",
}


@dataclass(frozen=True)
class KafkaSecurity:
    """How clients authenticate to a broker: the `kafka_security_protocol` and `kafka_sasl_*` settings."""

    protocol: str = "PLAINTEXT"
    mechanism: str = ""
    username: str = ""
    password: str = field(default="", repr=False)

    @classmethod
    def from_environ(cls) -> KafkaSecurity:
        """What the environment names (servers from `KAFKA_BOOTSTRAP_SERVERS` come with their security)."""
        given = {key: os.environ[name] for key, name in _SECURITY_VARIABLES.items() if os.environ.get(name)}
        return cls(**given)

    def settings(self) -> dict[str, Any]:
        """As keyword arguments of `Settings` (or a `model_copy` update): the protocol, and SASL if used."""
        from pydantic import SecretStr

        fields: dict[str, Any] = {"kafka_security_protocol": self.protocol}
        if self.protocol.startswith("SASL_"):
            fields |= {"kafka_sasl_username": self.username, "kafka_sasl_password": SecretStr(self.password)}
            if self.mechanism:  # else the settings' default
                fields["kafka_sasl_mechanism"] = self.mechanism
        return fields

    def as_env(self) -> dict[str, str]:
        """As the environment variables `Settings` reads (only those that are set)."""
        values = {name: str(getattr(self, key)) for key, name in _SECURITY_VARIABLES.items()}
        return {name: value for name, value in values.items() if value}


PLAINTEXT = KafkaSecurity()


@dataclass(frozen=True)
class Engines:
    kafka_bootstrap_servers: str
    mongodb_uri: str
    kind: str  # "environment", "docker" or "embedded"
    description: str = ""  # which servers, in words, e.g. "Apache Kafka 4.1.1 (embedded KRaft) + SecantusDB"
    kafka_security: KafkaSecurity = PLAINTEXT
    # Settings these servers work best with (e.g. the development store's chunk sizes, `secantus.TUNING`).
    tuning: Mapping[str, int] = field(default_factory=dict)

    def as_env(self) -> dict[str, str]:
        """The variables every service reads to reach these servers (the SASL password included), and the
        settings they work best with."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers,
            "MONGODB_URI": self.mongodb_uri,
            **self.kafka_security.as_env(),
            **{f"SETACCOUNTS_{name.upper()}": str(value) for name, value in self.tuning.items()},
        }

    def topic_env(self) -> dict[str, str]:
        """Topic settings these servers need: the development engines (embedded, Docker) are one broker
        each, so topics get one replica; servers from the environment keep the services' defaults."""
        if self.kind == "environment":
            return {}
        return {"SETACCOUNTS_REPLICATION_FACTOR": "1", "SETACCOUNTS_MIN_INSYNC_REPLICAS": "1"}

    def settings(self) -> dict[str, Any]:
        """The servers, how to reach them and their tuning, as keyword arguments of `Settings`."""
        return {
            "kafka_bootstrap_servers": self.kafka_bootstrap_servers,
            "mongodb_uri": self.mongodb_uri,
            **self.kafka_security.settings(),
            **self.tuning,
        }
