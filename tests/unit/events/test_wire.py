"""The fan-out's encoded updates: the same bytes, key and partition as one model per member would give."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from setaccounts.events import MemberUpdate, encode, headers_for
from setaccounts.events.base import Reference, is_reference
from setaccounts.events.updates import MemberUpdateTemplate
from setaccounts.events.wire import murmur2 as compiled_murmur2
from setaccounts.events.wire import partition_for

REFERENCES = st.from_regex(r"\A(Observation|Encounter|Basic|Patient|Nope)/[A-Za-z0-9\-\.]{1,64}\Z")
ANY_TEXT = st.one_of(REFERENCES, st.text(max_size=80))
_REFERENCE = TypeAdapter(Reference)


def _accepted(value: str) -> bool:
    try:
        _REFERENCE.validate_python(value)
    except ValidationError:
        return False
    return True


@given(st.binary(max_size=100))
def test_murmur2_is_kafkas(key: bytes) -> None:
    assert compiled_murmur2(key) == murmur2(key)


@pytest.mark.parametrize(
    ("key", "signed"),
    [  # Kafka's own vectors (clients' UtilsTest.testMurmur2), as Java's signed ints
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_the_java_clients_vectors(key: bytes, signed: int) -> None:
    assert compiled_murmur2(key) == signed & 0xFFFFFFFF


@given(REFERENCES, st.lists(st.integers(0, 40), min_size=1, max_size=12, unique=True))
def test_partition_is_the_default_partitioners(member: str, partitions: list[int]) -> None:
    ordered = sorted(partitions)
    key = member.encode()

    assert partition_for(key, ordered) == DefaultPartitioner()(key, ordered, ordered)


@given(ANY_TEXT)
def test_is_reference_accepts_what_the_reference_type_accepts(value: str) -> None:
    assert is_reference(value) == _accepted(value)


@given(
    member=REFERENCES.filter(is_reference),
    add=st.lists(st.sampled_from(["Organization/a", "Account/b"]), max_size=2),
    remove=st.lists(st.sampled_from(["Organization/c"]), max_size=1),
    seq=st.integers(1, 10**12),
)
def test_a_templated_update_is_the_models_record(
    member: str, add: list[str], remove: list[str], seq: int
) -> None:
    fields = {
        "command_id": "cmd-1.x:y",
        "target": "Patient/p-1",
        "target_seq": seq,
        "add": add,
        "remove": remove,
    }
    template = MemberUpdateTemplate.of(**fields, partitions=[5, 0, 3, 1, 2, 4])
    model = MemberUpdate(**fields, member=member)

    record = template.record(member)

    assert record.value == encode(model)
    assert record.key == model.key.encode()
    assert record.headers == headers_for(model)
    assert record.partition == DefaultPartitioner()(record.key, [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5])
    assert MemberUpdate.model_validate_json(record.value) == model


@pytest.mark.parametrize("bad", ["Observation", "Nope/x", 'Observation/a"b', "Observation/a\n"])
def test_a_member_that_is_no_reference_is_refused(bad: str) -> None:
    template = MemberUpdateTemplate.of(
        command_id="c", target="Patient/p", target_seq=1, add=["Organization/a"], remove=[], partitions=[0]
    )

    with pytest.raises(ValueError, match="not a reference"):
        template.record(bad)
