"""otel_audit.service.otlp_proto: protobuf requests read as the stock collector reads them.

The differential tests send each case's exact bytes to a real collector (otlp receiver, OTLP/HTTP with
a protobuf body) whose `file` exporter writes OTLP/JSON lines, and compare the line with
`request_from_protobuf` of the same bytes, and with the wire reader alone (the path taken when upb's
reading could differ). Run `python tests/test_service_otlp_proto.py` for the speed figure.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from collector import Collector
from conftest import mixed_record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as sdk_encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as PbResource
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from otel_audit import canonical, decoding, otlpjson
from otel_audit.keys import Keyring
from otel_audit.processors.signing import SigningProcessor
from otel_audit.service import otlp_proto
from otel_audit.service.otlp_proto import ProtoError, request_from_protobuf, request_to_protobuf
from otel_audit.verify import verify_paths

# -- raw wire building -----------------------------------------------------------------------------


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def tag(n: int, wt: int) -> bytes:
    return varint(n << 3 | wt)


def ld(n: int, b: bytes) -> bytes:
    return tag(n, 2) + varint(len(b)) + b


def vi(n: int, v: int) -> bytes:
    return tag(n, 0) + varint(v)


def record_bytes(rec: bytes) -> bytes:
    """A request holding one resource, one scope and the LogRecord of these bytes."""
    return ld(1, ld(2, ld(2, rec)))


def req(*records: LogRecord, resource: Any = None, scope: Any = None, schema: str = "") -> bytes:
    rl = ResourceLogs(scope_logs=[ScopeLogs(log_records=list(records), scope=scope, schema_url=schema)],
                      resource=resource, schema_url=schema)
    data: bytes = ExportLogsServiceRequest(resource_logs=[rl]).SerializeToString()
    return data


def av(**kw: Any) -> AnyValue:
    return AnyValue(**kw)


def kvl(**items: AnyValue) -> AnyValue:
    return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in items.items()]))


def arr(*items: AnyValue) -> AnyValue:
    return AnyValue(array_value=ArrayValue(values=list(items)))


def nested(n: int, leaf: AnyValue) -> AnyValue:
    v = leaf
    for i in range(n):
        v = arr(v) if i % 2 else kvl(k=v)
    return v


def deep_wire(levels: int) -> bytes:
    """A record whose body nests `levels` arrayValues, built as bytes (upb refuses to build it)."""
    v = ld(1, b"leaf")
    for _ in range(levels):
        v = ld(5, ld(1, v))  # AnyValue{array_value: ArrayValue{values: [v]}}
    return record_bytes(ld(5, v))


def _records_of_every_kind() -> list[LogRecord]:
    return [
        LogRecord(body=av(string_value="caf\u00e9 \u05e9\u05dc\u05d5\u05dd \U0001f600 \x00 \"q\" \\")),
        LogRecord(body=av(bool_value=True), attributes=[KeyValue(key="f", value=av(bool_value=False))]),
        LogRecord(body=av(int_value=-(2**63)), attributes=[KeyValue(key="max", value=av(int_value=2**63 - 1)),
                                                         KeyValue(key="zero", value=av(int_value=0)),
                                                         KeyValue(key="neg", value=av(int_value=-1))]),
        LogRecord(body=av(double_value=1.5), attributes=[
            KeyValue(key=str(i), value=av(double_value=x)) for i, x in enumerate(
                [math.nan, math.inf, -math.inf, 0.0, 5e-324, 1e-320, 1e300, 2.0**53 + 2, 0.1, -123456789.0])]),
        LogRecord(body=av(bytes_value=b"\x00\xff\xfe"), attributes=[KeyValue(key="e", value=av(bytes_value=b""))]),
        LogRecord(body=arr(av(string_value="a"), av(int_value=1), av(), arr(), kvl())),
        LogRecord(body=kvl(a=kvl(b=kvl(c=arr(av(double_value=2.5)))), empty=kvl(), none=av())),
        LogRecord(body=nested(24, av(string_value="deep"))),  # near upb's limit of 100 messages
    ]


#: name -> the exact bytes sent to the collector and converted here
CASES: dict[str, bytes] = {
    "empty-record": req(LogRecord()),
    "every-kind": req(*_records_of_every_kind()),
    "all-fields": req(LogRecord(
        time_unix_nano=2**64 - 1, observed_time_unix_nano=1_700_000_000_123_456_789, severity_number=17,
        severity_text="ERROR", body=av(string_value="b"), attributes=[KeyValue(key="k", value=av(string_value="v"))],
        dropped_attributes_count=2**32 - 1, flags=0xFFFFFFFF, trace_id=bytes(range(1, 17)), span_id=b"\xab" * 8,
        event_name="user.login \u00e9")),
    # pdata writes -0.0 as the JSON number -0, which the strict decoder refuses in a line (non-canonical-double)
    "negative-zero-double": req(LogRecord(body=av(double_value=-0.0))),
    "negative-severity": req(LogRecord(severity_number=-5)),  # type: ignore[arg-type]  # an open enum
    "unnamed-severity": req(LogRecord(severity_number=77)),  # type: ignore[arg-type]
    "zero-ids": record_bytes(ld(9, bytes(16)) + ld(10, bytes(8))),
    "flags-only": req(LogRecord(flags=1)),
    "kv-without-value": req(LogRecord(attributes=[KeyValue(key="k"), KeyValue(key="")])),
    "duplicate-attribute-key": req(LogRecord(attributes=[KeyValue(key="k", value=av(int_value=1)),
                                                         KeyValue(key="k", value=av(int_value=2))])),
    "envelope": req(LogRecord(body=av(string_value="x")),
                    resource=PbResource(
                        attributes=[KeyValue(key="service.name", value=av(string_value="svc"))],
                        dropped_attributes_count=3),
                    scope=InstrumentationScope(name="lib", version="1.2", dropped_attributes_count=4,
                                                      attributes=[KeyValue(key="s", value=av(int_value=7))]),
                    schema="https://opentelemetry.io/schemas/1.26.0"),
    "two-resources": ExportLogsServiceRequest(resource_logs=[
        ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord(event_name="a")]),
                                 ScopeLogs(log_records=[LogRecord(event_name="b")])]),
        ResourceLogs(scope_logs=[ScopeLogs(log_records=[LogRecord(event_name="c")])])]).SerializeToString(),
    "deep-legal": deep_wire(decoding.MAX_DEPTH + 1),  # 65 nested arrays: beyond upb's limit, within the decoder's
    # wire forms that protobuf readers may read differently: the collector's reading is the reference
    "body-twice-arrays": record_bytes(ld(5, ld(5, ld(1, ld(1, b"a")))) + ld(5, ld(5, ld(1, ld(1, b"b"))))),
    "body-twice-kinds": record_bytes(ld(5, ld(1, b"s")) + ld(5, vi(2, 1))),
    "oneof-twice-in-one": record_bytes(ld(5, ld(1, b"s") + vi(3, 5))),
    "value-twice-kvlists": record_bytes(ld(6, ld(1, b"k") + ld(2, ld(6, ld(1, ld(1, b"x") + ld(2, ld(1, b"1")))))
                                              + ld(2, ld(6, ld(1, ld(1, b"y") + ld(2, ld(1, b"2"))))))),
    "scalar-twice": record_bytes(ld(3, b"first") + ld(3, b"second") + vi(2, 5) + vi(2, 9)),
    "resource-twice": ld(1, ld(1, ld(1, ld(1, b"a") + ld(2, ld(1, b"1"))))
                         + ld(1, ld(1, ld(1, b"b") + ld(2, ld(1, b"2")))) + ld(2, ld(2, b""))),
    "scope-twice": ld(1, ld(2, ld(1, ld(1, b"n1") + ld(2, b"v")) + ld(1, ld(1, b"n2")) + ld(2, b""))),
    "unknown-fields": record_bytes(ld(3, b"txt") + ld(99, b"zzz") + tag(98, 5) + b"abcd" + tag(97, 1) + b"12345678"
                                   + vi(96, 1) + ld(5, ld(1, b"s") + vi(50, 1))),
    "unknown-envelope-fields": ld(1, ld(2, ld(2, b"") + ld(9, b"x")) + ld(9, b"y")) + ld(9, b"z"),
    "strindex-fields": record_bytes(ld(6, ld(1, b"k") + vi(3, 7) + ld(2, vi(8, 3)))
                                    + ld(6, ld(1, b"k2") + ld(2, ld(1, b"s") + vi(8, 3)))),
    "bool-2": record_bytes(ld(5, vi(2, 2))),
    "varint-10-bytes": record_bytes(ld(5, tag(3, 0) + b"\x81\x80\x80\x80\x80\x80\x80\x80\x80\x7f")),
    "severity-beyond-int32": record_bytes(vi(2, 2**40 + 3)),
    "explicit-zeros": record_bytes(vi(2, 0) + ld(3, b"") + tag(1, 1) + bytes(8) + ld(12, b"") + ld(9, b"")),
    "empty-body-message": record_bytes(ld(5, b"")),
    "zero-length-value-kinds": record_bytes(ld(5, ld(5, b"")) + ld(6, ld(1, b"m") + ld(2, ld(6, b"")))),
    "sdk-mixed-records": b"",  # filled in below from the SDK's own encoder
}


def _sdk_batch(n: int, signed: bool = False, keys_dir: Path | None = None) -> tuple[list[Any], SigningProcessor | None]:
    memory = InMemoryLogRecordExporter()
    resource = Resource.create({"service.name": "proto-tests"})
    provider = LoggerProvider(resource=resource)
    sp = None
    if signed:
        assert keys_dir is not None
        sp = SigningProcessor(keys_dir, downstream=SimpleLogRecordProcessor(memory), checkpoint_every=10,
                              checkpoint_interval=3600.0, resource=resource)
        provider.add_log_record_processor(sp)
    else:
        provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("otel_audit.tests.proto", "0.1")
    for i in range(n):
        logger.emit(**mixed_record(i))
    provider.shutdown()
    return list(memory.get_finished_logs()), sp


CASES["sdk-mixed-records"] = sdk_encode_logs(_sdk_batch(24)[0]).SerializeToString()

#: what the collector refuses (HTTP 400), and so must we
REFUSED: dict[str, bytes] = {
    "short-trace-id": record_bytes(ld(9, b"\x01\x02")),
    "short-span-id": record_bytes(ld(10, b"\x01" * 7)),
    "wrong-wire-type": record_bytes(vi(3, 5)),
    "wrong-wire-type-envelope": ld(1, vi(2, 1)),
    "truncated": CASES["every-kind"][:-3],
    "length-past-end": ld(1, b"")[:1] + varint(2**40),
    "field-zero": record_bytes(vi(0, 1)),
    "varint-11-bytes": record_bytes(ld(5, tag(3, 0) + b"\x80" * 10 + b"\x01")),
    "illegal-wire-type": record_bytes(tag(5, 7) + b"x"),
    "unknown-group": record_bytes(ld(3, b"g") + tag(90, 3) + vi(1, 5) + tag(90, 4)),  # pdata reads no groups
    "unknown-end-group": record_bytes(tag(90, 4)),
    "garbage": b"\xff\xff\xff\xff",
}


# -- the collector ----------------------------------------------------------------------------------

CONFIG = """
extensions:
  health_check:
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${env:OTLP_HTTP}
exporters:
  file:
    path: ${env:ARCHIVE}
    format: json
    flush_interval: 10ms
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
"""


class Sent:
    """Send protobuf bodies to one collector; each answer comes with the lines its file exporter wrote."""

    def __init__(self, collector: Collector, archive: Path) -> None:
        self.url = collector.url("OTLP_HTTP", "/v1/logs")
        self.archive = archive
        self.n = 0

    def _post(self, body: bytes) -> tuple[int, bytes]:
        r = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/x-protobuf"})
        try:
            with urllib.request.urlopen(r, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def _lines(self) -> list[bytes]:
        return self.archive.read_bytes().split(b"\n")[:-1] if self.archive.exists() else []

    def send(self, body: bytes) -> tuple[int, list[bytes]]:
        """The HTTP status and the lines written for `body`, up to a sentinel request sent after it."""
        before = len(self._lines())
        status, _ = self._post(body)
        self.n += 1
        sentinel = f"sentinel-{self.n}".encode()
        assert self._post(req(LogRecord(event_name=sentinel.decode())))[0] == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            lines = self._lines()[before:]
            if lines and sentinel in lines[-1]:
                return status, lines[:-1]
            time.sleep(0.02)
        raise AssertionError("the collector did not write the sentinel line")


@pytest.fixture(scope="module")
def sent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sent]:
    d = tmp_path_factory.mktemp("proto-collector")
    archive = d / "out.jsonl"
    with Collector(CONFIG, env={"ARCHIVE": str(archive)}, endpoints=["OTLP_HTTP"], workdir=d / "otelcol") as c:
        yield Sent(c, archive)


def _int_or_negative_zero(text: str) -> int | float:
    return -0.0 if text == "-0" else int(text)  # pdata writes the double -0.0 as the JSON number -0


def _normal(x: Any) -> Any:
    """A JSON document with every doubleValue number as its exact float (hex), for comparing -0.0,
    1e300 written as an integer literal, and so on; everything else as it is (types included)."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if k == "doubleValue" and isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = ("double", float(v).hex())
            else:
                out[k] = _normal(v)
        return out
    if isinstance(x, list):
        return [_normal(v) for v in x]
    return x


def _collector_doc(line: bytes) -> Any:
    return _normal(json.loads(line, parse_int=_int_or_negative_zero))


# -- differential ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_the_collectors_json_line_for_the_same_bytes(sent: Sent, name: str) -> None:
    body = CASES[name]
    status, lines = sent.send(body)
    assert status == 200, name
    ours = request_from_protobuf(body)
    assert _normal(otlp_proto._from_wire(body)) == _normal(ours), "the wire reader and upb differ"
    if not lines:  # nothing to write: the collector drops requests without records
        assert not any(sl.get("logRecords") for rl in ours.get("resourceLogs", ()) for sl in rl.get("scopeLogs", ()))
        return
    assert len(lines) == 1
    assert _normal(ours) == _collector_doc(lines[0])
    # and the strict decoder reads our document as it reads the collector's line (which it can read,
    # unless the case holds what it refuses)
    try:
        theirs = decoding.decode_line(lines[0])
    except decoding.DecodeError as exc:
        assert (name, exc.rule) in {("duplicate-attribute-key", "duplicate-key"), ("kv-without-value", "bad-type"),
                                    ("negative-zero-double", "non-canonical-double")}
        return
    mine = [(res, scope, decoding.decode_log_record(rec))
            for _, _, res, scope, recs in decoding.walk_request(ours) for rec in recs]
    assert repr(mine) == repr(theirs)  # repr: NaN != NaN


@pytest.mark.parametrize("name", ["empty-request", "empty-resource-logs", "empty-scope-logs"])
def test_requests_without_records(sent: Sent, name: str) -> None:
    body = {"empty-request": b"", "empty-resource-logs": ld(1, b""), "empty-scope-logs": ld(1, ld(2, b""))}[name]
    status, lines = sent.send(body)
    assert status == 200 and lines == []
    doc = request_from_protobuf(body)
    assert doc == otlp_proto._from_wire(body)
    assert doc == {"empty-request": {}, "empty-resource-logs": {"resourceLogs": [{"resource": {}}]},
                   "empty-scope-logs": {"resourceLogs": [{"resource": {}, "scopeLogs": [{"scope": {}}]}]}}[name]
    assert list(decoding.iter_request(doc)) == []


@pytest.mark.parametrize("name", list(REFUSED))
def test_what_the_collector_refuses_is_a_proto_error(sent: Sent, name: str) -> None:
    body = REFUSED[name]
    status, lines = sent.send(body)
    assert status == 400 and lines == [], name
    with pytest.raises(ProtoError, match=r"^not an ExportLogsServiceRequest: "):
        request_from_protobuf(body)


def test_invalid_utf8_is_refused_where_the_collector_writes_no_json(sent: Sent) -> None:
    """The collector copies invalid UTF-8 into its line: no JSON the strict decoder reads; we refuse it."""
    for body in (record_bytes(ld(3, b"ab\xffcd")), record_bytes(ld(6, ld(1, b"k\xc3") + ld(2, ld(1, b"v"))))):
        status, lines = sent.send(body)
        assert status == 200 and len(lines) == 1
        with pytest.raises(decoding.DecodeError, match="not-json"):
            decoding.loads(lines[0])
        with pytest.raises(ProtoError, match="not valid UTF-8"):
            request_from_protobuf(body)


def test_too_deep_is_a_proto_error(sent: Sent) -> None:
    """One level past the strict decoder's limit: the collector writes it, the decoder refuses it as
    too-deep; we refuse the request before reading deeper. Far deeper: no RecursionError."""
    body = deep_wire(decoding.MAX_DEPTH + 2)
    status, lines = sent.send(body)
    assert status == 200 and len(lines) == 1
    with pytest.raises(decoding.DecodeError, match="too-deep"):
        decoding.decode_line(lines[0])
    with pytest.raises(ProtoError, match="nested more than 65 levels"):
        request_from_protobuf(body)
    for levels in (1000, 100_000):
        with pytest.raises(ProtoError, match="nested more than 65 levels"):
            request_from_protobuf(deep_wire(levels))


def test_signed_records_through_the_sdk_encoder_verify(tmp_path: Path, keys_dir: Path, sent: Sent) -> None:
    """Records signed by this library's pipeline, encoded by the SDK's OTLP/protobuf encoder: converted,
    they have the canonical digests of the file exporter's JSON of the same records, and the chain
    verifies; the collector's line of the same bytes is the same document."""
    batch, sp = _sdk_batch(40, signed=True, keys_dir=keys_dir)
    assert sp is not None
    body = sdk_encode_logs(batch).SerializeToString()
    converted = request_from_protobuf(body)
    ours_json = otlpjson.encode_logs(batch)

    def contents(doc: Any) -> list[bytes]:
        out = []
        for _, _, rec in otlpjson.iter_log_records(doc):
            f = decoding.decode_log_record(rec)
            attrs = f.attributes
            out.append(canonical.canonical_bytes(
                attrs[canonical.STREAM_ID], attrs[canonical.STREAM_SEQ], f.event_name, f.time_unix_nano,
                f.severity_number, f.severity_text, f.body, attrs))
        return out

    assert contents(converted) == contents(ours_json) and len(contents(converted)) == sp.seq
    archive = tmp_path / "converted.jsonl"
    archive.write_bytes(orjson.dumps(converted) + b"\n")
    report = verify_paths([archive], Keyring.load(keys_dir), progress=False)
    assert report.ok, report.to_json()
    status, lines = sent.send(body)
    assert status == 200 and len(lines) == 1
    assert _normal(converted) == _collector_doc(lines[0])


# -- round trip --------------------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
#: keys are never empty: pdata leaves an empty key out, so "key": "" is no document it writes
_key_lists = st.lists(_text.filter(bool), unique=True, max_size=4)


def _kv_list(values: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[list[dict[str, Any]]]:
    return _key_lists.flatmap(lambda keys: st.tuples(*[values for _ in keys]).map(
        lambda vs: [{"key": k, "value": v} for k, v in zip(keys, vs, strict=True)]))


_scalars = st.one_of(
    st.just({}),
    _text.map(lambda s: {"stringValue": s}),
    st.booleans().map(lambda b: {"boolValue": b}),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: {"intValue": str(i)}),
    st.floats().map(lambda f: {"doubleValue": otlpjson._encode_double(f)}),
    st.binary(max_size=8).map(lambda b: {"bytesValue": otlpjson.encode_anyvalue(b)["bytesValue"]}),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(lambda vs: {"arrayValue": {"values": vs} if vs else {}}),
    _kv_list(inner).map(lambda kvs: {"kvlistValue": {"values": kvs} if kvs else {}}),
), max_leaves=12)


def _optional(d: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**d, **{k: v for k, v in fields.items() if v}}


@st.composite
def _records(draw: st.DrawFn) -> dict[str, Any]:
    u64 = st.integers(0, 2**64 - 1).map(lambda i: str(i) if i else "")

    def hexid(n: int) -> st.SearchStrategy[str]:
        return st.one_of(st.just(""), st.binary(min_size=n, max_size=n).filter(any).map(bytes.hex))

    rec = _optional({}, timeUnixNano=draw(u64), observedTimeUnixNano=draw(u64),
                    severityNumber=draw(st.integers(-(2**31), 2**31 - 1)), severityText=draw(_text))
    rec["body"] = draw(_values)
    return _optional(rec, attributes=draw(_kv_list(_values)), droppedAttributesCount=draw(st.integers(0, 2**32 - 1)),
                     flags=draw(st.integers(0, 2**32 - 1)), traceId=draw(hexid(16)), spanId=draw(hexid(8)),
                     eventName=draw(_text))


@st.composite
def _documents(draw: st.DrawFn) -> dict[str, Any]:
    rls = []
    for _ in range(draw(st.integers(0, 2))):
        resource = _optional({}, attributes=draw(_kv_list(_scalars)),
                             droppedAttributesCount=draw(st.integers(0, 2**32 - 1)))
        sls = []
        for _ in range(draw(st.integers(0, 2))):
            scope = _optional({}, name=draw(_text), version=draw(_text), attributes=draw(_kv_list(_scalars)),
                              droppedAttributesCount=draw(st.integers(0, 9)))
            sls.append(_optional({"scope": scope}, logRecords=draw(st.lists(_records(), max_size=3)),
                                 schemaUrl=draw(_text)))
        rls.append(_optional({"resource": resource}, scopeLogs=sls, schemaUrl=draw(_text)))
    return _optional({}, resourceLogs=rls)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_documents())
def test_round_trip(doc: dict[str, Any]) -> None:
    data = request_to_protobuf(doc)
    back = request_from_protobuf(data)
    assert _normal(back) == _normal(doc)
    assert _normal(otlp_proto._from_wire(data)) == _normal(doc)
    for _, _, _, _, records in decoding.walk_request(back):
        for rec in records:
            decoding.decode_log_record(rec)


def test_request_to_protobuf_refuses_what_the_strict_decoder_refuses() -> None:
    rec = {"attributes": [{"key": "k", "value": {"intValue": "1"}}, {"key": "k", "value": {"intValue": "2"}}]}
    with pytest.raises(decoding.DecodeError, match="duplicate-key"):
        request_to_protobuf({"resourceLogs": [{"scopeLogs": [{"logRecords": [rec]}]}]})
    with pytest.raises(decoding.DecodeError, match="non-canonical-int"):
        request_to_protobuf({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "007"}]}]}]})


# -- malformed bytes -------------------------------------------------------------------------------


def _only_proto_error(data: bytes) -> dict[str, Any] | None:
    try:
        return request_from_protobuf(data)
    except ProtoError:
        return None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_give_a_document_or_a_proto_error(data: bytes) -> None:
    doc = _only_proto_error(data)
    if doc is not None:
        assert _normal(doc) == _normal(otlp_proto._from_wire(data))


_VALID = [CASES[k] for k in ("every-kind", "all-fields", "envelope", "sdk-mixed-records")]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_VALID), st.data())
def test_damaged_requests_give_a_document_or_a_proto_error(valid: bytes, data: st.DataObject) -> None:
    """Truncated, with bytes changed or inserted: never another exception; when upb and the wire
    reader both read it, they read the same."""
    b = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["cut", "flip", "insert"]))
        i = data.draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "cut":
            del b[i:]
        elif op == "flip" and b:
            b[i] = data.draw(st.integers(0, 255))
        else:
            b[i:i] = data.draw(st.binary(min_size=1, max_size=11))
    damaged = bytes(b)
    doc = _only_proto_error(damaged)
    if doc is not None:
        assert _normal(doc) == _normal(otlp_proto._from_wire(damaged))


def test_other_messages_and_huge_length_prefixes() -> None:
    # a LogRecord on its own is no request: field 1 is then a fixed64, the wrong wire type
    with pytest.raises(ProtoError, match="wrong wire type"):
        request_from_protobuf(LogRecord(time_unix_nano=5).SerializeToString())
    for n in (2**31, 2**32 + 5, 2**63, 2**64 - 1):
        with pytest.raises(ProtoError, match="truncated"):
            request_from_protobuf(tag(1, 2) + varint(n) + b"x")
        with pytest.raises(ProtoError, match="truncated"):
            request_from_protobuf(record_bytes(tag(3, 2) + varint(n)))
    with pytest.raises(TypeError):
        request_from_protobuf("text")  # type: ignore[arg-type]
    assert request_from_protobuf(bytearray(CASES["flags-only"])) == request_from_protobuf(CASES["flags-only"])


def test_error_names_the_byte() -> None:
    body = CASES["every-kind"]
    with pytest.raises(ProtoError, match=r"truncated message .* at byte \d+$"):
        request_from_protobuf(body[: len(body) // 2])


# -- speed -----------------------------------------------------------------------------------------


def bench(records: int = 512, rounds: int = 20) -> dict[str, float]:
    """records/s of request_from_protobuf for one request of `records` mixed SDK records (upb path and
    wire reader), with decoding.decode_log_record of every record for scale."""
    body = sdk_encode_logs(_sdk_batch(records)[0]).SerializeToString()

    def rate(fn: Any) -> float:
        best = math.inf
        for _ in range(rounds):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return records / best

    def decode() -> None:
        for _, _, rec in otlpjson.iter_log_records(doc):
            decoding.decode_log_record(rec)

    doc = request_from_protobuf(body)
    return {
        "bytes": float(len(body)),
        "request_from_protobuf": rate(lambda: request_from_protobuf(body)),
        "wire reader only": rate(lambda: otlp_proto._from_wire(body)),
        "strict decode of the result": rate(decode),
    }


def test_bench_runs_and_sdk_requests_take_the_upb_path() -> None:
    figures = bench(records=64, rounds=1)
    assert figures["request_from_protobuf"] > 0
    body = CASES["sdk-mixed-records"]  # the SDK's encoding is the one upb writes back: no wire reader needed
    assert ExportLogsServiceRequest.FromString(body).SerializeToString() == body


if __name__ == "__main__":  # pragma: no cover
    for k, v in bench().items():
        print(f"{k}: {v:,.0f}{'' if k == 'bytes' else ' records/s'}")
