"""What the engine profile concludes from the servers' answers, and that settings win over it."""

from __future__ import annotations

import pytest
from aiokafka import errors

from setaccounts.profile import broker_profile_of, store_profile_of
from setaccounts.settings import Settings

MONGODB = {"version": "8.0.4", "gitVersion": "bc35ab4305d9920d9d0491c1c9ef9b72383d31f9", "ok": 1.0}
# What the development store answers (SecantusDB 0.7): MongoDB's version, a key of its own, no git hash.
SECANTUS = {"version": "8.2.11", "secantusVersion": "0.7.0b3", "gitVersion": "0" * 40, "ok": 1.0}


def test_mongodb_stops_at_the_limit_and_the_development_store_does_not() -> None:
    assert store_profile_of(MONGODB, Settings()).limit_pushdown is True
    assert store_profile_of(SECANTUS, Settings()).limit_pushdown is False


def test_settings_win_over_what_the_store_says() -> None:
    assert store_profile_of(SECANTUS, Settings(store_limit_pushdown=True)).limit_pushdown is True
    assert store_profile_of(MONGODB, Settings(store_limit_pushdown=False)).limit_pushdown is False


def test_chunk_sizes_come_from_the_settings_with_mongodb_defaults() -> None:
    default = store_profile_of(MONGODB, Settings())
    assert (default.read_chunk, default.write_chunk) == (1000, 1000)
    tuned = store_profile_of(SECANTUS, Settings(store_read_chunk=50, store_write_chunk=25))
    assert (tuned.read_chunk, tuned.write_chunk) == (50, 25)


def test_a_granted_producer_id_means_idempotent_producers() -> None:
    assert broker_profile_of(errors.NoError.errno).idempotent_producer is True


@pytest.mark.parametrize(
    "error",
    [errors.UnknownError, errors.ClusterAuthorizationFailedError, errors.UnsupportedVersionError],
)
def test_a_broker_that_refuses_a_producer_id_gets_plain_producers(error: type[errors.KafkaError]) -> None:
    profile = broker_profile_of(error.errno)
    assert profile.idempotent_producer is False
    assert error.__name__ in profile.why or "IdempotentWrite" in profile.why


def test_a_broker_still_loading_is_asked_again_not_written_off() -> None:
    with pytest.raises(errors.CoordinatorLoadInProgressError):
        broker_profile_of(errors.CoordinatorLoadInProgressError.errno)


def test_unset_capabilities_are_left_to_the_children_to_detect() -> None:
    env = Settings().to_env()
    assert "SETACCOUNTS_STORE_LIMIT_PUSHDOWN" not in env and "SETACCOUNTS_KAFKA_IDEMPOTENCE" not in env
    assert Settings(kafka_idempotence=False).to_env()["SETACCOUNTS_KAFKA_IDEMPOTENCE"] == "false"
