"""Typed settings shared by both services; built once at start-up and frozen so a bad value fails fast."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from setaccounts.events.channels import CHANNELS, COMMANDS, DEADLETTER, RESULTS, UPDATES, Channel


class Topics:
    """Topic names: the channels' addresses behind one prefix, so tests can isolate runs by prefix alone."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.commands = self.of(COMMANDS)
        self.updates = self.of(UPDATES)
        self.results = self.of(RESULTS)
        self.deadletter = self.of(DEADLETTER)

    def of(self, channel: Channel) -> str:
        return f"{self.prefix}{channel.address}"

    def all(self) -> tuple[str, ...]:
        return tuple(self.of(c) for c in CHANNELS)


class Settings(BaseSettings):
    """Everything configurable; `KAFKA_BOOTSTRAP_SERVERS` and `MONGODB_URI` are read without a prefix."""

    model_config = SettingsConfigDict(env_prefix="SETACCOUNTS_", frozen=True, extra="ignore")

    kafka_bootstrap_servers: Annotated[
        str,
        Field(
            validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
            description="Comma-separated host:port list of Kafka brokers.",
        ),
    ] = "127.0.0.1:9092"
    mongodb_uri: Annotated[
        str,
        Field(
            validation_alias=AliasChoices("MONGODB_URI", "mongodb_uri"),
            description="MongoDB connection string.",
        ),
    ] = "mongodb://127.0.0.1:27017/?directConnection=true"
    mongodb_database: str = Field("fhir", description="Database holding resources and jobs.")
    topic_prefix: str = Field("", description="Prefix for every topic name (isolates test runs).")
    group_prefix: str = Field("setaccounts", description="Prefix for the consumer group ids.")
    partitions: int = Field(6, ge=1, le=1000, description="Partitions per topic when topics are created.")
    base_url: str = Field("", description="Public base URL of the API; empty = taken from the request.")
    sync_wait_seconds: float = Field(30.0, ge=0, description="How long a call without respond-async waits.")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest accepted request body.")
    max_bundle_entries: int = Field(
        10_000, ge=1, description="Most entries in one transaction or batch Bundle (413 beyond)."
    )
    plan_page_size: int = Field(1000, ge=1, description="Members read per planner page (and checkpoint).")
    apply_batch_size: int = Field(1000, ge=1, description="Most updates applied in one bulk write.")
    kafka_session_timeout_ms: int = Field(
        10_000, ge=1000, description="Consumer session timeout; a group join waits about half of it."
    )
    max_retries: int = Field(5, ge=0, description="Retries of a failing batch before dead-lettering it.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Propagator /metrics port; 0 = off.")
    log_level: str = Field("INFO", description="Log level name.")
    log_json: bool = Field(False, description="Log JSON lines instead of console text.")

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _hosts_have_ports(cls, value: str) -> str:
        for host in value.split(","):
            name, _, port = host.strip().rpartition(":")
            if not name or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port…], got {value!r}")
        return value

    @field_validator("mongodb_uri")
    @classmethod
    def _mongo_scheme(cls, value: str) -> str:
        if not value.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError(f"expected a mongodb:// or mongodb+srv:// URI, got {value!r}")
        return value

    @cached_property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    def to_env(self) -> dict[str, str]:
        """These settings as the environment variables that rebuild them (for child processes)."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers, "MONGODB_URI": self.mongodb_uri}
        for name, value in self.model_dump(exclude={"kafka_bootstrap_servers", "mongodb_uri"}).items():
            env[f"SETACCOUNTS_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return env

    def group(self, role: str) -> str:
        return f"{self.group_prefix}.{role}"
