"""The one walk over a parsed body: what BSON cannot encode is refused, and sizes match BSON's own."""

from __future__ import annotations

import json
from typing import Any

import bson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from setaccounts.fhir.outcomes import FhirError
from setaccounts_api.fhir_body import BodyRefused, parse_json
from setaccounts_api.storable import BSON_MAX_BYTES, MAX_RESOURCE_BYTES, Unstorable, _Walker, check_storable

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text().filter(lambda k: "\x00" not in k), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text().filter(lambda k: "\x00" not in k), json_values, max_size=6))
def test_the_estimate_is_the_size_bson_encodes(document: dict[str, Any]) -> None:
    try:
        encoded = bson.encode(document)
    except UnicodeEncodeError:  # hypothesis text may hold lone surrogates: the walk must refuse them too
        with pytest.raises(Unstorable, match="lone surrogate"):
            check_storable(document)
        return
    assert _Walker(MAX_RESOURCE_BYTES, skip=None).size(document, ()) == len(encoded)


@pytest.mark.parametrize(
    ("raw", "reason", "where"),
    [
        (rb'{"resourceType":"Observation","a\u0000b":1}', "NUL character in a key", "$.a\\x00b"),
        (rb'{"resourceType":"Observation","note":[{"text":"\ud800"}]}', "lone surrogate in a string", None),
        (rb'{"resourceType":"Observation","\udc00":1}', "lone surrogate in a key", None),
        (b'{"resourceType":"Observation","valueInteger":%d}' % 2**70, "integer outside signed 64 bits", None),
        (b'{"resourceType":"Observation","valueInteger":%d}' % -(2**63 + 1), "integer outside", None),
    ],
)
def test_values_bson_cannot_encode_are_a_400_naming_where(raw: bytes, reason: str, where: str | None) -> None:
    with pytest.raises(BodyRefused) as refused:
        parse_json(raw)
    assert refused.value.status == 400
    assert refused.value.code == "invalid"
    assert refused.value.diagnostics.startswith(reason)
    if where:
        assert refused.value.expression == [where]


def test_the_64_bit_bounds_themselves_are_accepted() -> None:
    raw = b'{"resourceType":"Observation","a":%d,"b":%d}' % (2**63 - 1, -(2**63))
    assert parse_json(raw)["a"] == 2**63 - 1


def test_a_resource_over_the_document_limit_is_a_413_though_its_json_is_smaller() -> None:
    """BSON spells out array indexes as keys: 16 MB of BSON fits in less JSON."""
    notes = [{"text": "x" * 1000}] * 16_500
    raw = json.dumps({"resourceType": "Observation", "note": notes}).encode()
    assert len(raw) < BSON_MAX_BYTES < len(bson.encode(json.loads(raw)))
    with pytest.raises(BodyRefused) as refused:
        parse_json(raw)
    assert (refused.value.status, refused.value.code) == (413, "too-costly")


def test_a_processed_bundle_is_measured_by_its_entries_not_as_a_whole() -> None:
    entry = {"resource": {"resourceType": "Basic", "text": "x" * 1000}, "request": {"method": "POST"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry] * 50}
    check_storable(bundle, max_resource_bytes=10_000)  # the Bundle is ~50 KB, every entry ~1 KB
    with pytest.raises(Unstorable, match="document size limit"):
        check_storable({**bundle, "type": "collection"}, max_resource_bytes=10_000)  # stored as is
    big = {"resourceType": "Basic", "text": "x" * 20_000}
    with pytest.raises(Unstorable) as refused:
        check_storable({**bundle, "entry": [entry, {"resource": big}]}, max_resource_bytes=10_000)
    assert refused.value.where == "$.entry[1].resource"


def test_nesting_beyond_the_parser_is_a_400_not_a_crash() -> None:
    with pytest.raises(FhirError) as refused:
        parse_json(b"[" * 100_000 + b"]" * 100_000)
    assert refused.value.status == 400


def test_diagnostics_cut_long_keys_short() -> None:
    key = "k" * 10_000 + "\x00"
    with pytest.raises(BodyRefused) as refused:
        parse_json(json.dumps({"resourceType": "Basic", key: 1}).encode())
    assert len(refused.value.diagnostics) < 200
