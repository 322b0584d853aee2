"""OTLP/JSON encoding of SDK log records, checked against the official protobuf encoder."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as protobuf_encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from otel_audit.decoding import DecodeError
from otel_audit.otlpjson import (
    decode_anyvalue,
    decode_attributes,
    dumps_line,
    encode_anyvalue,
    encode_attributes,
    encode_logs,
    iter_log_records,
)

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0x00F067AA0BA902B7


@pytest.fixture
def sdk() -> Iterator[tuple[LoggerProvider, InMemoryLogRecordExporter]]:
    """A real SDK pipeline whose exporter keeps what it receives."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": "gateway", "deployment.id": 7}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    yield provider, memory
    provider.shutdown()


def _span_context(flags: int = 1) -> Context:
    span = NonRecordingSpan(SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=TraceFlags(flags)))
    return set_span_in_context(span)


def _as_protobuf(request: dict) -> ExportLogsServiceRequest:
    """Parse our OTLP/JSON with protobuf's parser, which wants base64 where OTLP says hex."""
    for rl in request["resourceLogs"]:
        for sl in rl["scopeLogs"]:
            for record in sl["logRecords"]:
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64encode(bytes.fromhex(record[key])).decode()
    return json_format.Parse(orjson.dumps(request), ExportLogsServiceRequest())


def _assert_same_as_protobuf(batch: tuple[ReadableLogRecord, ...]) -> None:
    ours = _as_protobuf(orjson.loads(dumps_line(batch)))
    theirs = protobuf_encode_logs(batch)
    # Protobuf's encoder sets an empty body for "no body"; OTLP/JSON leaves the field out. Same meaning.
    for rl in theirs.resource_logs:
        for sl in rl.scope_logs:
            for record in sl.log_records:
                if record.HasField("body") and record.body.WhichOneof("value") is None:
                    record.ClearField("body")
    # Serialized bytes compare NaN doubles bit for bit, where message equality would not.
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)


def test_full_record_matches_protobuf_encoder(sdk: tuple[LoggerProvider, InMemoryLogRecordExporter]) -> None:
    """A record using every field encodes to the same message as the SDK's protobuf encoder."""
    provider, memory = sdk
    logger = provider.get_logger(
        "otel_audit.test", "1.2.3", schema_url="https://opentelemetry.io/schemas/1.26.0"
    )
    logger.emit(
        timestamp=1_700_000_000_123_456_789,
        observed_timestamp=1_700_000_000_223_456_789,
        context=_span_context(),
        severity_number=SeverityNumber.WARN,
        severity_text="WARN",
        body={"msg": "login", "tries": [1, 2, 3], "ok": False, "raw": b"\x00\xff", "nothing": None},
        attributes={
            "user.id": "u-1",
            "audit.seq": 2**63 - 1,
            "audit.neg": -(2**63),
            "ratio": 0.25,
            "flag": True,
            "blob": b"\x01\x02",
            "tags": ["a", "b"],
            "nested": {"k": {"deeper": [1, {"x": "y"}]}},
            "empty": "",
            "unicode": "żółć 日本 🔐",
            "nan": math.nan,
            "inf": math.inf,
            "ninf": -math.inf,
        },
        event_name="user.login",
    )
    _assert_same_as_protobuf(memory.get_finished_logs())


def test_minimal_record_matches_protobuf_encoder(
    sdk: tuple[LoggerProvider, InMemoryLogRecordExporter],
) -> None:
    """A record with no body, attributes, severity or trace context encodes like protobuf's."""
    provider, memory = sdk
    provider.get_logger("bare").emit()
    _assert_same_as_protobuf(memory.get_finished_logs())
    record = orjson.loads(dumps_line(memory.get_finished_logs()))["resourceLogs"][0]["scopeLogs"][0][
        "logRecords"
    ][0]
    assert set(record) == {"observedTimeUnixNano"}


def test_grouping_by_resource_and_scope_matches_protobuf_encoder() -> None:
    """Records from two resources and two scopes land in the same groups and order as protobuf's."""
    memory = InMemoryLogRecordExporter()
    providers = [LoggerProvider(resource=Resource.create({"service.name": name})) for name in ("a", "b")]
    for provider in providers:
        provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    for i in range(6):
        provider = providers[i % 2]
        provider.get_logger(f"scope{i % 3}").emit(body=f"record {i}")
    batch = memory.get_finished_logs()
    _assert_same_as_protobuf(batch)
    request = encode_logs(batch)
    assert len(request["resourceLogs"]) == 2
    assert sum(len(rl["scopeLogs"]) for rl in request["resourceLogs"]) == 6


def test_equal_resources_are_one_group() -> None:
    """Two distinct but equal Resource objects share one resourceLogs entry, as in protobuf's encoder."""
    memory = InMemoryLogRecordExporter()
    for _ in range(2):
        provider = LoggerProvider(resource=Resource({"service.name": "same"}))
        provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
        provider.get_logger("s").emit(body="x")
    batch = memory.get_finished_logs()
    assert batch[0].resource is not batch[1].resource
    request = encode_logs(batch)
    assert len(request["resourceLogs"]) == 1
    assert len(request["resourceLogs"][0]["scopeLogs"][0]["logRecords"]) == 2
    _assert_same_as_protobuf(batch)


def test_json_shape_uses_otlp_conventions(sdk: tuple[LoggerProvider, InMemoryLogRecordExporter]) -> None:
    """Times and ints are decimal strings, severity an integer, ids lowercase hex, keys lowerCamelCase."""
    provider, memory = sdk
    provider.get_logger("s", "9").emit(
        timestamp=5,
        context=_span_context(),
        severity_number=SeverityNumber.ERROR,
        attributes={"n": 3},
        event_name="e",
    )
    request = orjson.loads(dumps_line(memory.get_finished_logs()))
    scope_logs = request["resourceLogs"][0]["scopeLogs"][0]
    assert scope_logs["scope"] == {"name": "s", "version": "9"}
    record = scope_logs["logRecords"][0]
    assert record["timeUnixNano"] == "5"
    assert isinstance(record["observedTimeUnixNano"], str)
    assert record["severityNumber"] == 17
    assert record["traceId"] == "0af7651916cd43dd8448eb211c80319c"
    assert record["spanId"] == "00f067aa0ba902b7"
    assert record["flags"] == 1
    assert record["eventName"] == "e"
    assert record["attributes"] == [{"key": "n", "value": {"intValue": "3"}}]


def test_dumps_line_is_one_line(sdk: tuple[LoggerProvider, InMemoryLogRecordExporter]) -> None:
    """dumps_line returns UTF-8 JSON with exactly one newline, at the end, even for multi-line bodies."""
    provider, memory = sdk
    provider.get_logger("s").emit(body="line one\nline two")
    line = dumps_line(memory.get_finished_logs())
    assert line.endswith(b"\n") and line.count(b"\n") == 1


def test_attribute_order_is_kept(sdk: tuple[LoggerProvider, InMemoryLogRecordExporter]) -> None:
    """Attributes appear in the order the record holds them."""
    provider, memory = sdk
    keys = [f"k{i}" for i in (5, 1, 9, 0, 3)]
    provider.get_logger("s").emit(attributes={k: k for k in keys})
    record = encode_logs(memory.get_finished_logs())["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert [kv["key"] for kv in record["attributes"]] == keys


ROUND_TRIP_VALUES = [
    "",
    "plain",
    'żółć 日本 🔐 \u0000 "quoted" \\',
    True,
    False,
    0,
    1,
    -1,
    2**63 - 1,
    -(2**63),
    0.0,
    -2.5,
    1e308,
    5e-324,
    math.inf,
    -math.inf,
    b"",
    b"\x00\xff\x10binary",
    [],
    [1, "two", 3.0, False, None, b"\x01"],
    {},
    {"a": {"b": {"c": [1, [2, [3]]]}}, "": "empty key", "x": None},
]


@pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=repr)
def test_anyvalue_round_trip(value: object) -> None:
    """Every AnyValue type decodes, after a trip through JSON text, to the value it was encoded from."""
    decoded = decode_anyvalue(orjson.loads(orjson.dumps(encode_anyvalue(value))))
    assert decoded == value
    assert type(decoded) is type(value)


def test_nan_round_trip() -> None:
    """NaN is written as the string "NaN" and read back as a NaN float."""
    encoded = encode_anyvalue(math.nan)
    assert encoded == {"doubleValue": "NaN"}
    decoded = decode_anyvalue(orjson.loads(orjson.dumps(encoded)))
    assert isinstance(decoded, float) and math.isnan(decoded)


def test_tuple_encodes_as_array_and_none_as_empty() -> None:
    """A tuple is an arrayValue and None is the empty AnyValue."""
    assert encode_anyvalue((1, "a")) == {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "a"}]}}
    assert encode_anyvalue(None) == {}


def test_bool_is_not_int() -> None:
    """True encodes as boolValue, never as intValue 1."""
    assert encode_anyvalue(True) == {"boolValue": True}
    assert encode_attributes({"b": True}) == [{"key": "b", "value": {"boolValue": True}}]


def test_int_beyond_int64_is_refused() -> None:
    """An int outside int64 raises ValueError naming the attribute, instead of being mangled."""
    with pytest.raises(ValueError, match="int64"):
        encode_anyvalue(2**63)
    with pytest.raises(ValueError, match="'too.big'"):
        encode_attributes({"too.big": -(2**63) - 1})


def test_unknown_type_is_refused() -> None:
    """A value with no AnyValue form raises TypeError naming its type."""
    with pytest.raises(TypeError, match="object"):
        encode_anyvalue(object())


@pytest.mark.parametrize(
    ("anyvalue", "expected"),
    [
        ({"intValue": 42}, 42),
        ({"intValue": "-9223372036854775808"}, -(2**63)),
        ({"doubleValue": 1}, 1.0),
        ({"doubleValue": "Infinity"}, math.inf),
        ({"doubleValue": "-Infinity"}, -math.inf),
        ({"bytesValue": "AAE="}, b"\x00\x01"),
        ({"arrayValue": {}}, []),
        ({"kvlistValue": {}}, {}),
        ({}, None),
        (None, None),
    ],
)
def test_decoder_accepts_forms_every_decoder_reads_alike(anyvalue: dict | None, expected: object) -> None:
    """The decoder accepts the forms that pdata and protobuf's json_format read exactly as it does."""
    assert decode_anyvalue(anyvalue) == expected


@pytest.mark.parametrize(
    ("anyvalue", "rule"),
    [
        # formerly accepted "tolerantly": each is read differently (or refused) by some standard decoder
        ({"doubleValue": "2.5"}, "non-canonical-double"),
        ({"bytesValue": "AAE"}, "bad-base64"),
        ({"bytesValue": "-_8="}, "bad-base64"),
        ({"string_value": "snake"}, "snake-case"),
        ({"someFutureValue": 1}, "unknown-field"),
        # always refused
        ({"intValue": "1.5"}, "non-canonical-int"),
        ({"intValue": True}, "bad-type"),
        ({"doubleValue": "fast"}, "non-canonical-double"),
        ({"bytesValue": "!!!"}, "bad-base64"),
        ({"boolValue": "yes"}, "non-canonical-bool"),
        ({"stringValue": 5}, "bad-type"),
        ({"kvlistValue": [1]}, "bad-type"),
        ({"kvlistValue": {"values": [["key", "value"]]}}, "bad-type"),
        ({"arrayValue": {"values": {"0": {}}}}, "bad-type"),
        (["stringValue", "x"], "bad-type"),
    ],
)
def test_decoder_rejects_what_a_decoder_could_read_otherwise(anyvalue: dict, rule: str) -> None:
    """A malformed or ambiguous AnyValue raises DecodeError (a ValueError) naming its rule."""
    with pytest.raises(DecodeError) as info:
        decode_anyvalue(anyvalue)
    assert info.value.rule == rule
    assert isinstance(info.value, ValueError)


def test_decode_attributes_rejects_a_duplicate_key() -> None:
    """A key given twice is refused (pdata reads the first, a dict the last): not 'the last wins'."""
    kvs = [{"key": "a", "value": {"intValue": "1"}}, {"key": "a", "value": {"stringValue": "2"}}]
    with pytest.raises(DecodeError) as info:
        decode_attributes(kvs)
    assert (info.value.rule, info.value.path) == ("duplicate-key", "[1].key")


def test_iter_log_records_reads_back_what_was_encoded(
    sdk: tuple[LoggerProvider, InMemoryLogRecordExporter],
) -> None:
    """iter_log_records yields each record with its resource attributes and scope."""
    provider, memory = sdk
    for i in range(3):
        provider.get_logger(f"s{i % 2}").emit(body=i, attributes={"i": i})
    request = orjson.loads(dumps_line(memory.get_finished_logs()))
    rows = list(iter_log_records(request))
    assert sorted(decode_anyvalue(record["body"]) for _, _, record in rows) == [0, 1, 2]
    for resource_attributes, scope, record in rows:
        assert decode_attributes(resource_attributes)["service.name"] == "gateway"
        assert scope["name"] in ("s0", "s1")
        assert decode_attributes(record["attributes"]) == {"i": decode_anyvalue(record["body"])}


def test_iter_log_records_rejects_wrong_shape() -> None:
    """A JSON document that is not an ExportLogsServiceRequest raises ValueError."""
    with pytest.raises(ValueError):
        list(iter_log_records({"resourceLogs": {"not": "a list"}}))
    with pytest.raises(ValueError):
        list(iter_log_records([]))  # type: ignore[arg-type]
    assert list(iter_log_records({})) == []
