"""What the store and the broker can do, asked of the servers themselves at start and overridable by
settings: the one place the product adapts to its engines. Every other module asks a profile what it can
rely on (`StoreProfile.limit_pushdown`, `BrokerProfile.idempotent_producer`, the chunk sizes), never
which engine it talks to.

The product is shaped by MongoDB and Apache Kafka as they are deployed. The development engines differ:

- **SecantusDB** (the embedded MongoDB-wire-protocol store) gathers and decodes every document an index
  range matches before it applies `limit`, so "the next 101 after x" costs everything after x. Its
  `buildInfo` says so by a key of its own: `secantusVersion` next to a MongoDB-like `version` (and an
  all-zero `gitVersion`). Searches then read in `_id` windows (`setaccounts_api.rest.windows`). It also
  answers an `$in` on `_id` in time that grows faster than the hits and spends server CPU per resource in a
  large `update_many`, so the development launcher sets smaller chunks (`store_read_chunk`,
  `store_write_chunk`) than MongoDB's defaults.
- **Tansu** (the embedded broker without Java) advertises InitProducerId in its API versions but answers
  an idempotent producer's request with an error, so idempotence is probed by asking for a producer id,
  never read from the API versions.

Overrides (`None` = detect): `SETACCOUNTS_STORE_LIMIT_PUSHDOWN`, `SETACCOUNTS_KAFKA_IDEMPOTENCE`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import errors
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.transaction import InitProducerIdRequest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.kafka import security
from setaccounts.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class StoreProfile:
    limit_pushdown: bool  # a sorted, limited find over an index stops reading at the limit
    read_chunk: int  # most `_id`s one `$in` lookup names
    write_chunk: int  # most documents one guarded `update_many` names
    server: str = ""  # what the store says it is (for the start-up log)


@dataclass(frozen=True)
class BrokerProfile:
    idempotent_producer: bool  # the broker grants this client a producer id
    why: str = ""  # how that was decided (for the start-up log)


def store_profile_of(build_info: Mapping[str, Any], settings: Settings) -> StoreProfile:
    """The store's profile from its `buildInfo` answer, settings winning over what it says."""
    own_engine = "secantusVersion" in build_info
    pushdown = settings.store_limit_pushdown
    if pushdown is None:
        pushdown = not own_engine
    server = f"MongoDB-compatible {build_info.get('version', '?')}"
    if own_engine:
        server = f"SecantusDB {build_info['secantusVersion']} (MongoDB {build_info.get('version', '?')})"
    return StoreProfile(pushdown, settings.store_read_chunk, settings.store_write_chunk, server)


async def detect_store(db: AsyncDatabase[dict[str, Any]], settings: Settings) -> StoreProfile:
    """Asks the store (raises while it is down: the caller waits for it like for any start-up step)."""
    profile = store_profile_of(await db.command("buildInfo"), settings)
    log.info(
        "store profile",
        server=profile.server,
        limit_pushdown=profile.limit_pushdown,
        read_chunk=profile.read_chunk,
        write_chunk=profile.write_chunk,
    )
    return profile


def broker_profile_of(error_code: int) -> BrokerProfile:
    """The broker's profile from its answer to InitProducerId (no transactional id): 0 grants a producer
    id; an authorization failure means the principal lacks IdempotentWrite (brokers before 2.8, or no
    Write on any topic, KIP-679); a retriable one (a broker still loading) is raised, to be asked again;
    any other error, that the broker cannot."""
    error = errors.for_code(error_code)
    if error is not errors.NoError and error.retriable:
        raise error()
    if error is errors.NoError:
        return BrokerProfile(True, "the broker granted a producer id")
    if error is errors.ClusterAuthorizationFailedError:
        log.warning(
            "idempotent producer refused: grant IdempotentWrite on the cluster (or Write on the topics, "
            "Kafka 2.8+); producing without idempotence meanwhile"
        )
        return BrokerProfile(False, "IdempotentWrite not granted")
    return BrokerProfile(False, f"the broker answered InitProducerId with {error.__name__}")


async def detect_broker(settings: Settings, patience: float = 30.0) -> BrokerProfile:
    """Asks one broker for a producer id, as an idempotent producer would first, and again for `patience`
    seconds while it answers that it is still loading (a broker just started does); raises while no broker
    answers (the caller waits). `kafka_idempotence` set: no question asked."""
    if settings.kafka_idempotence is not None:
        return BrokerProfile(settings.kafka_idempotence, "set by SETACCOUNTS_KAFKA_IDEMPOTENCE")
    client = AIOKafkaClient(bootstrap_servers=settings.kafka_bootstrap_servers, **security(settings))
    deadline, delay = time.monotonic() + patience, 0.1
    try:
        await client.bootstrap()
        while True:
            request = InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000)
            response = await client.send(client.get_random_node(), request)
            try:
                profile = broker_profile_of(response.error_code)
                break
            except errors.KafkaError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
    finally:
        await client.close()
    log.info("broker profile", idempotent_producer=profile.idempotent_producer, why=profile.why)
    return profile
