"""The native integrity core (otel_audit_native, native/) against the pure-Python reference.

The native module is an accelerator: for every input it either gives exactly what the Python code gives
(canonical bytes, digests, what the strict decoder reads from a line, RFC 6962 compact ranges) or declines
(None) so that Python handles the input. These tests check both halves: whatever native accepts equals the
reference, native never accepts what the reference refuses, and (so that the tests are not vacuous) native
does accept the ordinary inputs it is there to speed up.

Skipped when the module is not installed, unless OTEL_AUDIT_NATIVE=required (then a missing module fails).
Build and install it: ``cd native && ../.venv/bin/maturin develop --release`` (see native/README.md).
"""

from __future__ import annotations

import copy
import enum
import hashlib
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_audit import canonical, decoding
from otel_audit.canonical import CHECKPOINT_EVENT, DIGEST, GAP_EVENT, PREV_DIGEST, RECORD, STREAM_ID, STREAM_SEQ
from otel_audit.merkle import CompactRange

if os.environ.get("OTEL_AUDIT_NATIVE") == "required":
    import otel_audit_native as native  # a missing module fails the run here
else:
    native = pytest.importorskip(
        "otel_audit_native", reason="otel_audit_native is not installed (build it: cd native && maturin develop "
        "--release); set OTEL_AUDIT_NATIVE=required to fail instead")

VECTORS = Path(canonical.__file__).parent / "testvectors"
ZERO = bytes(32)
FP_KEY = bytes(range(16))
_ABSENT = object()


def test_interface() -> None:
    assert native.ABI == 2
    assert native.__version__ == "0.1.0"
    for name in ("sign", "scan_line", "merkle_extend", "content_bytes"):
        assert callable(getattr(native, name))


# -- the reference: what Python reads from a line ------------------------------------------------------------


def py_record(rec: Any) -> tuple[str, dict[str, Any] | None]:
    """What the verifier (Verifier.add_record, _link) makes of one raw logRecord: ('ok', fields) or a reason."""
    try:
        f = decoding.decode_log_record(rec)
    except decoding.DecodeError:
        return "bad", None
    attrs = dict(f.attributes)
    stream = attrs.pop(STREAM_ID, None)
    seq = attrs.pop(STREAM_SEQ, None)
    prev = attrs.pop(PREV_DIGEST, None)
    dig = attrs.pop(DIGEST, None)
    embedded = attrs.pop(RECORD, _ABSENT)
    if stream is None:
        return "unsigned", None
    if type(stream) is not str or len(stream) != 32 or not re.fullmatch("[0-9a-f]{32}", stream):
        return "malformed", None
    if type(seq) is not int or seq < 0 or type(prev) is not str or type(dig) is not str:
        return "malformed", None
    try:
        pb, db = bytes.fromhex(prev), bytes.fromhex(dig)
    except ValueError:
        return "malformed", None
    if len(pb) != 32 or len(db) != 32 or pb.hex() != prev or db.hex() != dig:
        return "malformed", None
    try:
        content = canonical.content_bytes(f.event_name, f.time_unix_nano, f.severity_number, f.severity_text,
                                          f.body, attrs)
    except canonical.CanonicalError:
        return "malformed", None
    calc = hashlib.sha256(b"\x00" + pb + canonical.join(stream, seq, content)).digest()
    return "ok", {"stream": stream, "seq": seq, "t": f.time_unix_nano, "calc": calc, "prev": pb, "dig": db,
                  "event": f.event_name, "embedded": embedded is not _ABSENT}


def py_line(line: bytes) -> tuple[list[dict[str, Any]], list[tuple[int, Any, tuple[str, Any]]]] | None:
    """(resource attributes per resourceLogs, [(res_idx, raw record, py_record)]) or None: the line is refused."""
    try:
        doc = decoding.loads(line)
        groups = list(decoding.walk_request(doc))
    except decoding.DecodeError:
        return None
    rls = doc.get("resourceLogs") or []
    resources = []
    for rl in rls:
        res = rl.get("resource")
        resources.append(decoding.decode_attributes(res["attributes"]) if res and "attributes" in res else {})
    records = []
    for rl, _sl, _res, _scope, recs in groups:
        idx = next(i for i, x in enumerate(rls) if x is rl)
        records.extend((idx, rec, py_record(rec)) for rec in recs)
    return resources, records


def typed(d: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return sorted((k, type(v).__name__, v) for k, v in d.items())


def fingerprint(calc: bytes, dig: bytes, key: bytes = FP_KEY) -> bytes:
    return hashlib.blake2b(calc + dig, digest_size=8, key=key).digest()


def expand(items: list[tuple[Any, ...]]) -> list[tuple[str, int, dict[str, Any]]]:
    """The native items one per record: ('native' | 'raw', res_idx, fields)."""
    out: list[tuple[str, int, dict[str, Any]]] = []
    streams: dict[str, str] = {}
    for it in items:
        if len(it) == 10:
            res, stream, first, n, tmin, tmax, first_prev, last_dig, leaves, fps = it
            assert streams.setdefault(stream, stream) is stream, "one str object per stream in a line"
            assert n >= 1 and len(leaves) == 32 * n and len(fps) == 8 * n
            prev = first_prev
            for i in range(n):
                dig = leaves[32 * i:32 * i + 32]
                out.append(("native", res, {"stream": stream, "seq": first + i, "calc": dig, "prev": prev,
                                            "dig": dig, "fp": fps[8 * i:8 * i + 8], "run": (tmin, tmax, n, i)}))
                prev = dig
            assert prev == last_dig
        elif len(it) == 7:
            res, stream, seq, t, calc, prev, dig = it
            assert streams.setdefault(stream, stream) is stream
            assert calc != dig
            out.append(("native", res, {"stream": stream, "seq": seq, "t": t, "calc": calc, "prev": prev,
                                        "dig": dig}))
        else:
            res, start, end = it
            out.append(("raw", res, {"start": start, "end": end}))
    return out


def check(line: bytes, key: bytes = FP_KEY) -> tuple[list[Any], list[Any]] | None:
    """scan_line(line) against the reference: None (declined) or its result, which is asserted correct."""
    got = native.scan_line(line, key)
    ref = py_line(line)
    if got is None:
        return None
    assert ref is not None, f"native accepted a line the strict decoder refuses: {line[:300]!r}"
    resources, items = got
    ref_resources, ref_records = ref
    assert [typed(r) for r in resources] == [typed(r) for r in ref_resources]
    flat = expand(items)
    assert len(flat) == len(ref_records), "one item per record"
    run_ts: dict[int, list[int]] = {}
    for k, ((kind, res, f), (idx, rec, (status, info))) in enumerate(zip(flat, ref_records, strict=True)):
        assert res == idx, f"record {k}: resource index"
        if kind == "raw":
            text = line[f["start"]:f["end"]]
            assert text == text.strip() and (text[:1] == b"{") == (type(rec) is dict)  # exactly the value's text
            assert orjson.loads(text) == rec, f"record {k}: raw offsets"
            continue
        assert status == "ok", f"record {k}: native took a record Python reads as {status}: {rec!r}"
        assert not info["embedded"] and info["event"] not in (CHECKPOINT_EVENT, GAP_EVENT)
        for name in ("stream", "seq", "calc", "prev", "dig"):
            assert f[name] == info[name], f"record {k}: {name}"
        if "run" in f:
            assert f["fp"] == fingerprint(info["calc"], info["dig"], key)
            tmin, tmax, n, i = f["run"]
            ts = run_ts.setdefault(k - i, [])
            ts.append(info["t"])
            if i == n - 1:
                nz = [t for t in ts if t]
                assert (tmin, tmax) == (min(nz) if nz else 0, max(ts))
        else:
            assert f["t"] == info["t"]
    return got


def natives(got: Any) -> int:
    return sum(1 for kind, _, _ in expand(got[1]) if kind == "native") if got else 0


def wrap(*records: Any, resource: Any = None) -> bytes:
    rl: dict[str, Any] = {"resource": {"attributes": resource or []},
                          "scopeLogs": [{"scope": {"name": "s"}, "logRecords": list(records)}]}
    return orjson.dumps({"resourceLogs": [rl]})


def kv(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": value}


def signed(rec: dict[str, Any], stream: str, seq: int, prev: bytes = ZERO) -> tuple[dict[str, Any], bytes]:
    """rec with integrity attributes whose digest Python computes (prev given); (record, digest)."""
    rec = dict(rec)
    base = list(rec.get("attributes", []))
    rec["attributes"] = [*base, kv(STREAM_ID, {"stringValue": stream}), kv(STREAM_SEQ, {"intValue": str(seq)}),
                         kv(PREV_DIGEST, {"stringValue": prev.hex()}), kv(DIGEST, {"stringValue": "0" * 64})]
    status, info = py_record(rec)
    if status != "ok":  # a record Python refuses: the digest stays zero
        return rec, ZERO
    rec["attributes"][-1] = kv(DIGEST, {"stringValue": info["calc"].hex()})
    return rec, info["calc"]


STREAM = "0123456789abcdef0123456789abcdef"


def test_typical_record_is_native() -> None:
    rec, d0 = signed({"timeUnixNano": "1700000000123456789", "severityNumber": 9, "severityText": "INFO",
                      "eventName": "user.login", "body": {"stringValue": "caf\u00e9 \"q\" \\ \x01 \U0001f600"},
                      "attributes": [kv("user.id", {"stringValue": "u1"}), kv("n", {"intValue": "-5"}),
                                     kv("ok", {"boolValue": True})]}, STREAM, 0)
    rec2, d1 = signed({"timeUnixNano": "5", "attributes": [kv("a", {"intValue": 7})]}, STREAM, 1, d0)
    got = check(wrap(rec, rec2, resource=[kv("service.name", {"stringValue": "svc"}), kv("x", {"intValue": "3"})]))
    assert got is not None
    resources, items = got
    assert resources == [{"service.name": "svc", "x": 3}]
    assert len(items) == 1 and len(items[0]) == 10  # one run of two
    assert items[0][2:6] == (0, 2, 5, 1700000000123456789)
    assert items[0][8] == d0 + d1


def test_modified_record_is_one() -> None:
    rec, _ = signed({"eventName": "e", "body": {"stringValue": "x"}}, STREAM, 3)
    rec["body"] = {"stringValue": "y"}
    got = check(wrap(rec))
    assert got is not None and len(got[1]) == 1 and len(got[1][0]) == 7


def test_special_records_are_raw() -> None:
    for change in ({"eventName": CHECKPOINT_EVENT}, {"eventName": GAP_EVENT}, {"body": {"intValue": "1"}},
                   {"attributes": [kv("d", {"doubleValue": 1.5})]}, {"traceId": "AB" * 16}, {"flags": -1},
                   {"severityNumber": "9"}, {"timeUnixNano": "05"}, {"body": {}}, {"unknown": 1}):
        rec, _ = signed({"eventName": "e", **change}, STREAM, 0)
        got = check(wrap(rec))
        assert got is not None and [len(i) for i in got[1]] == [3], change


def test_line_faults_decline() -> None:
    rec, _ = signed({"eventName": "e"}, STREAM, 0)
    good = wrap(rec)
    assert check(good) is not None
    text = good.decode()
    bad = [
        text.replace('"eventName":"e"', '"eventName":"e","eventName":"f"'),  # duplicate member
        text.replace('"eventName":"e"', '"eventName":"e","flags":-0'),  # -0
        # -0 anywhere (Python refuses the line): in a value native would read, inside a member it leaves to
        # Python, in a list, and with a fraction or exponent as well (declined too; Python reads those)
        text.replace('"eventName":"e"', '"eventName":"e","severityNumber":-0'),
        text.replace('"eventName":"e"', '"eventName":"e","x":{"y":[1,-0]}'),
        text.replace('"eventName":"e"', '"eventName":"e","body":{"doubleValue":-0.0}'),
        text.replace('"eventName":"e"', '"eventName":"e","body":{"doubleValue":-0e3}'),
        text.replace('{"resourceLogs"', '{"x":-0,"resourceLogs"'),
        text.replace('{"resourceLogs"', '{"extra":1,"resourceLogs"'),  # unknown top-level (decline is allowed)
        text[:-1],  # not JSON
        text.replace('"e"', '"\\ud800"'),  # lone surrogate
    ]
    for b in bad:
        assert native.scan_line(b.encode(), FP_KEY) is None, b


def test_line_endings_and_fp_key() -> None:
    rec, _ = signed({"eventName": "e"}, STREAM, 0)
    for end in (b"", b"\n", b"\r\n"):
        assert natives(check(wrap(rec) + end)) == 1
    key = bytes(range(64))
    got = check(wrap(rec), key)
    assert got is not None
    for bad in (b"", b"x" * 15, b"x" * 65):
        with pytest.raises(ValueError):
            native.scan_line(wrap(rec), bad)


# -- test vectors ---------------------------------------------------------------------------------------------


def _vector_record(inp: dict[str, Any], digest: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"timeUnixNano": inp["time_unix_nano"], "severityNumber": inp["severity_number"],
                           "severityText": inp["severity_text"], "eventName": inp["event_name"]}
    if inp["body"] is not None:
        rec["body"] = inp["body"]
    rec["attributes"] = [*inp["attributes"], kv(STREAM_ID, {"stringValue": inp["stream_id"]}),
                         kv(STREAM_SEQ, {"intValue": str(inp["seq"])}),
                         kv(PREV_DIGEST, {"stringValue": inp["prev"]}), kv(DIGEST, {"stringValue": digest})]
    return rec


def test_canonical_vectors() -> None:
    data = json.loads((VECTORS / "canonical-v1.json").read_text("utf-8"))
    handled = 0
    for v in data["vectors"]:
        inp = v["input"]
        got = check(wrap(_vector_record(inp, v["leaf_sha256"])))
        if natives(got):
            handled += 1
            assert got is not None and got[1][0][8] == bytes.fromhex(v["leaf_sha256"])
        # content_bytes / sign on the decoded values
        attrs = decoding.decode_attributes(inp["attributes"])
        body = decoding.decode_value(inp["body"]) if inp["body"] is not None else None
        t = int(inp["time_unix_nano"])
        c = native.content_bytes(inp["event_name"], t, inp["severity_number"], inp["severity_text"], body, attrs)
        ref = canonical.content_bytes(inp["event_name"], t, inp["severity_number"], inp["severity_text"], body, attrs)
        if c is not None:
            assert c == ref
            assert canonical.join(inp["stream_id"], inp["seq"], c) == v["canonical"].encode("utf-8")
            head = canonical.prefix(inp["stream_id"], inp["seq"])
            s = native.sign(bytes.fromhex(inp["prev"]), head, inp["event_name"], t, inp["severity_number"],
                            inp["severity_text"], body, attrs, True)
            assert s == (bytes.fromhex(v["leaf_sha256"]), v["leaf_sha256"], c)
    assert handled >= 5
    for v in data["invalid"]:
        got = check(wrap(_vector_record(v["input"], "0" * 64)))
        assert natives(got) == 0


_ATTRS_OF_RECORD = re.compile(rb'"attributes"\s*:\s*\[')


def _with_digests(line: bytes) -> bytes | None:
    """The line with prev (zero) and its computed digest inserted into the first record's attributes."""
    ref = py_line(line)
    if ref is None or len(ref[1]) != 1:
        return None
    rec = ref[1][0][1]
    f = decoding.decode_log_record(rec)
    attrs = dict(f.attributes)
    stream, seq = attrs.pop(STREAM_ID, None), attrs.pop(STREAM_SEQ, None)
    if type(stream) is not str or type(seq) is not int or PREV_DIGEST in attrs or DIGEST in attrs:
        return None
    content = canonical.content_bytes(f.event_name, f.time_unix_nano, f.severity_number, f.severity_text, f.body,
                                      attrs)
    calc = hashlib.sha256(b"\x00" + ZERO + canonical.join(stream, seq, content)).digest()
    at = line.find(b'"logRecords"')
    m = _ATTRS_OF_RECORD.search(line, at)
    if at < 0 or m is None:
        return None
    ins = (f'{{"key":"{PREV_DIGEST}","value":{{"stringValue":"{ZERO.hex()}"}}}},'
           f'{{"key":"{DIGEST}","value":{{"stringValue":"{calc.hex()}"}}}},').encode()
    return line[:m.end()] + ins + line[m.end():]


def test_decoding_vectors() -> None:
    data = json.loads((VECTORS / "decoding-v1.json").read_text("utf-8"))
    for v in data["rejected"]:
        line = v["line"].encode("utf-8", "surrogatepass")
        got = check(line)
        if v["path"] == "" or not v["path"].startswith("resourceLogs[0].scopeLogs[0].logRecords"):
            assert got is None, v["name"]  # a fault of the line or the envelope
        else:
            assert natives(got) == 0, v["name"]
    handled = 0
    for v in data["accepted"]:
        for line in (v["line"].encode("utf-8", "surrogatepass"), v["plain"].encode("utf-8", "surrogatepass")):
            check(line)
            sealed = _with_digests(line)
            if sealed is not None:
                handled += natives(check(sealed))
    assert handled >= 4


# -- sign / content_bytes against canonical.content_bytes -------------------------------------------------------

# every code point, lone surrogates and controls included
_any_char = st.one_of(st.characters(), st.characters(max_codepoint=0x7f), st.integers(0, 0x1f).map(chr),
                      st.integers(0xD800, 0xDFFF).map(chr), st.integers(0x10000, 0x10FFFF).map(chr))
_any_text = st.text(_any_char, max_size=12)
_plain = st.one_of(_any_text, st.booleans(), st.integers(-(2**63), 2**63 - 1))
_value = st.one_of(
    _plain,
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=True),
    st.binary(max_size=4),
    st.none(),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(0, 3), max_size=2),
)
_keys = st.one_of(_any_text, st.sampled_from(sorted(canonical.INTEGRITY_KEYS)),
                  st.sampled_from(["a", "é", "\uffff", "😀"]))


def _valid_text(s: Any) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class _Str(str):
    pass


class _Int(enum.IntEnum):
    A = 1


def _compare(event: Any, t: Any, sev: Any, text: Any, body: Any, attrs: Any) -> bytes | None:
    got = native.content_bytes(event, t, sev, text, body, attrs)
    try:
        ref = canonical.content_bytes(event, t, sev, text, body, attrs)
    except (canonical.CanonicalError, TypeError, ValueError):
        ref = None
    if got is not None:
        assert got == ref
    prev = bytes(range(32))
    head = canonical.prefix(STREAM, 42)
    s = native.sign(prev, head, event, t, sev, text, body, attrs, True)
    s2 = native.sign(prev, head, event, t, sev, text, body, attrs, False)
    if got is None:
        assert s is None and s2 is None
    else:
        d = hashlib.sha256(b"\x00" + prev + head + got[1:]).digest()
        assert s == (d, d.hex(), got)
        assert s2 == (d, d.hex(), None)
        assert d == canonical.record_digest(prev, canonical.join(STREAM, 42, got))
    return got


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    event=st.one_of(st.none(), _any_text),
    t=st.one_of(st.integers(0, 2**64 - 1), st.integers(-5, 2**65)),
    sev=st.one_of(st.integers(-(2**31), 2**31), st.integers(-(2**64), 2**64)),
    text=st.one_of(st.none(), _any_text),
    body=st.one_of(st.none(), _any_text, _value),
    attrs=st.dictionaries(_keys, _value, max_size=6),
)
def test_content_bytes_matches_python(event: Any, t: int, sev: int, text: Any, body: Any,
                                      attrs: dict[str, Any]) -> None:
    got = _compare(event, t, sev, text, body, attrs)
    certain = (
        all(x is None or _valid_text(x) for x in (event, text))
        and (body is None or (type(body) is str and _valid_text(body)))
        and 0 <= t < 2**64 and -(2**63) <= sev < 2**63
        and all(_valid_text(k) and k not in canonical.INTEGRITY_KEYS for k in attrs)
        and all((type(v) is str and _valid_text(v)) or type(v) is bool
                or (type(v) is int and -(2**63) <= v < 2**63) for v in attrs.values())
    )
    assert (got is not None) == certain, "native must accept every plain record and nothing else"


@settings(max_examples=300)
@given(attrs=st.dictionaries(_any_text, _plain, max_size=20))
def test_plain_attributes(attrs: dict[str, Any]) -> None:
    _compare("e", 1, 9, "INFO", "b", attrs)


def test_sign_declines() -> None:
    prev, head = bytes(32), canonical.prefix(STREAM, 0)
    ok = ("e", 1, 9, "INFO", "b", {"a": 1})
    assert native.sign(prev, head, *ok, True) is not None
    for i, bad in ((0, _Str("e")), (1, True), (1, -1), (1, 2**64), (1, 1.0), (1, None), (2, True), (2, 2**63),
                   (2, _Int.A), (2, None), (3, 5), (4, 5), (4, b"b"), (4, ["b"]), (4, _Str("b")), (5, {"a": _Int.A}),
                   (5, {"a": 1.0}), (5, {"a": _Str("x")}), (5, {_Str("a"): 1}), (5, {1: 1}), (5, {"a": None}),
                   (5, {"a": 2**63}), (5, {"a": "\udc00"}), (5, {"\ud800": 1}), (5, {STREAM_ID: "x"}),
                   (5, {RECORD: "x"}), (5, [("a", 1)]), (5, None)):
        args = list(ok)
        args[i] = bad
        assert native.sign(prev, head, *args, True) is None, (i, bad)
        assert native.content_bytes(*args) is None, (i, bad)
    assert native.sign(bytes(31), head, *ok, True) is None
    assert native.sign("0" * 32, head, *ok, True) is None


def test_escaping() -> None:
    s = "".join(map(chr, range(0x80))) + "\u2028\u2029\ufeff\U0001f600\u00e9"
    assert _compare(s, 0, 0, s, s, {s: s, "k": False, "m": -(2**63)}) is not None


# -- merkle_extend against CompactRange ----------------------------------------------------------------------


def test_merkle_extend() -> None:
    rnd = random.Random(6962)
    leaves = [hashlib.sha256(bytes([i % 256, i // 256])).digest() for i in range(600)]
    for _ in range(300):
        n0 = rnd.choice([0, 1, 2, 3, 7, 8, 63, 64, rnd.randrange(600)])
        m = rnd.choice([0, 1, 2, 5, rnd.randrange(600 - n0 + 1)])
        m = min(m, 600 - n0)
        cr = CompactRange()
        cr.extend(leaves[:n0])
        stack = list(cr._stack)
        got = native.merkle_extend(stack, n0, b"".join(leaves[n0:n0 + m]))
        assert stack == cr._stack  # not changed in place
        cr.extend(leaves[n0:n0 + m])
        assert got == cr._stack and cr.size == n0 + m
    with pytest.raises(ValueError):
        native.merkle_extend([], 0, b"x" * 33)
    with pytest.raises(ValueError):
        native.merkle_extend([b"x" * 31], 1, b"")
    with pytest.raises(ValueError):
        native.merkle_extend(["x" * 32], 1, b"")


# -- real archives, and mutations of them ---------------------------------------------------------------------


def _typical(i: int) -> dict[str, Any]:
    attrs: dict[str, Any] = {"audit.category": "authentication", "audit.action": "login", "user.id": f"user-{i % 7}",
                             "client.address": f"10.0.{i % 5}.{i % 251}", "i": i, "ok": i % 3 != 0,
                             "note": 'caf\u00e9 "quoted" \\ \t \U0001f600'}
    return {"event_name": "authentication.login." + ("succeeded" if i % 3 else "failed"),
            "body": f"user-{i % 7} logged in from 10.0.{i % 5}.{i % 251}", "attributes": attrs,
            "severity_text": "INFO" if i % 4 else "WARN"}


@pytest.fixture(scope="module")
def archive_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    from conftest import make_pipeline, mixed_record
    from opentelemetry._logs import SeverityNumber

    from otel_audit import keys

    d = tmp_path_factory.mktemp("native")
    keys.generate(d / "keys", "native-test")
    path = d / "audit.jsonl"
    provider, _sp = make_pipeline(path, d / "keys", checkpoint_every=50)
    logger = provider.get_logger("otel_audit.tests.native")
    for i in range(260):
        kw = mixed_record(i) if i % 10 == 9 else _typical(i)
        kw.setdefault("severity_number", SeverityNumber.INFO)
        logger.emit(**kw)
    provider.shutdown()
    return path.read_bytes().splitlines(keepends=True)


def test_archive_lines(archive_lines: list[bytes]) -> None:
    total = handled = 0
    for line in archive_lines:
        got = check(line)
        assert got is not None, "the file exporter's lines are read natively"
        total += len(py_line(line)[1])  # type: ignore[index]
        handled += natives(got)
    assert total >= 260 and handled >= 0.8 * 234


class _Raw(str):
    """JSON text put into a mutated line as it is (a number token, an escaped key)."""


class _Obj(list):  # type: ignore[type-arg]
    """A JSON object as a list of (key, value) members: it may hold a member twice."""


def _tree(x: Any) -> Any:
    if isinstance(x, dict):
        return _Obj((k, _tree(v)) for k, v in x.items())
    if isinstance(x, list):
        return [_tree(v) for v in x]
    return x


def _dump(x: Any, ws: str = "") -> str:
    """JSON text of a tree; `ws` is put after every '{', '[', ',' and ':' (whitespace between tokens)."""
    if isinstance(x, _Raw):
        return str(x)
    if isinstance(x, _Obj):
        return "{" + ws + ("," + ws).join(
            f"{_dump(k) if isinstance(k, _Raw) else json.dumps(k, ensure_ascii=False)}:{ws}{_dump(v, ws)}"
            for k, v in x) + ws + "}"
    if isinstance(x, list):
        return "[" + ws + ("," + ws).join(_dump(v, ws) for v in x) + ws + "]"
    return json.dumps(x, ensure_ascii=False)


def _nodes(x: Any, out: list[Any]) -> list[Any]:
    out.append(x)
    if isinstance(x, _Obj):
        for _k, v in x:
            _nodes(v, out)
    elif isinstance(x, list):
        for v in x:
            _nodes(v, out)
    return out


_SCALARS: list[Any] = [_Raw("-0"), _Raw("-0.0"), _Raw("0"), _Raw("1e3"), _Raw("5.0"), _Raw("-1"), 5, "5", "05", "+5",
                       "-0", " 5", "5.0", "", None, True, False, 2**63, -(2**63) - 1, 2**63 - 1, -(2**63), 2**64,
                       2**64 - 1, "18446744073709551616", "18446744073709551615", "9223372036854775808",
                       "-9223372036854775808", 2**32, -1, "\u0000", "a\"b", "AB" * 16, "ab" * 16, "ab" * 8,
                       _Raw('"\\u0061"'), _Raw('"\\ud800"'), [], {}, _Obj([("stringValue", "x")]),
                       _Obj([("intValue", "1")]), _Obj([("boolValue", True)]), _Obj([("doubleValue", 1.5)]),
                       "audit.checkpoint", "audit.gap", "0" * 64]
_NAMES = ["timeUnixNano", "observedTimeUnixNano", "severityNumber", "severity_number", "severityText", "eventName",
          "body", "attributes", "flags", "droppedAttributesCount", "traceId", "spanId", "stringValue", "intValue",
          "boolValue", "doubleValue", "key", "value", "resource", "scope", "scopeLogs", "logRecords", "schemaUrl",
          "name", "version", "unknown", "entityRefs", STREAM_ID, STREAM_SEQ, PREV_DIGEST, DIGEST, RECORD]


def _scalar(rnd: random.Random) -> Any:
    return copy.deepcopy(rnd.choice(_SCALARS))  # a copy: the list's objects are never changed


def _mutate_tree(doc: Any, rnd: random.Random) -> str:
    tree = _tree(doc)
    for _ in range(rnd.choice([1, 1, 1, 2, 3])):
        nodes = _nodes(tree, [])
        objs = [n for n in nodes if isinstance(n, _Obj) and n]
        lists = [n for n in nodes if isinstance(n, list) and not isinstance(n, _Obj) and n]
        op = rnd.randrange(9)
        if op == 0 and objs:  # a member twice (maybe spelled with an escape)
            o = rnd.choice(objs)
            k, v = rnd.choice(o)
            key = _Raw(json.dumps(k)[:-2] + f"\\u{ord(k[-1]):04x}" + '"') if k and rnd.random() < 0.3 else k
            o.insert(rnd.randrange(len(o) + 1), (key, copy.deepcopy(v) if rnd.random() < 0.5 else _scalar(rnd)))
        elif op == 1 and objs:  # reorder members
            rnd.shuffle(rnd.choice(objs))
        elif op in (2, 3, 4) and objs:  # another value
            o = rnd.choice(objs)
            i = rnd.randrange(len(o))
            o[i] = (o[i][0], _scalar(rnd))
        elif op == 5 and objs:  # another name
            o = rnd.choice(objs)
            i = rnd.randrange(len(o))
            o[i] = (rnd.choice(_NAMES), o[i][1])
        elif op == 6 and objs:  # a member less
            o = rnd.choice(objs)
            del o[rnd.randrange(len(o))]
        elif op == 7 and objs:  # a member more
            o = rnd.choice(objs)
            o.insert(rnd.randrange(len(o) + 1), (rnd.choice(_NAMES), _scalar(rnd)))
        elif lists:  # an array item twice, or moved
            li = rnd.choice(lists)
            if rnd.random() < 0.5:
                li.insert(rnd.randrange(len(li) + 1), copy.deepcopy(rnd.choice(li)))
            else:
                li.reverse()
    return _dump(tree, rnd.choice(["", "", "", " ", "\n", " \t\r\n"]))


def _mutate_bytes(line: bytes, rnd: random.Random) -> bytes:
    b = bytearray(line)
    for _ in range(rnd.choice([1, 1, 2, 4])):
        i = rnd.randrange(len(b))
        op = rnd.randrange(4)
        if op == 0:
            b[i] = rnd.choice(b'-0"\\{}[],:1a .eE\x00\x7f\xff\xc3')
        elif op == 1:
            del b[i]
        elif op == 2:
            b[i:i] = rnd.choice([b"-0", b"-", b"0", b'"', b"\\", b",", b" ", b"\\u0000", b"\\ud800", b"\xed\xa0\x80"])
        else:
            j = min(len(b), i + rnd.randrange(1, 40))
            b[j:j] = b[i:j]
    return bytes(b)


def _small_lines(lines: list[bytes], rnd: random.Random, n: int) -> list[bytes]:
    """Lines of 1..6 real records: a slice of a real line's records under its resource and scope."""
    out = []
    docs = [orjson.loads(x) for x in lines]
    for _ in range(n):
        doc = rnd.choice(docs)
        rl = doc["resourceLogs"][0]
        sl = rl["scopeLogs"][0]
        recs = sl["logRecords"]
        i = rnd.randrange(len(recs))
        part = recs[i:i + rnd.randint(1, 6)]
        out.append(orjson.dumps({"resourceLogs": [{**rl, "scopeLogs": [{**sl, "logRecords": part}]}]}))
    return out


def test_mutations(archive_lines: list[bytes]) -> None:
    rnd = random.Random(20261202)
    bases = _small_lines(archive_lines, rnd, 200)
    stats = {"declined": 0, "accepted": 0, "native": 0, "python-refuses": 0}
    for k in range(3000):
        base = rnd.choice(bases)
        if k % 2:
            line = _mutate_bytes(base, rnd)
        else:
            line = _mutate_tree(orjson.loads(base), rnd).encode("utf-8", "surrogatepass")
        if rnd.random() < 0.2:
            line += rnd.choice([b"\n", b"\r\n"])
        got = check(line)  # asserts: accepted => identical to Python; Python refuses => declined
        stats["declined" if got is None else "accepted"] += 1
        stats["native"] += natives(got)
        if py_line(line) is None:
            stats["python-refuses"] += 1
    # the mutations reach both sides
    assert stats["accepted"] > 500 and stats["native"] > 500 and stats["python-refuses"] > 500, stats


def test_two_resources_and_empty_ones() -> None:
    r0, d0 = signed({"eventName": "a"}, STREAM, 0)
    r1, _ = signed({"eventName": "b"}, STREAM, 1, d0)
    line = orjson.dumps({"resourceLogs": [
        {"resource": {"attributes": [kv("service.name", {"stringValue": "a"})]},
         "scopeLogs": [{"logRecords": [r0]}, {"scope": {"name": "x", "version": "1"}, "logRecords": []}]},
        {},
        {"scopeLogs": [{"logRecords": [r1]}], "schemaUrl": "u"},
    ]})
    got = check(line)
    assert got is not None
    resources, items = got
    assert resources == [{"service.name": "a"}, {}, {}]
    assert [(len(i), i[0]) for i in items] == [(10, 0), (10, 2)]  # another resourceLogs: another run


def test_raw_offsets_in_every_form() -> None:
    """Raw records are located whether the first member name is plain, escaped, spaced, or absent."""
    r0, d0 = signed({"eventName": "a"}, STREAM, 0)
    r1, _ = signed({"eventName": "b"}, STREAM, 1, d0)
    native_text = [orjson.dumps(r0).decode(), orjson.dumps(r1).decode()]
    for raw in ['{}', '5', '[]', '{"\\u0074imeUnixNano":"1"}', ' { "eventName" : "x" , "unknown" : [ {} ] } ',
                '{"eventName":"}{\\"][","body":{"kvlistValue":{"values":[]}}}', '{"x":"\\\\"}', 'null']:
        for order in ((raw, *native_text), (native_text[0], raw, native_text[1]), (*native_text, raw)):
            line = ('{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + ",".join(order) + ']}]}]}').encode()
            got = check(line)
            assert got is not None, (raw, order)
            assert natives(got) == 2
            assert sum(1 for it in got[1] if len(it) == 3) == 1
