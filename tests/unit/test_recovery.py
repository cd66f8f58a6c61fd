"""Which topics a broker lost, from the end offsets seen before and now."""

from __future__ import annotations

from aiokafka import TopicPartition

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
