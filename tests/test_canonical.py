"""Canonical form v1: published vectors, an independent reference implementation, and properties."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tools.make_vectors import ref_canonical, ref_format_double

from otel_audit import canonical
from otel_audit.canonical import CanonicalError, canonical_bytes, format_double
from otel_audit.decoding import DecodeError
from otel_audit.otlpjson import encode_anyvalue
from otel_audit.verify import decode_value

VECTORS_DIR = Path(canonical.__file__).parent / "testvectors"
VECTORS = json.loads((VECTORS_DIR / "canonical-v1.json").read_text("utf-8"))
SID = "0123456789abcdef0123456789abcdef"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _decode_input(inp: Mapping[str, Any]) -> tuple[Any, ...]:
    attrs = {kv["key"]: decode_value(kv["value"]) for kv in inp["attributes"]}
    body = None if inp["body"] is None else decode_value(inp["body"])
    return (inp["stream_id"], inp["seq"], inp["event_name"], int(inp["time_unix_nano"]), inp["severity_number"],
            inp["severity_text"], body, attrs)


def canon(body: Any = None, attributes: Mapping[str, Any] | None = None) -> bytes:
    return canonical_bytes(SID, 1, "e", 1700000000000000000, 9, "INFO", body, attributes)


# -- vectors ---------------------------------------------------------------------------------------


def test_vector_file_is_current() -> None:
    """The vector files are exactly what tests/tools/make_vectors.py generates from the reference."""
    from tools.make_vectors import main

    assert main(["--check"]) == 0


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_canonical_vector(vector: dict[str, Any]) -> None:
    """canonical_bytes of each vector's decoded input is the published text, and its digest (leaf) matches."""
    got = canonical_bytes(*_decode_input(vector["input"]))
    assert got == vector["canonical"].encode("utf-8")
    assert got.hex() == vector["canonical_hex"]
    prev = bytes.fromhex(vector["input"]["prev"])
    assert hashlib.sha256(b"\x00" + prev + got).hexdigest() == vector["leaf_sha256"]
    assert canonical.record_digest(prev, got).hex() == vector["leaf_sha256"]


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vector_is_refused(vector: dict[str, Any]) -> None:
    """An input with no canonical form (an integer outside int64) is refused: by strict decoding
    (int-out-of-range) before canonical_bytes, which refuses such a value too (CanonicalError)."""
    with pytest.raises(DecodeError) as info:
        _decode_input(vector["input"])
    assert info.value.rule == "int-out-of-range"
    with pytest.raises(CanonicalError):
        canonical_bytes(*_decode_input_leniently(vector["input"]))


def _decode_input_leniently(inp: Mapping[str, Any]) -> tuple[Any, ...]:
    from tools.make_vectors import ref_decode

    attrs = {kv["key"]: ref_decode(kv["value"]) for kv in inp["attributes"]}
    return (inp["stream_id"], inp["seq"], inp["event_name"], int(inp["time_unix_nano"]), inp["severity_number"],
            inp["severity_text"], ref_decode(inp["body"]), attrs)


def test_vectors_cover_the_required_cases() -> None:
    """The published vectors are about 30 and distinct where their names say they differ."""
    vs = {v["name"]: v for v in VECTORS["vectors"]}
    assert len(vs) >= 30
    bodies = ["int body 1", 'string body "1"', "double body 1.0", "bool body true"]
    assert len({vs[n]["leaf_sha256"] for n in bodies}) == 4
    assert vs["combining accent (NFD) is kept as is"]["canonical"] != vs[
        "precomposed accent (NFC) differs from NFD"]["canonical"]
    assert vs["integrity attributes are left out"]["canonical"] == vs[
        "same record without the integrity attributes"]["canonical"]
    assert vs["empty AnyValue body is null, as no body"]["canonical"].endswith(",null,{}]")


def test_reference_implementation_reproduces_vectors() -> None:
    """The spec-derived reference implementation in tests/tools gives the published bytes too."""
    for v in VECTORS["vectors"]:
        assert ref_canonical(*_decode_input(v["input"])) == v["canonical"].encode("utf-8"), v["name"]


# -- specific rules --------------------------------------------------------------------------------


def test_layout_is_the_documented_array() -> None:
    """The record is ["v1", stream, seq, event, time-as-string, severity number, severity text, body, attrs]."""
    got = canonical_bytes(SID, 42, "user.login", 123, 9, "INFO", "b", {"k": "v"})
    assert got == b'["v1","' + SID.encode() + b'",42,"user.login","123",9,"INFO","b",{"k":"v"}]'


def test_missing_fields_take_their_zero_values() -> None:
    """None event name, time, severity and text canonicalize as "", "0", 0 and ""."""
    assert canonical_bytes(SID, 0, None, None, None, None, None, None) == canonical_bytes(
        SID, 0, "", 0, 0, "", None, {})


def test_one_string_one_float_one_bool_differ() -> None:
    """1, "1", 1.0 and true give four different canonical forms, as body and as attribute."""
    values = [1, "1", 1.0, True]
    assert len({canon(v) for v in values}) == 4
    assert len({canon(None, {"a": v}) for v in values}) == 4


def test_false_and_zero_and_empty_differ() -> None:
    """0, 0.0, -0.0, false, "", [], {}, b"" and null are all different."""
    values: list[Any] = [0, 0.0, -0.0, False, "", [], {}, b"", None]
    assert len({canon(v) for v in values}) == len(values)


def test_tuple_and_list_are_the_same_array() -> None:
    """A tuple (as the SDK stores sequence attributes) encodes as the list with the same items."""
    assert canon((1, "a"), {"t": (1, 2)}) == canon([1, "a"], {"t": [1, 2]})


def test_bytes_types_are_interchangeable() -> None:
    """bytes, bytearray and memoryview of the same octets encode alike, as base64."""
    assert canon(b"\x00\xff") == canon(bytearray(b"\x00\xff")) == canon(memoryview(b"\x00\xff"))
    assert b'{"bytes":"AP8="}' in canon(b"\x00\xff")


def test_integrity_attributes_never_count() -> None:
    """Adding or changing the four integrity attributes leaves the canonical bytes unchanged."""
    base = canon("x", {"user.id": "u"})
    noisy = {"user.id": "u", canonical.STREAM_ID: "f" * 32, canonical.STREAM_SEQ: 5,
             canonical.PREV_DIGEST: "00" * 32, canonical.DIGEST: 1.5}
    assert canon("x", noisy) == base


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.1, "0.1"), (1e16, "1e+16"), (1e15, "1000000000000000.0"), (1e-5, "1e-05"), (1e-4, "0.0001"),
     (-0.0, "-0.0"), (math.nan, "nan"), (-math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"),
     (5e-324, "5e-324"), (2.0**53, "9007199254740992.0"), (123.0, "123.0")],
)
def test_format_double(value: float, text: str) -> None:
    """Doubles use Python's repr: shortest round trip, fixed for exponents -4..15, else e+XX."""
    assert format_double(value) == text
    assert ref_format_double(value) == text


@given(st.floats(allow_nan=True, allow_infinity=True))
@example(2.0**-1022)  # a power of two: the gap below is half the gap above
@example(9007199254740993.0)
@example(1e23)
@example(562949953421312.8)  # exactly between ...312.7 and ...312.8: the even digit wins
def test_format_double_matches_the_written_rules(x: float) -> None:
    """format_double agrees with the rules of docs/canonical-form.md, implemented independently."""
    assert format_double(x) == ref_format_double(x)


def test_int64_bounds_are_accepted() -> None:
    """The int64 extremes encode as JSON integers in body and attributes."""
    got = canon([INT64_MIN, INT64_MAX], {"a": INT64_MAX, "b": INT64_MIN})
    assert b"[-9223372036854775808,9223372036854775807]" in got


@pytest.mark.parametrize("big", [2**63, 2**64 - 1, 2**64, -(2**63) - 1])
def test_int_outside_int64_is_refused_in_body(big: int) -> None:
    """An integer outside int64 in the body raises CanonicalError (OTLP cannot carry it)."""
    with pytest.raises(CanonicalError):
        canon(big)
    with pytest.raises(CanonicalError):
        canon({"nested": [big]})


@pytest.mark.parametrize("big", [2**63, 2**64 - 1, 2**64, -(2**63) - 1])
def test_int_outside_int64_is_refused_in_attributes(big: int) -> None:
    """An integer outside int64 in a plain attribute raises CanonicalError, whatever the other attributes.

    Regression: the all-plain fast path of encode_attributes once handed 2**63 .. 2**64-1 to orjson,
    which writes uint64 values, so a record was signed with a value OTLP cannot carry.
    """
    with pytest.raises(CanonicalError):
        canon(None, {"a": big, "b": 1.5})  # the slow path
    with pytest.raises(CanonicalError):
        canon(None, {"a": big})  # the fast path


def test_lone_surrogate_is_refused() -> None:
    """A string with a lone surrogate (not valid Unicode) raises CanonicalError, in body or attribute."""
    with pytest.raises(CanonicalError):
        canon("a\ud800b")
    with pytest.raises(CanonicalError):
        canon(None, {"k": "\udfff"})
    with pytest.raises(CanonicalError):
        canon(None, {"k": ["\ud800"], "f": 1.0})


def test_wrong_types_are_refused() -> None:
    """A value that is no AnyValue (a set, an object, a non-string map key) raises CanonicalError."""
    for bad in ({1, 2}, object(), {1: "x"}, [complex(1, 2)]):
        with pytest.raises(CanonicalError):
            canon(bad)


def _nest(n: int, leaf: Any) -> Any:
    v = leaf
    for _ in range(n):
        v = [v]
    return v


def test_depth_limit() -> None:
    """Containers up to depth MAX_DEPTH (the outermost at 0) encode; a container one deeper is refused."""
    canon(_nest(canonical.MAX_DEPTH + 1, 1))
    canon(None, {"a": _nest(canonical.MAX_DEPTH + 1, "s")})
    with pytest.raises(CanonicalError):
        canon(_nest(canonical.MAX_DEPTH + 2, 1))
    with pytest.raises(CanonicalError):
        canon(_nest(canonical.MAX_DEPTH + 1, []))
    with pytest.raises(CanonicalError):
        canon(_nest(canonical.MAX_DEPTH + 1, {}))


@pytest.mark.parametrize("leaf", [1, "s", True, 1.0, b"x", None], ids=repr)
def test_depth_limit_does_not_depend_on_the_scalar(leaf: Any) -> None:
    """The nesting limit counts containers only: every scalar type is accepted at the same depth.

    Demonstrates a bug: encode_value checks the depth after the str/bool/int shortcut but before
    the other types, so a double, bytes or null inside 65 nested arrays is refused while an int,
    string or bool at the same place is accepted; a verifier written from the spec would disagree.
    """
    canon(_nest(canonical.MAX_DEPTH + 1, leaf))
    with pytest.raises(CanonicalError):
        canon(_nest(canonical.MAX_DEPTH + 2, leaf))


@pytest.mark.parametrize("seq", [-1, True, 1.0, "1"])
def test_bad_seq_is_refused(seq: Any) -> None:
    """seq must be a non-negative int; bools, floats, strings and negatives raise CanonicalError."""
    with pytest.raises(CanonicalError):
        canonical_bytes(SID, seq, "e", 1, 9, "I", None, None)


def test_join_and_content_bytes_compose_to_canonical_bytes() -> None:
    """join(stream, seq, content_bytes(...)) is canonical_bytes, the split the hot path uses."""
    content = canonical.content_bytes("e", 5, 9, "INFO", {"a": [1]}, {"x": 1.0})
    assert canonical.join(SID, 3, content) == canonical_bytes(SID, 3, "e", 5, 9, "INFO", {"a": [1]}, {"x": 1.0})


# -- properties ------------------------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=12)
scalars = st.one_of(
    texts,
    st.integers(INT64_MIN, INT64_MAX),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.binary(max_size=12),
    st.none(),
)
anyvalues = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=16,
)
attribute_maps = st.dictionaries(texts, anyvalues, max_size=6)


def typed(v: Any) -> Any:
    """A hashable identity of a typed value: equal exactly when the spec says the values are equal."""
    if v is None:
        return ("null",)
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, int):
        return ("int", v)
    if isinstance(v, float):
        return ("double", "nan" if math.isnan(v) else v.hex())
    if isinstance(v, str):
        return ("str", v)
    if isinstance(v, (bytes, bytearray)):
        return ("bytes", bytes(v))
    if isinstance(v, (list, tuple)):
        return ("array", tuple(typed(x) for x in v))
    return ("map", frozenset((k, typed(x)) for k, x in v.items()))


def lookalikes(v: Any) -> list[Any]:
    """Values that print alike but differ in type: the ones a careless form would confuse."""
    out: list[Any] = [str(v), repr(v), [v], {"v": v}, None]
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        out += [float(v), bool(v)]
        if abs(v) < 2**62:
            out += [int(v), int(v) + 1]
    if isinstance(v, str):
        out += [v.encode("utf-8"), [v], {v: v} if v else {}]
    if isinstance(v, bytes):
        out += [v.decode("latin-1"), list(v)]
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(anyvalues, anyvalues)
def test_distinct_typed_values_give_distinct_bytes(a: Any, b: Any) -> None:
    """Two values that differ in type or value never share canonical bytes, as body or as attribute."""
    if typed(a) == typed(b):
        assert canon(a) == canon(b)
    else:
        assert canon(a) != canon(b)
        assert canon(None, {"k": a}) != canon(None, {"k": b})


@settings(max_examples=300)
@given(scalars)
def test_lookalikes_give_distinct_bytes(v: Any) -> None:
    """A value and its look-alikes of other types (1 / "1" / 1.0 / true / [1]) encode differently."""
    for other in lookalikes(v):
        if typed(other) != typed(v):
            assert canon(v) != canon(other), (v, other)
            assert canon(None, {"k": v}) != canon(None, {"k": other}), (v, other)


@settings(max_examples=200)
@given(attribute_maps, attribute_maps)
def test_distinct_attribute_maps_give_distinct_bytes(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Attribute maps that differ in a key or a typed value give different bytes."""
    assert (canon(None, a) == canon(None, b)) == (typed(a) == typed(b))


@settings(max_examples=200)
@given(attribute_maps, st.randoms(use_true_random=False))
def test_attribute_order_does_not_matter(attrs: dict[str, Any], rnd: random.Random) -> None:
    """Shuffling the attributes (and the keys of nested maps) leaves the canonical bytes unchanged."""
    def shuffled(v: Any) -> Any:
        if isinstance(v, dict):
            items = list(v.items())
            rnd.shuffle(items)
            return {k: shuffled(x) for k, x in items}
        if isinstance(v, list):
            return [shuffled(x) for x in v]
        return v

    assert canon(shuffled(attrs), shuffled(attrs)) == canon(attrs, attrs)


@settings(max_examples=300)
@given(anyvalues, attribute_maps)
def test_otlp_json_round_trip_keeps_the_bytes(body: Any, attrs: dict[str, Any]) -> None:
    """encode_anyvalue -> orjson -> decode_value gives back values with the same canonical bytes."""
    wire = orjson.dumps({"body": encode_anyvalue(body),
                         "attributes": [{"key": k, "value": encode_anyvalue(v)} for k, v in attrs.items()]})
    doc = orjson.loads(wire)
    body2 = decode_value(doc["body"])
    attrs2 = {kv["key"]: decode_value(kv["value"]) for kv in doc["attributes"]}
    assert canon(body2, attrs2) == canon(body, attrs)


@settings(max_examples=300)
@given(texts, st.integers(0, 2**63 - 1), texts, st.integers(0, 2**64 - 1), st.integers(0, 24), texts,
       anyvalues, attribute_maps)
def test_never_raises_and_matches_the_reference(
    sid: str, seq: int, event: str, t: int, sev: int, sevtext: str, body: Any, attrs: dict[str, Any]
) -> None:
    """Valid AnyValues always canonicalize, to valid UTF-8 JSON equal to the reference implementation's."""
    stream_id = hashlib.md5(sid.encode()).hexdigest()
    got = canonical_bytes(stream_id, seq, event, t, sev, sevtext, body, attrs)
    assert got == ref_canonical(stream_id, seq, event, t, sev, sevtext, body, attrs)
    parsed = json.loads(got.decode("utf-8"))
    assert parsed[0] == "v1" and parsed[4] == str(t)
