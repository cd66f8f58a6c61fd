"""Records as they go on the wire, and the partition Kafka's default partitioner gives a key."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Encoded:
    """An event as it goes on the wire: key, value, headers and, when known, its partition."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int | None = None


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of a key (Java `Utils.murmur2`, as aiokafka's default partitioner computes it),
    taken a word at a time rather than aiokafka's byte at a time (measured: about 4 µs a member key
    against 11 µs)."""
    length = len(data)
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = 0x9747B28C ^ length
    tail = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:tail]):
        k = (k * m) & mask
        k = ((k ^ (k >> 24)) * m) & mask
        h = ((h * m) & mask) ^ k
    extra = length - tail
    if extra:
        if extra >= 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition the default partitioner gives `key` among the topic's sorted `partitions`."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]
