"""Adversarial tests of the native integrity core against the pure-Python reference.

Written from the outside (README, docs/canonical-form.md, docs/verify-memory.md, native/README.md, the CLI
and the public API): an insider who can edit the archive, and a client who controls record contents. Every
test runs the same input on the native core (OTEL_AUDIT_NATIVE=required) and on pure Python
(OTEL_AUDIT_NATIVE=off) and demands the same report, or a bound the docs promise. Tests that need the native
module are skipped when it is not installed.
"""

from __future__ import annotations

import enum
import gzip
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Archive, Written, make_pipeline
from opentelemetry._logs import SeverityNumber

from otel_audit import _native
from otel_audit.errors import InputError
from otel_audit.keys import Keyring
from otel_audit.verify import verify_paths
from otel_audit.verify.render import render_text

try:
    import otel_audit_native  # noqa: F401
    HAVE_NATIVE = True
except ImportError:  # pragma: no cover
    HAVE_NATIVE = False

needs_native = pytest.mark.skipif(not HAVE_NATIVE, reason="the native integrity core is not installed")
OTEL_AUDIT = str(Path(sys.executable).with_name("otel-audit"))


@pytest.fixture
def mode_env() -> Iterator[None]:
    saved = os.environ.get(_native.ENV)
    yield
    if saved is None:
        os.environ.pop(_native.ENV, None)
    else:
        os.environ[_native.ENV] = saved
    _native.reset()


def _run(mode: str, paths: list[Path], ring: Keyring) -> tuple[str, str]:
    """(JSON report, text report) on one path; an InputError (exit 2) becomes ("exit2", its message)."""
    os.environ[_native.ENV] = mode
    _native.reset()
    try:
        rep = verify_paths(paths, ring, progress=False)
    except InputError as e:
        return "exit2", str(e)
    return orjson.dumps(rep.to_json(), option=orjson.OPT_SORT_KEYS).decode(), render_text(rep)


def both(paths: list[Path] | Path, ring: Keyring) -> tuple[str, str]:
    ps = paths if isinstance(paths, list) else [paths]
    native = _run("required", ps, ring)
    pure = _run("off", ps, ring)
    assert native[0] == pure[0], f"JSON differs:\nnative: {native[0][:2000]}\npython: {pure[0][:2000]}"
    assert native[1] == pure[1], f"text differs:\nnative: {native[1][:2000]}\npython: {pure[1][:2000]}"
    return pure


# -- 1. report differences --------------------------------------------------------------------------


@needs_native
def test_truncated_gzip_same_report(pristine: Written, keyring: Keyring, tmp_path: Path, mode_env: None) -> None:
    """Attack: cut the tail off a gzipped archive (a partial copy, or an insider hiding the last records).
    Expected: the same report on both cores. Found: pure Python verifies the lines before the cut and
    reports FAILED (exit 1, "read failed after 3 line(s)", 154 records proven); the native core reads
    0 lines and exits 2 ("no audit records found ... read failed after 0 line(s)")."""
    p = tmp_path / "audit.jsonl.gz"
    p.write_bytes(gzip.compress(pristine.path.read_bytes())[:-20])
    both(p, keyring)


@needs_native
def test_gzip_with_trailing_garbage_same_report(pristine: Written, keyring: Keyring, tmp_path: Path,
                                                 mode_env: None) -> None:
    """Attack: append bytes after the gzip member of an archive. Expected: the same report on both cores.
    Found: pure Python reports FAILED (exit 1) with the records read; native exits 2 having read 0 lines."""
    p = tmp_path / "audit.jsonl.gz"
    p.write_bytes(gzip.compress(pristine.path.read_bytes()) + b"garbage")
    both(p, keyring)


# Raw edits of the archive text (escapes, whitespace, number forms, duplicates, envelope games). They did
# not break: both cores give identical reports. Each is (name, old, new).
RAW_EDITS = [
    ("escaped member name", b'"eventName":"config.changed"', b'"event\\u004eame":"config.changed"'),
    ("escaped duplicate member", b'"eventName":"config.changed"',
     b'"eventName":"config.changed","event\\u004eame":"config.changed"'),
    ("escaped integrity key", b'"key":"audit.stream.seq"', b'"key":"audit.stream\\u002eseq"'),
    ("escaped seq digits", b'"key":"audit.stream.seq","value":{"intValue":"64"}',
     b'"key":"audit.stream.seq","value":{"intValue":"6\\u0034"}'),
    ("seq as JSON number", b'"key":"audit.stream.seq","value":{"intValue":"64"}',
     b'"key":"audit.stream.seq","value":{"intValue":64}'),
    ("escaped solidus changes value", b'"stringValue":"user-6"', b'"stringValue":"user\\/6"'),
    ("whitespace", b'{"key":"user.id","value":{"stringValue":"user-6"}}',
     b'{ "key" : "user.id" ,\t"value" :\r{ "stringValue" : "user-6" } }'),
    ("form feed is no JSON whitespace", b'{"key":"user.id","value":{"stringValue":"user-6"}}',
     b'{"key":"user.id",\x0c"value":{"stringValue":"user-6"}}'),
    ("int -0", b'{"key":"i","value":{"intValue":"62"}}', b'{"key":"i","value":{"intValue":-0}}'),
    ("int 6.2e1", b'{"key":"i","value":{"intValue":"62"}}', b'{"key":"i","value":{"intValue":6.2e1}}'),
    ("int 2^64", b'{"key":"i","value":{"intValue":"62"}}',
     b'{"key":"i","value":{"intValue":18446744073709551616}}'),
    ("double -0", b'{"key":"ratio","value":{"doubleValue":15.5}}', b'{"key":"ratio","value":{"doubleValue":-0}}'),
    ("double 1e400", b'{"key":"ratio","value":{"doubleValue":15.5}}',
     b'{"key":"ratio","value":{"doubleValue":1e400}}'),
    ("double 1e-400", b'{"key":"ratio","value":{"doubleValue":15.5}}',
     b'{"key":"ratio","value":{"doubleValue":1e-400}}'),
    ("double long digits", b'{"key":"ratio","value":{"doubleValue":15.5}}',
     b'{"key":"ratio","value":{"doubleValue":15.5000000000000000000000000000000000000001}}'),
    ("double Infinit\\u0079", b'{"key":"ratio","value":{"doubleValue":15.5}}',
     b'{"key":"ratio","value":{"doubleValue":"Infinit\\u0079"}}'),
    ("lone surrogate escape", b'"stringValue":"user-6"', b'"stringValue":"user\\ud8006"'),
    ("reversed surrogate pair", b'"stringValue":"user-6"', b'"stringValue":"user\\udc00\\ud8006"'),
    ("UTF-8 encoded surrogate", b'"stringValue":"user-6"', b'"stringValue":"user\xed\xa0\x806"'),
    ("overlong UTF-8", b'"stringValue":"user-6"', b'"stringValue":"user\xc0\xaf6"'),
    ("raw control char", b'"stringValue":"user-6"', b'"stringValue":"user\x016"'),
    ("escaped NUL", b'"stringValue":"user-6"', b'"stringValue":"user\\u00006"'),
    ("escaped base64", b'"bytesValue":"AP9B"', b'"bytesValue":"AP\\u0039B"'),
    ("bad UTF-8 in unknown envelope field", b'"scope":{"name":"otel_audit.tests"}',
     b'"scope":{"name":"otel_audit.tests","zz":"\xff"}'),
    ("duplicate member in unknown envelope field", b'"scope":{"name":"otel_audit.tests"}',
     b'"scope":{"name":"otel_audit.tests","zz":{"a":1,"a":2}}'),
    ("deep unknown envelope field", b'"scope":{"name":"otel_audit.tests"}',
     b'"scope":{"name":"otel_audit.tests","zz":' + b"[" * 100000 + b"]" * 100000 + b"}"),
    ("escaped service.name, other value", b'{"key":"service.name","value":{"stringValue":"otel-audit-tests"}}',
     b'{"key":"service\\u002ename","value":{"stringValue":"evil"}}'),
    ("service.name twice", b'{"key":"service.name","value":{"stringValue":"otel-audit-tests"}}',
     b'{"key":"service.name","value":{"stringValue":"otel-audit-tests"}},'
     b'{"key":"service.name","value":{"stringValue":"evil"}}'),
    ("uppercase traceId", b'"observedTimeUnixNano":"',
     b'"traceId":"0123456789ABCDEF0123456789ABCDEF","observedTimeUnixNano":"'),
    ("flags 2^32", b'"observedTimeUnixNano":"', b'"flags":4294967296,"observedTimeUnixNano":"'),
    ("snake_case field", b'"observedTimeUnixNano":"', b'"event_name":"x","observedTimeUnixNano":"'),
    ("deep body", b'"body":{"kvlistValue"',
     b'"body":' + b'{"arrayValue":{"values":[' * 20000 + b"]}}" * 20000 + b',"zz":{"kvlistValue"'),
]


@needs_native
@pytest.mark.parametrize("name,old,new", RAW_EDITS, ids=[e[0] for e in RAW_EDITS])
def test_raw_edit_same_report(name: str, old: bytes, new: bytes, pristine: Written, keyring: Keyring,
                              tmp_path: Path, mode_env: None) -> None:
    """Attack: one raw-text edit of the archive (did not break). Expected: identical JSON and text reports."""
    raw = pristine.path.read_bytes()
    assert old in raw
    p = tmp_path / "audit.jsonl"
    p.write_bytes(raw.replace(old, new, 1))
    both(p, keyring)


@needs_native
@pytest.mark.parametrize("edit", ["crlf", "bom", "blank", "merged", "trailing", "shuffle", "dup_reversed",
                                  "one_line_x3", "gzip_two_members"])
def test_layout_edit_same_report(edit: str, pristine: Written, keyring: Keyring, tmp_path: Path,
                                 mode_env: None) -> None:
    """Attack: line layout games (CRLF, BOM, blank lines, two lines merged, trailing bytes, records shuffled
    across lines, everything duplicated in reverse, all records thrice in one line, gzip of two members).
    Did not break: identical reports."""
    import random
    raw = pristine.path.read_bytes()
    suffix = ".jsonl"
    if edit == "crlf":
        data = raw.replace(b"\n", b"\r\n")
    elif edit == "bom":
        data = b"\xef\xbb\xbf" + raw
    elif edit == "blank":
        data = raw.replace(b"\n", b"\n\n \n")
    elif edit == "merged":
        data = raw.replace(b"}\n{", b"}{", 1)
    elif edit == "trailing":
        data = raw.replace(b"}\n", b"}\x00\n", 1)
    elif edit == "gzip_two_members":
        data, suffix = gzip.compress(raw[:5000]) + gzip.compress(raw[5000:]), ".jsonl.gz"
    else:
        a = Archive.load(pristine.path)
        if edit == "one_line_x3":
            res = a.lines[0]["resourceLogs"][0]["resource"]
            a.lines = [{"resourceLogs": [{"resource": res, "scopeLogs": [
                {"scope": {"name": "x"}, "logRecords": a.records() * 3}]}]}]
        else:
            a.explode()
            random.Random(7).shuffle(a.lines)
            if edit == "dup_reversed":
                a.lines = a.lines + a.lines[::-1]
        data = b"".join(orjson.dumps(d) + b"\n" for d in a.lines)
    p = tmp_path / ("audit" + suffix)
    p.write_bytes(data)
    both(p, keyring)


# -- 3. resources ------------------------------------------------------------------------------------


def _peak_rss_kb(path: Path, keys: Path, mode: str) -> tuple[int, float, int]:
    code = ("import resource,subprocess,sys,time;t=time.time();"
            "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,time.time()-t,r.returncode)")
    out = subprocess.run([sys.executable, "-c", code, OTEL_AUDIT, "verify", "--keys", str(keys), str(path),
                          "--no-progress"], env={**os.environ, _native.ENV: mode}, capture_output=True,
                         check=True, timeout=900).stdout.split()
    return int(out[0]), float(out[1]), int(out[2])


@needs_native
@pytest.mark.slow
def test_memory_bounded_with_many_unsigned_records(pristine: Written, shared_keys: Path, tmp_path: Path) -> None:
    """Attack: a hostile archive of many lines of tiny records without integrity attributes (`{}`), e.g.
    30 lines of 100,000 each (9 MB). docs/verify-memory.md promises memory bounded by streams and the
    window, not by archive size. Expected: the native core's peak RSS stays within the pure-Python
    path's (x2, +100 MB). Found: native grows ~130 bytes per record without bound (80 lines of 100k:
    1.09 GB native vs 52 MB pure Python), so a few hundred MB of `{}` records exhaust memory."""
    line = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + b",".join([b"{}"] * 100_000) + b"]}]}]}\n"
    p = tmp_path / "audit.jsonl"
    p.write_bytes(line * 30 + pristine.path.read_bytes())
    native, _, rc_n = _peak_rss_kb(p, shared_keys, "required")
    pure, _, rc_p = _peak_rss_kb(p, shared_keys, "off")
    assert rc_n == rc_p == 1
    assert native <= 2 * pure + 100_000, f"peak RSS native {native} KB, pure Python {pure} KB"


@needs_native
@pytest.mark.slow
def test_blank_lines_not_slower_than_pure_python(pristine: Written, shared_keys: Path, tmp_path: Path) -> None:
    """Attack: pad an archive with millions of empty lines (a gzip of 76 KB holds 20M of them). Expected:
    the accelerator is no slower than the reference (x2 allowed, +2 s). Found: native takes ~4x as long
    (5M blank lines: 15.7 s native vs 3.7 s pure; 20M gzipped: 78 s vs 19 s), a cheap verification DoS."""
    raw = pristine.path.read_bytes()
    p = tmp_path / "audit.jsonl"
    p.write_bytes(raw + b"\n" * 2_000_000 + raw)
    _, t_native, rc_n = _peak_rss_kb(p, shared_keys, "required")
    _, t_pure, rc_p = _peak_rss_kb(p, shared_keys, "off")
    assert rc_n == rc_p == 0
    assert t_native <= 2 * t_pure + 2.0, f"native {t_native:.1f} s, pure Python {t_pure:.1f} s"


# -- 4. signing: values a client controls ------------------------------------------------------------


class Outcome(str, enum.Enum):
    DENIED = "denied"


class ShownAs(str):
    def __str__(self) -> str:
        return "shown"


class Float64(float):
    """What numpy.float64 is to the SDK: a float subclass."""


SIGN_VALUES: dict[str, Any] = {
    "str_enum": Outcome.DENIED,
    "str_subclass_with___str__": ShownAs("stored"),
    "float_subclass": Float64(1.5),
}


@pytest.mark.parametrize("where", ["attribute", "body"])
@pytest.mark.parametrize("name", list(SIGN_VALUES))
@pytest.mark.parametrize("mode", [pytest.param("required", marks=needs_native), "off"])
def test_signed_unusual_value_verifies(mode: str, name: str, where: str, shared_keys: Path, keyring: Keyring,
                                       tmp_path: Path, mode_env: None) -> None:
    """Attack: a client passes a str-Enum member, a str subclass with its own __str__, or a float subclass
    (numpy.float64) as an attribute or body through the SDK logger. Expected: the record is signed as it is
    exported and the archive VERIFIES, on both cores. Found (both cores alike): the str-Enum and the str
    subclass are signed as one text and exported as another, so the honest record is reported MODIFIED;
    the float subclass makes the file exporter refuse the record ("Type is not JSON serializable"), so it is
    reported MISSING. Either way a client can make an honest archive fail verification."""
    os.environ[_native.ENV] = mode
    _native.reset()
    p = tmp_path / "audit.jsonl"
    provider, _ = make_pipeline(p, shared_keys, simple=True)
    logger = provider.get_logger("attack")
    v = SIGN_VALUES[name]
    kw: dict[str, Any] = {"attributes": {"v": v}} if where == "attribute" else {"body": v}
    logger.emit(event_name="attack.value", severity_number=SeverityNumber.INFO, severity_text="INFO", **kw)
    provider.shutdown()
    rep = verify_paths([p], keyring, progress=False)
    assert rep.to_json()["result"] == "verified", render_text(rep)


@needs_native
def test_native_and_pure_signing_write_the_same_records(shared_keys: Path, keyring: Keyring, tmp_path: Path,
                                                        mode_env: None) -> None:
    """Attack: sign the same hostile values (int subclasses, IntEnum, bool vs int, int64 bounds and beyond,
    NaN, +-inf, -0.0, 5e-324, dicts, OrderedDict, int map keys, nesting 64 and 66 deep, surrogates, control
    characters, event names with NUL/surrogates, 'audit.checkpoint') on both cores. Did not break: the
    records written are identical apart from ids and times, and each archive gets the same report on
    both verifiers."""
    import collections

    class Int(int):
        pass

    class IE(enum.IntEnum):
        A = 5

    deep: list[Any] = []
    x = deep
    for _ in range(66):
        y: list[Any] = []
        x.append(y)
        x = y
    values: list[Any] = [Int(7), IE.A, True, 1, 2**63 - 1, -2**63, 2**63, float("nan"), float("inf"), -0.0, 5e-324,
                         {"b": 1, "a": [1, 2]}, collections.OrderedDict([("b", 1), ("a", 2)]), {1: "x"}, deep,
                         "a\ud800b", "a\x00\x1b\x7f\u2028b", [True, 1], b"", ""]
    names = ["ev\x00\n", "ev\ud800", "", "audit.checkpoint"]

    def produce(mode: str) -> list[dict[str, Any]]:
        os.environ[_native.ENV] = mode
        _native.reset()
        p = tmp_path / f"{mode}.jsonl"
        provider, _ = make_pipeline(p, shared_keys, simple=True)
        logger = provider.get_logger("attack")
        for v in values:
            logger.emit(event_name="a", attributes={"v": v})
            logger.emit(event_name="b", body=v)
        for n in names:
            logger.emit(event_name=n, body="x")
        provider.shutdown()
        both(p, keyring)
        out = []
        for r in Archive.load(p).records():
            r.pop("timeUnixNano", None)
            r.pop("observedTimeUnixNano", None)
            if r.get("eventName") == "audit.checkpoint":
                continue
            r["attributes"] = [kv for kv in r.get("attributes", []) if not kv["key"].startswith("audit.")]
            out.append(r)
        return out

    assert produce("required") == produce("off")


_ = (resource, time)


@pytest.mark.parametrize("mode", [pytest.param("required", marks=needs_native), "off"])
def test_unsignable_text_in_the_event_name_key_or_severity_is_kept_escaped(
        mode: str, shared_keys: Path, keyring: Keyring, tmp_path: Path, mode_env: None) -> None:
    """Found while fixing the above: an event name, attribute key or severity text holding a lone surrogate made
    emit raise (the record was refused and lost: only body and values had stand-ins). Now each is signed with
    the surrogate written as \\udXXX, and the archive verifies, on both cores."""
    os.environ[_native.ENV] = mode
    _native.reset()
    p = tmp_path / "audit.jsonl"
    provider, _ = make_pipeline(p, shared_keys, simple=True)
    logger = provider.get_logger("attack")
    logger.emit(event_name="ev\ud800", severity_text="INFO\udc00", body="x", attributes={"k\udfff": "v"})
    provider.shutdown()
    rep = verify_paths([p], keyring, progress=False)
    assert rep.to_json()["result"] == "verified", render_text(rep)
    recs = [r for r in Archive.load(p).records() if r.get("eventName") != "audit.checkpoint"]
    assert [r["eventName"] for r in recs] == ["ev\\ud800"]
    assert recs[0]["severityText"] == "INFO\\udc00"
    assert any(kv["key"] == "k\\udfff" for kv in recs[0]["attributes"])
