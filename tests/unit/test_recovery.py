"""Which topics a broker lost, from the end offsets seen before and now, and which metadata answers can
tell at all."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import LeaderNotAvailableError, UnknownTopicOrPartitionError
from aiokafka.protocol.metadata import MetadataResponse_v1

from setaccounts.kafka import unsettled
from setaccounts.recovery import emptied


def tp(topic: str, partition: int) -> TopicPartition:
    return TopicPartition(topic, partition)


def test_topics_that_only_grew_were_not_lost() -> None:
    before = {tp("a", 0): 10, tp("a", 1): 0, tp("b", 0): 5}
    now = {tp("a", 0): 12, tp("a", 1): 0, tp("b", 0): 5, tp("b", 1): 0}  # a partition added
    assert emptied(before, now) == []


def test_a_partition_that_ends_before_it_did_means_its_topic_was_recreated() -> None:
    before = {tp("a", 0): 10, tp("a", 1): 7, tp("b", 0): 5}
    now = {tp("a", 0): 11, tp("a", 1): 2, tp("b", 0): 5}
    assert emptied(before, now) == ["a"]


def test_a_partition_or_topic_that_no_longer_exists_was_lost() -> None:
    before = {tp("a", 0): 0, tp("a", 1): 0, tp("b", 0): 3}
    now = {tp("a", 0): 0}  # auto-created again with one partition; b not there at all
    assert emptied(before, now) == ["a", "b"]


def metadata_answer(brokers: list[tuple[int, str, int, str]], topics: dict[str, int]) -> Any:
    """A broker's metadata answer as the client decodes it: `topics` maps each name to its error code."""
    partitions = [(0, 0, 1, [1], [1])]
    return MetadataResponse_v1(
        brokers, 1, [(code, name, False, partitions if code == 0 else []) for name, code in topics.items()]
    )


BROKER = (1, "127.0.0.1", 9092, "")


def test_an_answer_naming_topics_or_calling_them_unknown_tells_which_exist() -> None:
    assert unsettled(metadata_answer([BROKER], {"a": 0, "b": UnknownTopicOrPartitionError.errno})) == ""


def test_an_answer_without_brokers_cannot_tell_which_topics_exist() -> None:
    """What a broker resumed after a pause may send first: taken as every topic lost, it ended jobs."""
    assert unsettled(metadata_answer([], {})) == "no brokers in the answer"


def test_a_topic_whose_leader_is_not_elected_yet_is_not_a_missing_topic() -> None:
    answer = metadata_answer([BROKER], {"a": 0, "b": LeaderNotAvailableError.errno})
    assert unsettled(answer) == "b: LeaderNotAvailableError"
