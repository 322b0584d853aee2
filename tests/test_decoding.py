"""Strict OTLP/JSON decoding (otel_audit/decoding.py, docs/canonical-form.md §7).

The vectors of decoding-v1.json; tamper cases on an archive the real pipeline wrote, through the CLI;
and a differential test against protobuf's json_format (the second standard decoder next to pdata):
for every line we accept, json_format reads the same values field by field.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import types
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Archive, Written, mixed_record, write_archive
from google.protobuf import json_format
from hypothesis import example, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from test_tamper_cli import verify_json

from otel_audit import canonical, decoding
from otel_audit.canonical import STREAM_ID, STREAM_SEQ
from otel_audit.decoding import RULES, DecodeError, decode_line
from otel_audit.keys import Keyring
from otel_audit.verify import Verifier

VECTORS = json.loads((Path(canonical.__file__).parent / "testvectors" / "decoding-v1.json").read_text("utf-8"))


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _canonical(f: decoding.LogRecordFields) -> bytes:
    attrs = dict(f.attributes)
    sid, seq = attrs.pop(STREAM_ID), attrs.pop(STREAM_SEQ)
    return canonical.canonical_bytes(sid, seq, f.event_name, f.time_unix_nano, f.severity_number, f.severity_text,
                                     f.body, attrs)


# -- the vectors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["rejected"], ids=lambda v: v["name"])
def test_rejected_vector(vector: dict[str, Any]) -> None:
    """Each rejected line raises DecodeError with the vector's rule and path."""
    with pytest.raises(DecodeError) as info:
        decode_line(_bytes(vector["line"]))
    assert (info.value.rule, info.value.path) == (vector["rule"], vector["path"])
    assert vector["rule"] in str(info.value) and vector["path"] in str(info.value)


@pytest.mark.parametrize("vector", VECTORS["accepted"], ids=lambda v: v["name"])
def test_accepted_vector(vector: dict[str, Any]) -> None:
    """Each accepted edge form and its plain twin decode to the vector's canonical bytes."""
    for text in (vector["line"], vector["plain"]):
        ((_, _, f),) = decode_line(_bytes(text))
        assert _canonical(f) == vector["canonical"].encode("utf-8")


def test_vectors_decode_alike_without_strict_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """With Python 3.10's base64 path (no strict_mode) every vector decodes, or is refused, exactly as with it."""
    monkeypatch.setattr(decoding, "sys", types.SimpleNamespace(version_info=(3, 10, 0)))
    calls: list[bytes] = []
    checked = decoding._a2b_base64_checked

    def counted(raw: bytes) -> bytes:
        calls.append(raw)
        return checked(raw)

    monkeypatch.setattr(decoding, "_a2b_base64_checked", counted)
    for vector in VECTORS["rejected"]:
        with pytest.raises(DecodeError) as info:
            decode_line(_bytes(vector["line"]))
        assert (info.value.rule, info.value.path) == (vector["rule"], vector["path"]), vector["name"]
    for vector in VECTORS["accepted"]:
        for text in (vector["line"], vector["plain"]):
            ((_, _, f),) = decode_line(_bytes(text))
            assert _canonical(f) == vector["canonical"].encode("utf-8"), vector["name"]
    assert calls  # the vectors hold bytesValues, and the 3.10 path read them


def test_every_rule_has_a_vector() -> None:
    """Every rule id but the one of embedded canonical content (tested below) is exercised by a vector."""
    covered = {v["rule"] for v in VECTORS["rejected"]}
    assert covered == set(RULES) - {"non-canonical-content"}


# -- tamper cases on a real archive, through the CLI -----------------------------------------------

MARK = "__tamper__"


def _attr_index(rec: dict[str, Any], key: str) -> int:
    return next(i for i, kv in enumerate(rec["attributes"]) if kv["key"] == key)


def _blob_record(archive: Archive) -> dict[str, Any]:
    return next(r for r in archive.events() if any(kv["key"] == "blob" for kv in r["attributes"]))


def _locate(archive: Archive, rec: dict[str, Any]) -> tuple[int, int]:
    """(line number in the file, index of the record in its line)."""
    for n, doc in enumerate(archive.lines, 1):
        recs = [r for rl in doc["resourceLogs"] for sl in rl["scopeLogs"] for r in sl["logRecords"]]
        for i, r in enumerate(recs):
            if r is rec:
                return n, i
    raise AssertionError("record not in the archive")


def _arabic(digits: str) -> str:
    return "".join(chr(0x0660 + int(c)) for c in digits)


def _dup_attr(rec: dict[str, Any]) -> str:
    rec["attributes"].append({"key": "user.id", "value": {"stringValue": "mallory"}})
    return f"attributes[{len(rec['attributes']) - 1}].key"


def _two_values(rec: dict[str, Any]) -> str:
    i = _attr_index(rec, "user.id")
    rec["attributes"][i]["value"]["intValue"] = "1"
    return f"attributes[{i}].value"


def _both_spellings(rec: dict[str, Any]) -> str:
    rec["severity_number"] = 21
    return "severity_number"


def _bool_string(rec: dict[str, Any]) -> str:
    i = _attr_index(rec, "ok")
    rec["attributes"][i]["value"] = {"boolValue": "false"}
    return f"attributes[{i}].value.boolValue"


def _int_fraction(rec: dict[str, Any]) -> str:
    i = _attr_index(rec, "i")
    rec["attributes"][i]["value"] = {"intValue": int(rec["attributes"][i]["value"]["intValue"]) + 0.9}
    return f"attributes[{i}].value.intValue"


def _arabic_time(rec: dict[str, Any]) -> str:
    rec["timeUnixNano"] = _arabic(rec["timeUnixNano"])  # Python's int() reads the very same number
    return "timeUnixNano"


def _base64_tail(rec: dict[str, Any]) -> str:
    i = _attr_index(rec, "blob")
    rec["attributes"][i]["value"]["bytesValue"] += "AA==AAAA"  # Python's lenient b64decode stops at the "="
    return f"attributes[{i}].value.bytesValue"


def _dup_member(rec: dict[str, Any]) -> str:
    # a forged time first, the signed one last: orjson keeps the last (verifies), another reader the first
    rec[MARK] = rec["timeUnixNano"]
    return "timeUnixNano"


CASES = {
    "duplicate attribute key, second value differs": ("duplicate-key", _dup_attr),
    "two value fields": ("two-value-fields", _two_values),
    "both spellings of severityNumber": ("both-spellings", _both_spellings),
    'boolValue "false"': ("non-canonical-bool", _bool_string),
    "intValue with a fraction": ("non-canonical-int", _int_fraction),
    "Arabic-Indic digits in timeUnixNano": ("non-canonical-int", _arabic_time),
    "base64 with data after the padding": ("bad-base64", _base64_tail),
    "duplicate JSON object member": ("duplicate-member", _dup_member),
}


@pytest.mark.parametrize("name", list(CASES))
def test_tampered_archive_is_refused_and_located(name: str, archive: Archive, shared_keys: Path) -> None:
    """The CLI exits 1 and its JSON report names file:line(#index), the rule and the path."""
    rule, edit = CASES[name]
    rec = _blob_record(archive) if name.startswith("base64") else archive.find(123)
    line, index = _locate(archive, rec)
    path = edit(rec)
    archive.save()
    if MARK in rec:
        text = archive.path.read_text("utf-8")
        signed = rec[MARK]
        old = f'"timeUnixNano":"{signed}"'
        assert text.count(old) >= 1
        text = text.replace(f',"{MARK}":"{signed}"', "").replace(old, f'"timeUnixNano":"1",{old}', 1)
        archive.path.write_text(text, "utf-8")
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1 and doc["result"] == "failed"
    if rule == "duplicate-member":
        where = f"{archive.path}:{line}: "
        path = f"resourceLogs[0].scopeLogs[0].logRecords[{index}].{path}"
    else:
        where = f"{archive.path}:{line}" + (f"#{index}: " if index else ": ")
    found = [m for m in doc["malformed"] if m.startswith(where)]
    assert found, doc["malformed"]
    assert f"{rule} at {path}:" in found[0], found[0]
    assert doc["problems"]


def test_pristine_archive_decodes_strictly(pristine: Written) -> None:
    """Every line the real pipeline writes (every AnyValue type) passes strict decoding."""
    for text in pristine.path.read_bytes().splitlines():
        assert decode_line(text)


# -- embedded canonical content (SIEM records known by audit.integrity.record) ---------------------


def test_embedded_canonical_content_must_be_canonical(keyring: Keyring) -> None:
    """add_canonical takes exact canonical bytes; the same content with a space, unsorted keys or a
    duplicate member is a located problem naming non-canonical-content."""
    content = canonical.content_bytes("e", 5, 9, "INFO", {"k": 1.5, "b": b"\x01"}, {"b": 1, "a": "x"})
    sid = "0123456789abcdef0123456789abcdef"
    prev = bytes(32)
    digest = canonical.record_digest(prev, canonical.join(sid, 1, content)).hex()
    v = Verifier(keyring)
    v.add_canonical(sid, "1", prev.hex(), digest, content.decode(), "good")
    assert v.report.malformed == []
    assert decoding.decode_canonical_content(content.decode())[5] == {"b": 1, "a": "x"}
    text = content.decode()
    bad = [text.replace(',"INFO"', ', "INFO"'), text.replace('{"a":"x","b":1}', '{"b":1,"a":"x"}'),
           text.replace('{"a":"x"', '{"a":"x","a":"x"')]
    for i, text in enumerate(bad):
        assert text != content.decode()
        v.add_canonical(sid, "1", prev.hex(), digest, text, f"bad{i}")
        assert v.report.malformed[-1].startswith(f"bad{i}: not strict OTLP/JSON: non-canonical-content at "), \
            v.report.malformed[-1]
    v.add_canonical(sid, "01", prev.hex(), digest, content.decode(), "zero")
    assert v.report.malformed[-1].startswith("zero: integrity fields have the wrong form")


# -- differential: protobuf's json_format reads what we read ------------------------------------


def _pb_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _pb_attrs(v.kvlist_value.values)
    return getattr(v, kind)


def _pb_attrs(kvs: Any) -> dict[str, Any]:
    out = {kv.key: _pb_value(kv.value) for kv in kvs}
    assert len(out) == len(kvs)
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types (NaN equals NaN, -0.0 differs from 0.0): their canonical forms agree."""
    return bool(orjson.dumps(canonical.encode_value(a), option=orjson.OPT_SORT_KEYS)
                == orjson.dumps(canonical.encode_value(b), option=orjson.OPT_SORT_KEYS))


def _differential(text: bytes, *, ignore_unknown: bool = False) -> int:
    ours = decode_line(text)
    doc = orjson.loads(text)
    for rl in doc.get("resourceLogs", ()):
        for sl in rl.get("scopeLogs", ()):
            for rec in sl.get("logRecords", ()):
                # OTLP/JSON writes trace and span ids in hex where protobuf's mapping uses base64
                for k in ("traceId", "spanId"):
                    if k in rec:
                        rec[k] = base64.b64encode(bytes.fromhex(rec[k])).decode()
    pb = json_format.Parse(orjson.dumps(doc), ExportLogsServiceRequest(), ignore_unknown_fields=ignore_unknown)
    theirs = [(rl, sl, r) for rl in pb.resource_logs for sl in rl.scope_logs for r in sl.log_records]
    assert len(theirs) == len(ours)
    for (resource, scope, f), (rl, sl, r) in zip(ours, theirs, strict=True):
        assert _same(resource, _pb_attrs(rl.resource.attributes))
        assert (scope.name, scope.version) == (sl.scope.name, sl.scope.version)
        assert _same(scope.attributes, _pb_attrs(sl.scope.attributes))
        assert (f.event_name, f.time_unix_nano, f.observed_time_unix_nano, f.severity_number, f.severity_text,
                f.flags, f.dropped_attributes_count) == (r.event_name, r.time_unix_nano, r.observed_time_unix_nano,
                                                         r.severity_number, r.severity_text, r.flags,
                                                         r.dropped_attributes_count)
        assert (bytes.fromhex(f.trace_id), bytes.fromhex(f.span_id)) == (r.trace_id, r.span_id)
        assert _same(f.body, _pb_value(r.body)) if r.HasField("body") else f.body is None
        assert _same(f.attributes, _pb_attrs(r.attributes))
    return len(ours)


EDGE_VALUES: list[Any] = [
    "", "caf\u00e9", "e\u0301", "\U0001f600\u200d", "\u202eabc", "\u0000\u001f\u007f\u2028", '"\\/:{}[],',
    0, 1, -1, 2**53 + 1, 2**63 - 1, -(2**63), 1e-320, 5e-324, -0.0, 0.0, 1e16, 0.1, 1.7976931348623157e308,
    math.nan, math.inf, -math.inf, True, False, b"", b"\x00\xff", bytes(range(256)), [], {}, [[], {}], None,
    {"a": {"b": {"c": [1, "1", 1.0, True, None, b"\x01"]}}, "": 0, "\uffff": 1, "\U0001f600": 2},
]


def test_json_format_reads_what_we_read_on_the_pipeline_archive(tmp_path: Path, shared_keys: Path) -> None:
    """The real pipeline's archive (mixed value types) and generated edge values, with trace context and
    flags: json_format and our decoder agree on every field of every record, resource and scope."""
    w = write_archive(tmp_path / "a.jsonl", shared_keys, 120, checkpoint_every=40)
    n = sum(_differential(text) for text in w.path.read_bytes().splitlines())
    assert n == w.length
    assert any(mixed_record(i)["body"] is not None for i in range(8))
    from otel_audit.otlpjson import encode_anyvalue, encode_attributes

    recs = []
    for i, v in enumerate(EDGE_VALUES):
        recs.append({"timeUnixNano": str(2**64 - 1 - i), "observedTimeUnixNano": str(i), "severityNumber": i % 25,
                     "severityText": "\u00e9" * i, "eventName": f"e{i}", "body": encode_anyvalue(v),
                     "attributes": encode_attributes({"v": v, "nested": [v, {"x": v}], "i": i}),
                     "droppedAttributesCount": i, "flags": 2**32 - 1 - i,
                     "traceId": hashlib.md5(bytes([i])).hexdigest(),
                     "spanId": hashlib.md5(bytes([i])).hexdigest()[:16]})
    doc = {"resourceLogs": [{"resource": {"attributes": encode_attributes({"service.name": "s", "n": 1})},
                             "scopeLogs": [{"scope": {"name": "n", "version": "1",
                                                      "attributes": encode_attributes({"k": b"\x01"})},
                                            "logRecords": recs}]}]}
    assert _differential(orjson.dumps(doc)) == len(EDGE_VALUES)


@pytest.mark.parametrize("vector", VECTORS["accepted"], ids=lambda v: v["name"])
def test_json_format_reads_each_accepted_vector_alike(vector: dict[str, Any]) -> None:
    """json_format reads every accepted edge form as we do (unknown envelope fields ignored, as OTLP asks)."""
    _differential(_bytes(vector["line"]), ignore_unknown="unknown" in vector["name"])


# Rejected vectors that json_format parses rather than refuses, and what it makes of them: each is read
# differently from the plain form by json_format or by pdata (Go: no Unicode digits, strict base64, ...).
JSON_FORMAT_READS = {
    "an attribute key given twice with different values",
    "a kvlist key given twice (formerly 'the last wins' in canonical-v1)",
    "a resource attribute key given twice",
    "severityNumber and severity_number",
    "eventName and event_name",
    "event_name alone (OTLP/JSON keys are lowerCamelCase only)",
    "string_value in an AnyValue",
    "scope_logs in a resourceLogs",
    "stringValueStrindex (a dictionary index, not a value of the record)",
    "keyStrindex in a KeyValue",
    "body null",
    "a KeyValue without its key",
    "intValue 1e3 (a JSON number with an exponent)",
    "intValue with a leading zero",
    "intValue with a plus sign",
    "intValue with an underscore (Python's int() reads 1000)",
    "intValue -0",
    "timeUnixNano in Arabic-Indic digits (Python's int() reads them, Go does not)",
    "timeUnixNano in fullwidth digits",
    "timeUnixNano as a JSON number with a fraction",
    "severityNumber as a string",
    "severityNumber as an enum name",
    "doubleValue as a decimal string",
    "doubleValue as the JSON integer -0 (orjson: 0; pdata, protojson: -0.0)",
    "bytesValue with data after the padding",
    "bytesValue in the URL-safe alphabet",
    "bytesValue without padding",
    "bytesValue with non-zero padding bits",
    "bytesValue with a space",
    "traceId in upper case",
    "spanId of the wrong length",
}


@pytest.mark.parametrize("vector", VECTORS["rejected"], ids=lambda v: v["name"])
def test_json_format_on_each_rejected_vector(vector: dict[str, Any]) -> None:
    """json_format refuses the rejected line, or parses it (the table above): either way we name our rule."""
    try:
        json_format.Parse(_bytes(vector["line"]), ExportLogsServiceRequest())
    except (json_format.ParseError, ValueError, UnicodeDecodeError):
        parsed = False
    else:
        parsed = True
    assert parsed == (vector["name"] in JSON_FORMAT_READS)
    with pytest.raises(DecodeError) as info:
        decode_line(_bytes(vector["line"]))
    assert info.value.rule == vector["rule"]


def test_json_format_reads_both_spellings_differently() -> None:
    """The defect that started this: json_format takes the snake_case severity (the last), a camelCase
    reader the first; we refuse the line instead of proving either."""
    v = next(v for v in VECTORS["rejected"] if v["name"] == "severityNumber and severity_number")
    pb = json_format.Parse(v["line"], ExportLogsServiceRequest())
    assert pb.resource_logs[0].scope_logs[0].log_records[0].severity_number == 17
    assert orjson.loads(v["line"])["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]["severityNumber"] == 9


def test_negative_zero_text_is_read_two_ways() -> None:
    """The text -0 is an integer to Python's JSON parsers (orjson, json_format: 0, so 0.0) and a negative
    double to a float parser (Go's strconv.ParseFloat in pdata and protojson, like Python's float()):
    one line, two values, so it is refused."""
    v = next(v for v in VECTORS["rejected"] if v["name"].startswith("doubleValue as the JSON integer -0"))
    pb = json_format.Parse(v["line"], ExportLogsServiceRequest())
    d = pb.resource_logs[0].scope_logs[0].log_records[0].attributes[0].value.double_value
    assert d == 0.0 and math.copysign(1.0, d) == 1.0
    assert math.copysign(1.0, float("-0")) == -1.0


def test_siem_reader_refuses_a_repeated_member_in_audit_otlp(archive: Archive) -> None:
    """A Splunk result whose audit.otlp text repeats a member is an unverifiable record, named with its rule."""
    from otel_audit.sources.splunk import record_of

    text = orjson.dumps(archive.find(123)).decode()
    assert record_of({"audit.otlp": text})[0] is not None
    forged = text.replace('"timeUnixNano":', '"timeUnixNano":"1","timeUnixNano":', 1)
    record, why = record_of({"audit.otlp": forged})
    assert record is None and why.startswith("audit.otlp is not strict OTLP/JSON: duplicate-member at timeUnixNano")


def test_negative_zero_integer_double_is_refused(tmp_path: Path, shared_keys: Path) -> None:
    """`"doubleValue":-0` reads as the integer 0 to orjson (so 0.0, what was signed) but as -0.0 to pdata and
    protojson: the same line would prove one value and show another, so it is refused (found by an attacker)."""
    from conftest import make_pipeline

    path = tmp_path / "audit.jsonl"
    provider, _ = make_pipeline(path, shared_keys, checkpoint_every=10, simple=True)  # a line per record
    logger = provider.get_logger("otel_audit.tests")
    for i in range(3):
        logger.emit(event_name="payment.refund", body="refund", attributes={"amount": 0.0, "i": i})
    provider.shutdown()
    text = path.read_text("utf-8")
    assert text.count('{"doubleValue":0.0}') == 3
    path.write_text(text.replace('{"doubleValue":0.0}', '{"doubleValue":-0}', 1), "utf-8")
    code, doc = verify_json(shared_keys, path)
    assert code == 1 and doc["result"] == "failed"
    assert any("non-canonical-double" in m and "-0" in m for m in doc["malformed"]), doc["malformed"]
    # -0.0 itself is a canonical double: a different value from the signed 0.0, so a modification
    path.write_text(text.replace('{"doubleValue":0.0}', '{"doubleValue":-0.0}', 1), "utf-8")
    code, doc = verify_json(shared_keys, path)
    assert code == 1 and doc["streams"][0]["modified"], doc


def test_digest_in_upper_case_hex_is_refused(archive: Archive, shared_keys: Path) -> None:
    """The integrity digests are lower-case hex (canonical form); an upper-case copy is not the signed text."""
    rec = archive.find(123)
    i = _attr_index(rec, "audit.integrity.digest")
    rec["attributes"][i]["value"]["stringValue"] = rec["attributes"][i]["value"]["stringValue"].upper()
    archive.save()
    code, doc = verify_json(shared_keys, archive.path)
    assert code == 1
    assert any("lower-case hex" in m for m in doc["malformed"]), doc["malformed"]


def _strict_outcome(fn: Any, raw: bytes) -> bytes | None:
    try:
        return fn(raw)
    except binascii.Error:
        return None


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="AB+/z09=-_ \n", max_size=12).map(str.encode))
@example(b"")
@example(b"AB==")
@example(b"ABC=")
@example(b"AB=")
@example(b"AB=C")
@example(b"=AAA")
@example(b"AAAA=")
@example(b"AB==AB==")
@example(b"A===")
@example(b"AB\n==")
def test_base64_without_strict_mode_reads_what_strict_mode_reads(raw: bytes) -> None:
    """Python 3.10 lacks a2b_base64's strict_mode (mypy, checking for 3.10, found the keyword: every bytesValue raised
    TypeError there): the fallback reads nothing strict mode refuses, and every canonical form it reads, alike."""
    got = _strict_outcome(decoding._a2b_base64_checked, raw)
    want = _strict_outcome(functools.partial(binascii.a2b_base64, strict_mode=True), raw)
    if got is not None:
        assert got == want
    if want is not None and binascii.b2a_base64(want, newline=False) == raw:
        assert got == want
