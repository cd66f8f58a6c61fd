"""Typed settings shared by both services; built once at start-up and frozen so a bad value fails fast."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from setaccounts.events.channels import CHANNELS, COMMANDS, DEADLETTER, RESULTS, UPDATES, Channel

DAY_MS = 24 * 60 * 60 * 1000


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
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client connects."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism (with SASL_PLAINTEXT or SASL_SSL)."
    )
    kafka_sasl_username: str = Field("", description="SASL user name.")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password (never logged).")
    kafka_ssl_cafile: str = Field("", description="CA bundle that signs the brokers' certificates.")
    kafka_ssl_certfile: str = Field("", description="Client certificate (mutual TLS).")
    kafka_ssl_keyfile: str = Field("", description="Client certificate's private key (mutual TLS).")
    mongodb_database: str = Field("fhir", description="Database holding resources and jobs.")
    topic_prefix: str = Field("", description="Prefix for every topic name (isolates test runs).")
    group_prefix: str = Field("setaccounts", description="Prefix for the consumer group ids.")
    partitions: int = Field(6, ge=1, le=1000, description="Partitions per topic when topics are created.")
    replication_factor: int = Field(
        3, ge=1, description="Replicas per topic when topics are created (1 for a single broker)."
    )
    min_insync_replicas: int = Field(
        2, ge=1, description="Replicas that must have a write before it is acknowledged (acks=all)."
    )
    retention_ms_commands: int = Field(-1, ge=-1, description="Commands topic retention; -1 keeps forever.")
    retention_ms_results: int = Field(-1, ge=-1, description="Results topic retention; -1 keeps forever.")
    retention_ms_updates: int = Field(7 * DAY_MS, ge=-1, description="Updates topic retention.")
    retention_ms_deadletter: int = Field(30 * DAY_MS, ge=-1, description="Dead-letter topic retention.")
    base_url: str = Field("", description="Public base URL of the API; empty = taken from the request.")
    sync_wait_seconds: float = Field(30.0, ge=0, description="How long a call without respond-async waits.")
    dry_run_async_above: int = Field(
        10_000, ge=0, description="A dry run over more members than this answers 202 and runs in the API."
    )
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, description="Largest accepted request body.")
    max_bundle_entries: int = Field(
        10_000, ge=1, description="Most entries in one transaction or batch Bundle (413 beyond)."
    )
    plan_page_size: int = Field(1000, ge=1, description="Members read per planner page (and checkpoint).")
    apply_batch_size: int = Field(1000, ge=1, description="Most updates applied in one bulk write.")
    # Fairness between commands (docs/architecture.md, "Fairness between commands"): the planner and the
    # applier run commands side by side, and a fan-out runs only a little ahead of the applier, so a small
    # command's updates are taken at once even while a large job runs.
    plan_concurrency: int = Field(
        16, ge=1, description="Commands the planner runs at once (one at a time per target)."
    )
    plan_lead_seconds: float = Field(
        2.0,
        gt=0,
        description="How far one command's fan-out runs ahead of the applier: its emitted but unapplied "
        "updates are kept under this many seconds of the applier's measured pace.",
    )
    plan_least_lead: int = Field(
        50, ge=1, description="Unapplied updates a fan-out may always have, whatever the applier's pace."
    )
    apply_batch_seconds: float = Field(
        0.5,
        gt=0,
        description="Time one applier batch of a command aims at: batches are sized from the measured time "
        "per update (at most apply_batch_size); other commands' batches run beside it.",
    )
    kafka_session_timeout_ms: int = Field(
        10_000,
        ge=1000,
        description="Consumer session timeout; a group join waits about half of it. Kafka brokers refuse "
        "values below their group.min.session.timeout.ms (6 s by default).",
    )
    kafka_fetch_max_wait_ms: int = Field(
        500,
        ge=0,
        le=30_000,
        description="Longest a consumer's fetch waits at the broker for records: how often an idle consumer "
        "asks again (each ask costs CPU), and how late a record can be seen when the consumer still holds "
        "records of other partitions (one fetch in flight per broker).",
    )
    # What the engines can do (`setaccounts.profile`): asked of the servers at start unless set here.
    store_limit_pushdown: bool | None = Field(
        None,
        description="Whether a sorted, limited find stops reading at the limit (MongoDB does); unset = "
        "asked of the store (buildInfo). False: searches read in `_id` windows.",
    )
    kafka_idempotence: bool | None = Field(
        None,
        description="Idempotent producers (enable_idempotence, acks=all); unset = on where the broker "
        "grants a producer id.",
    )
    # MongoDB answers an `$in` of a thousand `_id`s and a thousand-document `update_many` in one pass each;
    # larger statements save little more (the apply batch is 1,000 too). The development store wants far
    # smaller ones: its launcher sets them.
    store_read_chunk: int = Field(1000, ge=1, le=100_000, description="Most `_id`s one `$in` lookup names.")
    store_write_chunk: int = Field(
        1000, ge=1, le=100_000, description="Most documents one propagation `update_many` names."
    )
    max_retries: int = Field(5, ge=0, description="Retries of a failing batch before dead-lettering it.")
    metrics_port: int = Field(0, ge=0, le=65535, description="Propagator /metrics port; 0 = off.")
    auth_issuer: str = Field(
        "", description="Expected `iss` of tokens; without a JWKS URL or file, keys come from its discovery."
    )
    auth_jwks_url: str = Field("", description="URL of the JWKS holding the token signing keys.")
    auth_jwks_file: str = Field("", description="Path of a JWKS file holding the token signing keys.")
    auth_audience: str = Field("", description="Expected `aud` of tokens (required by the API).")
    auth_algorithms: str = Field("RS256,ES256,PS256,EdDSA", description="Accepted signature algorithms.")
    auth_clock_skew_seconds: int = Field(30, ge=0, le=600, description="Leeway for exp, nbf and iat.")
    auth_jwks_cache_seconds: int = Field(300, ge=0, description="How long fetched keys are trusted.")
    auth_jwks_refresh_seconds: float = Field(
        10.0, ge=0, description="Least time between fetches triggered by an unknown key id."
    )
    auth_admin_claim: str = Field("roles", description="Claim (dotted path) holding the admin role.")
    auth_admin_value: str = Field("setaccounts-admin", description="Value of that claim that makes an admin.")
    auth_accounts_claim: str = Field(
        "accounts", description="Claim (dotted path) listing a token's accounts."
    )
    auth_scope_claim: str = Field("scope", description="Claim holding the SMART scopes (space-separated).")
    console_client_id: str = Field(
        "", description="OpenID client id of the jobs console (authorization code + PKCE at the issuer)."
    )
    console_scope: str = Field("openid", description="Scopes the jobs console asks the issuer for.")
    console_trace_url: str = Field(
        "", description="Link to a job's trace in the console: a URL with `{trace_id}` in it; empty = none."
    )
    console_dev_key_file: str = Field(
        "",
        description="Development only: the PEM signing key the console's dev sign-in mints tokens with "
        "(`make run` sets it); empty = no dev sign-in.",
    )
    inherit_accounts: bool = Field(
        True, description="Ordinary writes give a resource the accounts of the patients it belongs to."
    )
    trusted_hosts: str = Field(
        "localhost,127.0.0.1", description="Host headers accepted when base_url is empty ('*' = any)."
    )
    rate_limit_per_second: float = Field(0.0, ge=0, description="Requests per second per client; 0 = off.")
    rate_limit_burst: int = Field(20, ge=1, description="Requests a client may make at once.")
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

    @model_validator(mode="after")
    def _insync_within_replicas(self) -> Settings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"min_insync_replicas ({self.min_insync_replicas}) exceeds replication_factor "
                f"({self.replication_factor}): no write could ever be acknowledged"
            )
        return self

    @field_validator("auth_jwks_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value

    @field_validator("console_trace_url")
    @classmethod
    def _trace_url_template(cls, value: str) -> str:
        if value and not (value.startswith(("https://", "http://")) and "{trace_id}" in value):
            raise ValueError(f"expected an http(s) URL with {{trace_id}} in it, got {value!r}")
        return value

    @field_validator("auth_algorithms")
    @classmethod
    def _known_algorithms(cls, value: str) -> str:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
        names = [a.strip() for a in value.split(",") if a.strip()]
        if not names or set(names) - allowed:
            raise ValueError(f"expected asymmetric JWS algorithms from {sorted(allowed)}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Settings:
        sasl = self.kafka_security_protocol.startswith("SASL_")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
            raise ValueError(
                f"Kafka security protocol {self.kafka_security_protocol} needs "
                "SETACCOUNTS_KAFKA_SASL_USERNAME and SETACCOUNTS_KAFKA_SASL_PASSWORD"
            )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("SETACCOUNTS_KAFKA_SSL_CERTFILE and SETACCOUNTS_KAFKA_SSL_KEYFILE go together")
        return self

    def auth_problems(self) -> list[str]:
        """What keeps the API from verifying tokens: it refuses to start while this is not empty."""
        problems = []
        if not (self.auth_issuer or self.auth_jwks_url or self.auth_jwks_file):
            problems.append(
                "no token keys: set SETACCOUNTS_AUTH_ISSUER, SETACCOUNTS_AUTH_JWKS_URL or "
                "SETACCOUNTS_AUTH_JWKS_FILE"
            )
        elif not (self.auth_jwks_url or self.auth_jwks_file) and not self.auth_issuer.startswith(
            ("https://", "http://")
        ):
            problems.append("OpenID discovery needs SETACCOUNTS_AUTH_ISSUER to be an http(s) URL")
        if not self.auth_audience:
            problems.append("no audience: set SETACCOUNTS_AUTH_AUDIENCE")
        return problems

    @cached_property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    def to_env(self) -> dict[str, str]:
        """These settings as the environment variables that rebuild them (for child processes)."""
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap_servers, "MONGODB_URI": self.mongodb_uri}
        for name, value in self.model_dump(exclude={"kafka_bootstrap_servers", "mongodb_uri"}).items():
            if value is None:
                continue  # unset: the child decides as this process did (e.g. asks the servers)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"SETACCOUNTS_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        return env

    def group(self, role: str) -> str:
        return f"{self.group_prefix}.{role}"
