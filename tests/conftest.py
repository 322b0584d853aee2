"""Shared fixtures: a keys folder, a real signing pipeline that writes an archive, archive editing.

The pipeline is the real one (SDK LoggerProvider -> SigningProcessor -> Batch or Simple
processor -> FileLogRecordExporter writing OTLP JSON lines); tampering edits those lines on
disk, as an attacker with write access to the archive would.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import settings as _hypothesis_settings
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from otel_audit import _native, canonical, keys
from otel_audit.canonical import DIGEST, PREV_DIGEST, STREAM_ID, STREAM_SEQ
from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.keys import Keyring, Signer
from otel_audit.processors.signing import SigningProcessor
from otel_audit.verify import Report, StreamReport, decode_value, verify_paths

KEY_NAME = "test-key"

# -- keys ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def shared_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keys folder with one key, shared read-only by the whole session."""
    d = tmp_path_factory.mktemp("shared-keys")
    keys.generate(d, KEY_NAME)
    return d


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    """A fresh keys folder with one key, for tests that rotate or otherwise change keys."""
    d = tmp_path / "keys"
    keys.generate(d, KEY_NAME)
    return d


@pytest.fixture(scope="session")
def keyring(shared_keys: Path) -> Keyring:
    return Keyring.load(shared_keys / keys.KEYRING_FILE)


@pytest.fixture(scope="session")
def other_keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    """A keyring of a different key with the same name: the 'wrong keyring'."""
    d = tmp_path_factory.mktemp("other-keys")
    keys.generate(d, KEY_NAME)
    return Keyring.load(d)


# -- records the pipeline writes -------------------------------------------------------------------

EVENT_NAMES = ("authentication.login.succeeded", "gen_ai.request", "config.changed", "authorization.denied")


def mixed_record(i: int) -> dict[str, Any]:
    """Keyword arguments of Logger.emit for record i: bodies and attributes of every AnyValue type.

    Every record carries the int attribute "i" (its index) and the string "user.id", so that a
    test can find it and change a value or a type.
    """
    bodies: list[Any] = [
        f"event {i}: caf\u00e9 \u05e9\u05dc\u05d5\u05dd \U0001f600",
        i * 1000 - 7,
        i / 8 + 0.1,
        i % 3 == 0,
        bytes([i % 256, 0, 255]),
        ["a", i, 1.5, None, [True, b"\x01"]],
        {"k": i, "nested": {"list": [1, "1", 1.0, True]}, "empty": {}},
        None,
    ]
    attributes: dict[str, Any] = {
        "i": i,
        "user.id": f"user-{i % 7}",
        "ratio": i / 4,
        "ok": i % 2 == 0,
        "tags": ("a", f"t{i}"),
    }
    if i % 5 == 0:
        attributes["blob"] = b"\x00\xff" + bytes([i % 256])
    if i % 11 == 0:
        attributes["gen_ai.usage"] = {"input_tokens": i, "model": "m\u00e9"}
    return {
        "event_name": EVENT_NAMES[i % len(EVENT_NAMES)],
        "body": bodies[i % len(bodies)],
        "attributes": attributes,
        "severity_number": SeverityNumber.INFO if i % 4 else SeverityNumber.WARN,
        "severity_text": "INFO" if i % 4 else "WARN",
    }


@dataclass
class Written:
    """What one run of the pipeline wrote."""

    path: Path
    stream_id: str
    events: int
    length: int  # seqs in the stream: events plus checkpoints
    processor: SigningProcessor

    @property
    def end_seq(self) -> int:
        return self.length - 1


def make_pipeline(
    path: Path,
    signer: Signer | Path,
    *,
    checkpoint_every: int = 50,
    checkpoint_interval: float = 3600.0,
    state_dir: Path | None = None,
    simple: bool = False,
    fsync: str = "never",
    service: str = "otel-audit-tests",
) -> tuple[LoggerProvider, SigningProcessor]:
    """A LoggerProvider whose one processor is SigningProcessor -> Batch/Simple -> file exporter."""
    exporter = FileLogRecordExporter(path, fsync=fsync)
    # Small batches, so that an archive of a few hundred records spans several lines.
    downstream = (SimpleLogRecordProcessor(exporter) if simple
                  else BatchLogRecordProcessor(exporter, max_export_batch_size=64))
    resource = Resource.create({"service.name": service})
    provider = LoggerProvider(resource=resource)
    sp = SigningProcessor(
        signer,
        downstream=downstream,
        checkpoint_every=checkpoint_every,
        checkpoint_interval=checkpoint_interval,
        state_dir=state_dir,
        resource=resource,
    )
    provider.add_log_record_processor(sp)
    return provider, sp


def write_archive(
    path: Path,
    signer: Signer | Path,
    n: int = 300,
    *,
    checkpoint_every: int = 50,
    checkpoint_interval: float = 3600.0,
    state_dir: Path | None = None,
    simple: bool = False,
) -> Written:
    """Run the real pipeline: emit n mixed records, then shut down cleanly (end checkpoint)."""
    provider, sp = make_pipeline(
        path, signer, checkpoint_every=checkpoint_every, checkpoint_interval=checkpoint_interval,
        state_dir=state_dir, simple=simple,
    )
    logger = provider.get_logger("otel_audit.tests")
    for i in range(n):
        logger.emit(**mixed_record(i))
    provider.shutdown()
    return Written(path, sp.stream_id, n, sp.seq, sp)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, shared_keys: Path) -> Written:
    """One archive of 300 mixed records, checkpoint_every=50, closed cleanly; copy before editing."""
    d = tmp_path_factory.mktemp("pristine")
    return write_archive(d / "audit.jsonl", shared_keys, 300, checkpoint_every=50)


@pytest.fixture
def archive(pristine: Written, tmp_path: Path) -> Archive:
    """A private, editable copy of the pristine archive."""
    dest = tmp_path / "audit.jsonl"
    shutil.copyfile(pristine.path, dest)
    return Archive.load(dest)


# -- reading and editing archives ------------------------------------------------------------------


def attr_value(rec: Mapping[str, Any], key: str) -> Any:
    """The decoded value of a record's attribute, or None."""
    for kv in rec.get("attributes") or ():
        if kv["key"] == key:
            return decode_value(kv.get("value") or {})
    return None


def set_attr(rec: dict[str, Any], key: str, anyvalue: dict[str, Any]) -> None:
    """Set an attribute to an OTLP/JSON AnyValue, in place (added when absent)."""
    for kv in rec.setdefault("attributes", []):
        if kv["key"] == key:
            kv["value"] = anyvalue
            return
    rec["attributes"].append({"key": key, "value": anyvalue})


def seq_of(rec: Mapping[str, Any]) -> int:
    return int(attr_value(rec, STREAM_SEQ))


def stream_of(rec: Mapping[str, Any]) -> str:
    return str(attr_value(rec, STREAM_ID))


def canonical_of(rec: Mapping[str, Any]) -> bytes:
    """The canonical bytes the verifier computes for a record, from its fields as they stand."""
    attrs = {kv["key"]: decode_value(kv.get("value") or {}) for kv in rec.get("attributes") or ()}
    body = rec.get("body")
    return canonical.canonical_bytes(
        stream_of(rec), seq_of(rec), rec.get("eventName", ""), int(rec.get("timeUnixNano") or 0),
        int(rec.get("severityNumber") or 0), rec.get("severityText", ""),
        None if body is None else decode_value(body), attrs,
    )


def reseal(rec: dict[str, Any], prev: bytes | None = None) -> bytes:
    """Forge: recompute the record's digest from its (edited) fields so it is self-consistent.

    The digest is SHA-256(0x00 || prev || canonical) (canonical.record_digest); with `prev` the
    record is also re-linked to that predecessor digest.
    """
    if prev is None:
        prev = bytes.fromhex(str(attr_value(rec, PREV_DIGEST)))
    else:
        set_attr(rec, PREV_DIGEST, {"stringValue": prev.hex()})
    digest = hashlib.sha256(b"\x00" + prev + canonical_of(rec)).digest()
    set_attr(rec, DIGEST, {"stringValue": digest.hex()})
    return digest


def is_checkpoint(rec: Mapping[str, Any]) -> bool:
    return rec.get("eventName") == canonical.CHECKPOINT_EVENT


class Archive:
    """The OTLP JSON lines of an archive file, parsed; records are edited in place, then saved."""

    def __init__(self, path: Path, lines: list[dict[str, Any]]) -> None:
        self.path = path
        self.lines = lines

    @classmethod
    def load(cls, path: Path) -> Archive:
        opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            return cls(path, [orjson.loads(line) for line in fh if line.strip()])

    def _slots(self) -> Iterator[tuple[list[dict[str, Any]], int]]:
        for doc in self.lines:
            for rl in doc.get("resourceLogs") or ():
                for sl in rl.get("scopeLogs") or ():
                    recs = sl.get("logRecords") or []
                    for i in range(len(recs)):
                        yield recs, i

    def records(self) -> list[dict[str, Any]]:
        """Every log record, in file order (the dicts themselves: edits change the archive)."""
        return [recs[i] for recs, i in self._slots()]

    def find(self, seq: int, stream: str | None = None) -> dict[str, Any]:
        """The one record at seq (of the stream, when given)."""
        found = [r for r in self.records() if seq_of(r) == seq and (stream is None or stream_of(r) == stream)]
        assert len(found) == 1, f"expected one record at seq {seq}, found {len(found)}"
        return found[0]

    def events(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if not is_checkpoint(r)]

    def checkpoint_seqs(self) -> list[int]:
        return sorted(seq_of(r) for r in self.records() if is_checkpoint(r))

    def remove(self, rec: dict[str, Any]) -> None:
        """Delete one record (by identity) from whatever batch holds it."""
        for recs, i in self._slots():
            if recs[i] is rec:
                del recs[i]
                return
        raise AssertionError("record is not in the archive")

    def append(self, rec: dict[str, Any]) -> None:
        """Add a record as a new line, under the resource and scope of the first line."""
        first = self.lines[0]["resourceLogs"][0]
        doc = {"resourceLogs": [{"resource": copy.deepcopy(first.get("resource", {})),
                                 "scopeLogs": [{"scope": {"name": "forger"}, "logRecords": [rec]}]}]}
        self.lines.append(doc)

    def explode(self) -> None:
        """One record per line, keeping each record's resource and scope (as a collector may re-batch)."""
        out = []
        for doc in self.lines:
            for rl in doc.get("resourceLogs") or ():
                for sl in rl.get("scopeLogs") or ():
                    for rec in sl.get("logRecords") or ():
                        out.append({"resourceLogs": [{"resource": rl.get("resource", {}), "scopeLogs": [
                            {"scope": sl.get("scope", {}), "logRecords": [rec]}]}]})
        self.lines = out

    def save(self, path: Path | None = None, *, compress: bool = False) -> Path:
        dest = path or self.path
        data = b"".join(orjson.dumps(doc) + b"\n" for doc in self.lines)
        dest.write_bytes(gzip.compress(data) if compress else data)
        return dest


# -- verifying -------------------------------------------------------------------------------------


def verify(paths: list[Path] | Path, ring: Keyring, **kw: Any) -> Report:
    """verify_paths without a progress bar. On the native integrity core, the same input is verified again on
    the pure-Python path and the two reports must be identical, as JSON and as text: every test that verifies
    through here is a differential test of the two paths."""
    ps = paths if isinstance(paths, list) else [paths]
    before = _snapshot(ps)
    rep = verify_paths(ps, ring, progress=False, **kw)
    # Not where verifying has effects (--state writes the state the second run would read) or where the input
    # is still being written (a live collector's archive): then it is not the same verification twice.
    if _native.core() is not None and kw.get("state") is None and _snapshot(ps) == before:
        assert_same_report_in_pure_python(rep, lambda: verify_paths(ps, ring, progress=False, **kw),
                                          lambda: _snapshot(ps) == before)
    return rep


def _snapshot(paths: list[Path]) -> list[tuple[str, int, int]]:
    """(path, size, mtime) of every file under `paths`: whether the input changed between two verifications."""
    out = []
    for p in paths:
        for f in sorted(Path(p).rglob("*")) if Path(p).is_dir() else [Path(p)]:
            with contextlib.suppress(OSError):
                st = f.stat()
                out.append((str(f), st.st_size, st.st_mtime_ns))
    return out


def assert_same_report_in_pure_python(rep: Report, again: Callable[[], Report],
                                      same_input: Callable[[], bool] = lambda: True) -> None:
    """`again()` on the pure-Python path gives exactly `rep` (the native core's report), as JSON and as text
    (unless `same_input()` says the input changed meanwhile)."""
    from otel_audit.verify.render import render_text

    saved = os.environ.get(_native.ENV)
    os.environ[_native.ENV] = "off"
    _native.reset()
    try:
        pure = again()
    finally:
        if saved is None:
            os.environ.pop(_native.ENV, None)
        else:
            os.environ[_native.ENV] = saved
        _native.reset()
    if not same_input():
        return
    got, want = orjson.dumps(rep.to_json(), option=orjson.OPT_SORT_KEYS), orjson.dumps(
        pure.to_json(), option=orjson.OPT_SORT_KEYS)
    assert got == want, f"native and pure-Python reports differ:\nnative: {got[:3000]!r}\npython: {want[:3000]!r}"
    assert render_text(rep) == render_text(pure)


def only_stream(report: Report) -> StreamReport:
    assert len(report.streams) == 1, [s.stream_id for s in report.streams]
    return report.streams[0]


def stream(report: Report, stream_id: str) -> StreamReport:
    for s in report.streams:
        if s.stream_id == stream_id:
            return s
    raise AssertionError(f"stream {stream_id} not in the report")


def assert_clean(s: StreamReport) -> None:
    """Every integrity list of the stream report is empty."""
    for name in ("modified", "missing", "conflicting", "inserted", "broken_links", "bad_signatures",
                 "unknown_keys", "expired_keys", "bad_checkpoints", "root_mismatch", "problems"):
        assert getattr(s, name) == [], (name, getattr(s, name), s.problems)


def child_env() -> dict[str, str]:
    """The environment for child Python processes: this interpreter's, unbuffered."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


# Property tests check behaviour, not speed: a loaded 2-core machine must not fail them on a deadline.
_hypothesis_settings.register_profile("otel-audit", deadline=None)
_hypothesis_settings.load_profile("otel-audit")



# -- running under pytest-xdist (tests/run.sh: -n N --dist loadgroup) --------------------------------
#
# Every server in the suite binds port 0 and every file lives under tmp_path, so any test may run in
# any worker. What is arranged here only saves time; a run without xdist keeps file order:
#   - the modules of SHARED_SETUP_MODULES (a module-scoped fixture of their own builds something
#     costly: a wheel and a venv, a collector pipeline, a suspended producer) each go to one worker
#     as a whole, so that fixture is built once and not once per worker. xdist's own xdist_group
#     mark would do it, but pytest 9.2's structured node ids make loadgroup ignore the mark
#     (pytest-xdist#1386), so the scheduler below groups by module name, from the node id;
#   - tests marked `slow` (mostly waiting: a 30 s outage, a kill and restart, a venv) are queued first,
#     each followed by one other unit (those modules first), in each worker's collection order, which
#     all workers compute alike and --no-loadscope-reorder keeps: they overlap the many short tests
#     instead of ending the run alone.

SHARED_SETUP_MODULES = frozenset(f"tests/{m}.py" for m in (
    "test_collector_e2e", "test_collector_shipped_e2e", "test_collector_siem_e2e", "test_credential_formats",
    "test_demo",
    "test_fuzz_api", "test_fuzz_redaction", "test_liveness", "test_otlp_exporter", "test_packaging",
    "test_secret_corpus", "test_siem_crosscheck", "test_tamper_prove",
))


def xdist_unit(nodeid: str) -> str:
    """What one worker runs as a whole: a module of SHARED_SETUP_MODULES, or else the one test."""
    module = nodeid.split("::", 1)[0]
    return module if module in SHARED_SETUP_MODULES else nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """--dist loadgroup, with the units of `xdist_unit` (and xdist_group marks, once xdist sees them)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleGroupScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return xdist_unit(nodeid) if scope == nodeid else scope

    return ModuleGroupScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: file order
        return
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        units.setdefault(xdist_unit(item.nodeid), []).append(item)

    slow = [u for u in units.values() if any(item.get_closest_marker("slow") for item in u)]
    others = sorted((u for u in units.values() if u not in slow), key=lambda u: 0 if len(u) > 1 else 1)
    # Each slow unit followed by another unit: with two workers per core, about half the workers wait in
    # slow tests while the others keep the cores busy (all slow first left the cores idle for a minute).
    order = [u for pair in zip(slow, others, strict=False) for u in pair] + slow[len(others):] + others[len(slow):]
    items[:] = [item for unit in order for item in unit]


# -- PostgreSQL ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A real PostgreSQL server of this session (tests/pg_support.py), started on first use, removed at the end."""
    from pg_support import PgServer

    server = PgServer().start()
    try:
        yield server
    finally:
        server.close()
