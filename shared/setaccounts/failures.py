"""The line between failures worth retrying and failures that cannot succeed, and which of the retried
ones are outages of a dependency (the store or the broker not answering) rather than a fault of the input."""

from __future__ import annotations

import asyncio

from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    UnknownError,
)
from pymongo.errors import ConnectionFailure, PyMongoError, WTimeoutError


class PermanentFailure(Exception):
    """Retrying cannot help (the input itself is wrong): a consume loop dead-letters the record at once.

    Every other exception is taken as transient and retried.
    """


_KAFKA_OUTAGES = (
    KafkaConnectionError,
    NodeNotReadyError,
    RequestTimedOutError,
    KafkaTimeoutError,
    UnknownError,
)


def is_outage(exc: BaseException) -> bool:
    """A dependency that does not answer for now: wait for it, never park the input as poison.

    MongoDB: connection failures, server selection and network time-outs, not-primary (all
    `ConnectionFailure`), write-concern time-outs and anything labelled retryable. Kafka: connection, node
    and request time-outs, and what the client itself marks retriable; `KafkaTimeoutError` and
    `UnknownError` too, which aiokafka marks non-retriable but a restarting broker answers with.
    """
    if isinstance(exc, PermanentFailure):
        return False
    if isinstance(exc, ConnectionFailure | WTimeoutError):
        return True
    if isinstance(exc, PyMongoError):
        return exc.has_error_label("RetryableWriteError") or exc.has_error_label("TransientTransactionError")
    if isinstance(exc, KafkaError):
        return isinstance(exc, _KAFKA_OUTAGES) or bool(getattr(exc, "retriable", False))
    return isinstance(exc, asyncio.TimeoutError | ConnectionError)
