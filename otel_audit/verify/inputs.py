"""Inputs of the verifier: files and folders, OTLP/JSON archives and SIEM exports, each record handed
to the prover (`prove.Verifier`).

Every input line is accounted for. A file is read line by line, and each line (or, for an export
that is one JSON document spread over many lines, the whole document; the items of a top-level
JSON array one by one) goes to the reader whose shape it has: an OTLP/JSON logs request
(``resourceLogs``) to `add_request`, a Splunk, Elasticsearch or Datadog item to that SIEM's reader
(`otel_audit.readers`; a Datadog CSV download is read whole, by its header). A line no reader
takes, or that two readers would take, is a located problem (file:line, why), never skipped; so
is a line longer than `MAX_LINE` (reported, and skipped to the next newline without being held).
``--source KIND`` (`verify_paths(source=...)`) accepts that kind only: a line of another is a
problem too.

Folders are read recursively, every file by its content. A file is skipped, and listed in the
report's ``skipped`` with why, only when nothing in it is an archive line: a public keyring
(``otel-audit-keyring/v1``), a verifier key (``.vkey``), a PEM key, a key spec (``hex:...``),
delivery spool files (checksummed lines of segments and ``drops.jsonl``, the checksummed
``spool.json`` manifest and cursors), a signing processor's chain state (``state.json``), an
empty file (``lock``), or the file exporter's unfinished ``.gz.tmp`` next to the file it
compresses. Any other file that holds no archive line is a problem ("not an archive").

Unusable input is an InputError (``otel-audit verify`` exits 2), never a silent skip: a path that
does not exist, a dangling or looping symbolic link, a named pipe, socket or device, a file or
folder (at any depth) that cannot be opened or listed, and input in which no record is found.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import io
import os
import queue
import re
import stat
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from otel_audit import _native, lifecycle
from otel_audit import readers as _readers
from otel_audit.decoding import DecodeError, check_members, walk_request
from otel_audit.errors import AuditError, InputError
from otel_audit.keys import FORMAT as KEYRING_FORMAT
from otel_audit.keys import Keyring
from otel_audit.readers import CANONICAL, MAX_DOCUMENT, MAX_LINE, Reader
from otel_audit.verify import state as audit_state
from otel_audit.verify.prove import STRICT, Verifier
from otel_audit.verify.report import Report

_loads = orjson.loads
#: the names archives usually have (`expand_paths`); `verify_paths` reads every file, by content
ARCHIVE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
__all__ = ["ARCHIVE_SUFFIXES", "CANONICAL", "MAX_DOCUMENT", "MAX_LINE", "SOURCES", "Found", "Progress",
           "add_findings", "add_otlp_file", "add_request", "expand_paths", "feed", "iter_records", "kinds_of",
           "scan", "verify_export", "verify_paths", "verify_reader"]


# -- finding the files -----------------------------------------------------------------------------


@dataclass
class Found:
    """The files to read, and what a folder holds that is plainly not an archive ("path (why)")."""

    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def scan(paths: Iterable[str | os.PathLike[str]]) -> Found:
    """Files as given; a folder means every file under it (symbolic links followed, each folder once),
    in name order. Raises InputError for anything that cannot be read."""
    found = Found()
    for p in map(Path, paths):
        st = _stat(p)
        if stat.S_ISDIR(st.st_mode):
            before = (len(found.files), len(found.skipped))
            _walk(p, found, {(st.st_dev, st.st_ino)})
            if (len(found.files), len(found.skipped)) == before:
                raise InputError(f"{p}: folder holds no files")
        elif stat.S_ISREG(st.st_mode):
            found.files.append(p)
        else:
            raise InputError(f"{p}: {_special(st.st_mode)}, not a file or folder; it cannot be verified")
    return found


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """For tools that want archive files by name: files as given; of a folder, the files `scan` finds whose
    names end in ARCHIVE_SUFFIXES (`verify_paths` reads every file of a folder, by content)."""
    out: list[Path] = []
    for p in map(Path, paths):
        files = scan([p]).files
        if p.is_dir():
            files = [f for f in files if f.name.endswith(ARCHIVE_SUFFIXES)]
            if not files:
                raise InputError(f"{p}: folder holds no archive files ({', '.join(ARCHIVE_SUFFIXES)})")
        out.extend(files)
    return out


def _stat(p: Path) -> os.stat_result:
    try:
        return os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            try:
                target = os.readlink(p)
            except OSError:
                target = "?"
            raise InputError(f"{p}: a symbolic link to {target}, which does not exist") from None
        raise InputError(f"{p}: no such file or folder") from None
    except OSError as exc:
        raise InputError(f"{p}: cannot read: {exc.strerror}") from None


def _special(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _walk(d: Path, found: Found, seen: set[tuple[int, int]]) -> None:
    try:
        with os.scandir(d) as it:
            names = sorted(e.name for e in it)
    except OSError as exc:
        raise InputError(f"{d}: cannot read the folder: {exc.strerror}") from None
    for name in names:
        p = d / name
        st = _stat(p)
        if stat.S_ISDIR(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if key in seen:
                found.skipped.append(f"{p} (a link to a folder read already)")
                continue
            seen.add(key)
            _walk(p, found, seen)
        elif not stat.S_ISREG(st.st_mode):
            raise InputError(f"{p}: {_special(st.st_mode)} in the folder, not a file; it cannot be verified")
        elif (why := _unfinished_gzip(p)) is not None:
            found.skipped.append(f"{p} ({why})")
        else:
            found.files.append(p)


def _unfinished_gzip(p: Path) -> str | None:
    """The file exporter's `<backup>.gz.tmp`, written while `<backup>` (which is read) is compressed."""
    if not p.name.endswith(".gz.tmp"):
        return None
    plain = p.with_name(p.name[: -len(".gz.tmp")])
    if not plain.is_file():
        return None  # nothing else holds its records: read it
    try:
        with open(p, "rb") as fh:
            magic = fh.read(2)
    except OSError as exc:
        raise InputError(f"{p}: cannot read: {exc.strerror}") from None
    if magic not in (b"", b"\x1f\x8b"):
        return None
    return f"an unfinished compression by the file exporter; {plain.name} holds its records"


# -- reading ---------------------------------------------------------------------------------------


def _open(path: Path) -> io.BufferedIOBase:
    fh = open(path, "rb")  # noqa: SIM115 - returned to the caller
    magic = fh.read(2)
    fh.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=fh)
    return fh


def _lines(fh: io.BufferedIOBase, limit: int) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, the line or None when longer than `limit` bytes, its size), never holding more
    than `limit` + 1 bytes of one line (gzip is decompressed only as far as the line needs)."""
    readline = fh.readline
    n = 0
    while True:
        line = readline(limit + 1)
        if not line:
            return
        n += 1
        if len(line) <= limit or line.endswith(b"\n"):
            yield n, line, len(line)
            continue
        size = len(line)
        del line
        while True:  # skip to the next newline, a buffer at a time
            part = readline(1 << 20)
            size += len(part)
            if not part or part.endswith(b"\n"):
                break
        yield n, None, size


#: how many lines, and at most how many bytes of them, the native core reads at once (across cores)
SCAN_LINES = 256
SCAN_BYTES = 8 << 20


def _scanned(lines: Iterator[tuple[int, bytes | None, int]], core: Any, key: bytes,
             ) -> Iterator[tuple[int, bytes | None, int, Any, bool, int]]:
    """`_lines` with, for each line, what the native core read of it (None: declined, or no core), whether it
    is the file's last line, and the bytes of blank lines skipped before it (with the core, blank lines are
    not handed over). With the core, lines are read ahead a batch at a time (SCAN_LINES, at most
    SCAN_BYTES) and scanned together, in parallel where the core can."""
    if core is None:
        prev = next(lines, None)
        while prev is not None:
            try:
                cur = next(lines, None)
            except BaseException:  # a read error after this line: the line is read first, then the error
                yield (*prev, None, False, 0)
                raise
            yield (*prev, None, cur is None, 0)
            prev = cur
        return
    many = getattr(core, "scan_lines", None)
    one = core.scan_line
    threads = _native.threads()
    batches: queue.Queue[Any] = queue.Queue(maxsize=2)  # at most two batches read ahead: bounded memory
    stop = threading.Event()

    def put(x: Any) -> bool:
        while not stop.is_set():
            try:
                batches.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def ahead() -> tuple[int, bytes | None, int, int] | None:
        # the next line that is not blank, and the bytes of the blank ones before it (the caller skips those
        # without a word: handing each over would cost more than reading it, and a file of millions of them
        # would take longer than without the core)
        skipped = 0
        for n, b, sz in lines:
            if b is None or b.strip():
                return n, b, sz, skipped
            skipped += sz
        return None

    def produce() -> None:
        # Reading and scanning the next batch (the core scans without the GIL) while the caller takes this one.
        failed: BaseException | None = None
        try:
            item = ahead()
            while item is not None and not stop.is_set():
                batch: list[tuple[int, bytes | None, int, int]] = []
                size = 0
                while item is not None and len(batch) < SCAN_LINES and size < SCAN_BYTES:
                    batch.append(item)
                    size += item[2]
                    try:
                        item = ahead()
                    except BaseException as exc:  # noqa: BLE001 - the lines read before it are taken first
                        failed, item = exc, None
                texts = [b if b is not None else b"" for _, b, _, _ in batch]
                got = many(texts, key, threads) if many is not None else [one(t, key) for t in texts]
                # `item` is the next batch's first line: the batch's last line is the file's last when there is none
                if not put((batch, got, item is None and failed is None)):
                    return
            put(failed)
        except BaseException as exc:  # noqa: BLE001 - raised again where the caller reads the failing line
            put(exc)

    reader = lifecycle.background_thread(produce, name="otel-audit-verify-read")
    reader.start()
    try:
        while True:
            x = batches.get()
            if x is None:
                return
            if isinstance(x, BaseException):
                raise x
            batch, got, at_end = x
            k = len(batch)
            for i, (n, b, sz, skipped) in enumerate(batch):
                yield n, b, sz, got[i], at_end and i == k - 1, skipped
    finally:
        stop.set()
        while reader.is_alive():
            with contextlib.suppress(queue.Empty):
                batches.get(timeout=0.05)


#: lines of files that are plainly not archives (see the module docstring), by what they are
_SPOOL_LINE = re.compile(rb"^[0-9a-f]{8}[\[{]")
_PEM_ARMOR = re.compile(rb"^-----(BEGIN|END) [A-Z0-9 ]+-----\s*$")
_PEM_BODY = re.compile(rb"^[A-Za-z0-9+/=]{1,80}\s*$")
_VKEY = re.compile(rb"^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+={0,2}\s*$")
_KEY_SPEC = re.compile(rb"^(hex|base64):[A-Za-z0-9+/=]+\s*$")
_STATE_KEYS = frozenset({"stream_id", "size", "root", "chain", "closed"})
_STATE_MORE = frozenset({"updated_ns", "checksum", "key", "key_id"})
SPOOL_DATA = "delivery spool data (checksummed lines)"
PEM = "a PEM key or certificate"
NUL = "only NUL bytes"
MAX_NESTING = 8  # arrays of arrays of ... documents, read item by item


def _other_doc(doc: Any) -> str | None:
    """What a JSON document no reader takes is, when it is plainly not an archive."""
    if not isinstance(doc, dict):
        return None
    if doc.get("format") == KEYRING_FORMAT:
        return "a public keyring"
    if doc.keys() == {"crc", "doc"} and isinstance(doc["doc"], dict):
        inner = doc["doc"]
        if "made" in inner:
            return "a delivery spool manifest"
        if "segment" in inner and "offset" in inner:
            return "a delivery spool cursor"
        return "a delivery spool file"
    if _STATE_KEYS <= doc.keys() <= _STATE_KEYS | _STATE_MORE:
        return "a signing processor's chain state"
    if list(doc) == ["otel_audit_export"] or {"id", "otlp", "proof"} <= doc.keys():
        return "an audit service export bundle (verify it by itself: otel-audit verify --keys K FILE)"
    return None


def _what(doc: Any) -> str:
    if isinstance(doc, dict):
        keys = [k if len(k) <= 30 else k[:27] + "..." for k in list(doc)[:4]]
        more = ", ..." if len(doc) > 4 else ""
        return f"a JSON object with keys {', '.join(keys)}{more}" if keys else "an empty JSON object"
    return {str: "a JSON string", bool: "a JSON boolean", int: "a JSON number", float: "a JSON number"}.get(
        type(doc), "JSON null")


class _Tally:
    """What one file held: lines taken by a reader, and lines none takes (kept to report at its end)."""

    MAX_NOTES = 100

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines = 0
        self.taken = 0
        self.unknown = 0
        self.other = 0
        self.nul = 0
        self.reasons: set[str] = set()
        self.notes: list[tuple[str, str]] = []  # (where, why), the first MAX_NOTES
        self.pem = False

    def note(self, where: str, why: str, other: str | None = None) -> None:
        if other is not None:
            self.other += 1
            self.reasons.add(other)
        else:
            self.unknown += 1
        if len(self.notes) < self.MAX_NOTES:
            self.notes.append((where, why))


class _Run:
    """One verification's reading: the verifier, the readers, the kind `--source` forces (or None)."""

    def __init__(self, verifier: Verifier, source: str = "auto") -> None:
        self.v = verifier
        self.forced = None if source == "auto" else source
        # with --source otlp nothing else is asked; otherwise every reader, to say what a line is
        self.readers: dict[str, Reader] = (
            {} if source == "otlp" else {k: _readers.create(k) for k in _readers.kinds()})

    # -- one document

    def take(self, doc: Any, where: str, tally: _Tally, depth: int = 0) -> None:
        """Hand a decoded JSON document to the one reader whose shape it has, or note why none takes it;
        the items of an array one by one."""
        if type(doc) is list:
            if not doc:
                tally.note(where, "an empty JSON array", "an empty JSON array")
            elif depth >= MAX_NESTING:
                tally.note(where, f"JSON arrays nested more than {MAX_NESTING} deep; not read")
                return
            for i, item in enumerate(doc):
                self.take(item, f"{where}[{i}]", tally, depth + 1)
            return
        claimers = [k for k, r in self.readers.items() if r.claims(doc)]
        if type(doc) is dict and "resourceLogs" in doc:
            claimers.insert(0, "otlp")
        if len(claimers) == 1 and self.forced in (None, claimers[0]):
            kind = claimers[0]
            tally.taken += 1
            read_as = self.v.report.read_as
            read_as[kind] = read_as.get(kind, 0) + 1
            if kind == "otlp":
                add_request(self.v, doc, where)
                return
            reader = self.readers[kind]
            try:
                feed(self.v, reader.records_in(doc, where))
            except (AuditError, ValueError, TypeError, KeyError, AttributeError) as exc:
                self.v._malformed(f"{where}: not a readable {reader.label} export: {exc}")
            return
        if len(claimers) > 1:
            tally.note(where, f"has the shape of {' and '.join(claimers)} at once; not read")
        elif claimers:
            tally.note(where, f"{self._label(claimers[0])} data, not {self._label(self.forced)} "
                              f"(--source {self.forced})")
        elif (other := _other_doc(doc)) is not None:
            tally.note(where, f"not an archive line: {other}", other)
        elif not self.readers or self.forced == "otlp":
            tally.note(where, "not an OTLP logs request (no resourceLogs)")
        elif self.forced:
            tally.note(where, f"not {self._label(self.forced)} data: {_what(doc)}")
        else:
            tally.note(where, f"{_what(doc)}: neither an OTLP logs request (resourceLogs) nor "
                              f"{', '.join(r.label for r in self.readers.values())} data")

    def _label(self, kind: str | None) -> str:
        if kind == "otlp":
            return "OTLP/JSON"
        r = self.readers.get(kind or "")
        return r.label if r is not None else str(kind)

    # -- one file

    def read_file(self, path: Path, progress: Callable[[int], None] | None = None) -> None:
        """Every line (or document) of one file to its reader; what none takes is reported."""
        rep = self.v.report
        rep.files += 1
        name = str(path)
        tally = _Tally(name)
        limit = _readers.max_line()
        try:
            fh = _open(path)
        except OSError as exc:
            raise InputError(f"{path}: cannot open: {exc.strerror}") from exc
        first = True
        csv = False  # a CSV download, read whole by its reader: only JSON lines in it are read here
        n = 0
        # The native core reads the lines it is sure of (a request with only `resourceLogs`, which no SIEM
        # reader claims); it declines every other line, which is read below as without it.
        core = _native.core() if self.forced in (None, "otlp") else None
        read_as = rep.read_as
        add_scanned = self.v.add_scanned
        with fh:
            try:
                for n, line, size, got, last, blank in _scanned(_lines(fh, limit), core, self.v._scratch.key):
                    if progress is not None:
                        progress(size + blank)
                    where = f"{name}:{n}"
                    if line is None:
                        tally.lines += 1
                        tally.note(where, f"a line longer than {limit:,} bytes ({size:,} bytes), not read "
                                          f"(the limit is ${_readers.ENV_MAX_LINE})")
                        first = False
                        continue
                    if not line.strip():
                        continue
                    tally.lines += 1
                    if not line.strip(b" \t\r\n\x00"):  # NUL bytes: a preallocated spool segment's end
                        tally.nul += 1
                        tally.note(where, "not an archive line: NUL bytes", NUL)
                        continue
                    if tally.pem and _PEM_BODY.match(line):
                        tally.note(where, f"not an archive line: {PEM}", PEM)
                        continue
                    if got is not None and not csv:  # a strict OTLP/JSON request, read by the native core
                        first = False
                        tally.taken += 1
                        read_as["otlp"] = read_as.get("otlp", 0) + 1
                        add_scanned(got[0], got[1], line, where)
                        continue
                    try:
                        doc = _loads(line)
                    except orjson.JSONDecodeError as exc:
                        if csv:
                            continue  # a row, which the CSV's reader accounts for
                        if first:
                            first = False
                            whole = self._whole_file(path, line, tally)
                            if whole == "document":
                                break
                            if whole == "csv":
                                csv = True
                                continue
                        self._not_json(last, line, where, exc, tally)
                        continue
                    first = False
                    try:
                        check_members(line, doc)  # a member name twice: orjson kept only the last
                    except DecodeError as exc:
                        tally.taken += 1
                        self.v._malformed(f"{where}: {STRICT}: {exc}")
                        continue
                    try:
                        self.take(doc, where, tally)
                    except RecursionError:
                        tally.taken += 1
                        self.v._malformed(f"{where}: {STRICT}: too-deep: JSON nested too deep to read")
                    except (InputError, KeyboardInterrupt):
                        raise
                    except Exception as exc:  # noqa: BLE001 - one line must not hide the report of all others
                        tally.taken += 1
                        self.v._malformed(f"{where}: this line could not be read ({type(exc).__name__}); the rest "
                                          "of the input was verified without it (please report it)")
            except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                self.v._malformed(f"{name}: read failed after {n} line(s): {exc}")
                tally.taken += 1
            except OSError as exc:
                raise InputError(f"{name}: cannot read after {n} line(s): {exc.strerror or exc}") from exc
        rep.lines += tally.lines
        self._account(tally)

    def _not_json(self, last: bool, line: bytes, where: str, exc: orjson.JSONDecodeError, tally: _Tally) -> None:
        if not line.endswith(b"\n") and line.lstrip()[:1] in (b"{", b"[") and last:
            # the file's last line, cut short: a writer killed mid-write
            self.v.report.torn.append(f"{where}: last line cut short ({len(line)} bytes)")
            tally.taken += 1
            return
        if _SPOOL_LINE.match(line):
            tally.note(where, f"not an archive line: {SPOOL_DATA}", SPOOL_DATA)
        elif _PEM_ARMOR.match(line):
            tally.pem = line.startswith(b"-----BEGIN")
            tally.note(where, f"not an archive line: {PEM}", PEM)
        elif _VKEY.match(line):
            tally.note(where, "not an archive line: a verifier key (vkey)", "a verifier key (vkey)")
        elif _KEY_SPEC.match(line):
            tally.note(where, "not an archive line: a key", "a key (hex:/base64:)")
        else:
            tally.note(where, f"not JSON ({exc.msg})")

    def _whole_file(self, path: Path, first_line: bytes, tally: _Tally) -> str | None:
        """A file whose first line is no JSON value by itself: one JSON document over many lines
        ("document"), or a file of a reader's non-JSON format, a Datadog CSV download ("csv"), whose
        JSON lines, if any, are still read one by one. None: neither, read it line by line."""
        name = str(path)
        if first_line.lstrip()[:1] in (b"{", b"["):
            try:
                data, _ = _readers.read_document(path)
            except InputError as exc:
                tally.note(name, f"its first line is not a JSON value by itself, and as one JSON document: {exc}")
                return None
            try:
                doc = _loads(data)
            except orjson.JSONDecodeError:
                return None  # line by line, then
            del data
            self.take(doc, name, tally)
            return "document"
        kinds = [k for k, r in self.readers.items() if r.claims_text(first_line)
                 and self.forced in (None, k)]
        if len(kinds) != 1:
            return None
        reader = self.readers[kinds[0]]
        tally.taken += 1
        read_as = self.v.report.read_as
        read_as[reader.kind] = read_as.get(reader.kind, 0) + 1
        try:
            data, _ = _readers.read_document(path)
            feed(self.v, reader.records_in(data, name))
        except (AuditError, ValueError, TypeError, KeyError, AttributeError) as exc:
            self.v._malformed(f"{name}: not a readable {reader.label} export: {exc}")
        return "csv"

    def _account(self, tally: _Tally) -> None:
        """At a file's end: skipped (nothing in it is an archive line), not an archive, or each line told."""
        rep, v = self.v.report, self.v
        if not tally.taken and not tally.unknown:
            rep.files -= 1
            rep.lines -= tally.lines
            reasons = tally.reasons - {NUL} or tally.reasons
            why = "; ".join(sorted(reasons)) or "empty"
            rep.skipped.append(f"{tally.name} ({why})")
            return
        if not tally.taken:
            where, why = tally.notes[0]
            what = (f"no line of it is {self._label(self.forced)} data (--source {self.forced})" if self.forced
                    else "not an archive nor a SIEM export; no line of it is one")
            v._malformed(f"{tally.name}: {what} ({tally.lines} line(s); {where}: {why})")
            return
        for where, why in tally.notes:
            v._malformed(f"{where}: {why}")
        hidden = tally.unknown + tally.other - len(tally.notes)
        if hidden > 0:
            v._malformed(f"{tally.name}: ... and {hidden} more line(s) that no reader takes")

    def add_findings(self) -> None:
        for reader in self.readers.values():
            add_findings(self.v.report, reader.label, reader)
            if reader.skipped:
                self.v.report.skipped.append(f"{reader.label}: {reader.skipped} item(s) that are not audit "
                                             "records (no audit.otlp, no stream id)")


def add_otlp_file(self: Verifier, path: Path, progress: Callable[[int], None] | None = None) -> None:
    """Every line of an OTLP/JSON lines archive into the verifier; a line that is not one is reported."""
    _Run(self, "otlp").read_file(path, progress)

def add_request(self: Verifier, doc: Any, where: str) -> None:
    """One OTLP/JSON ExportLogsServiceRequest (one line of the collector's file exporter), decoded
    strictly (`otel_audit.decoding`); records are numbered across the line (`where#n`)."""
    if not isinstance(doc, dict) or not ("resourceLogs" in doc or "resource_logs" in doc):
        self._malformed(f"{where}: not an OTLP logs request (no resourceLogs)")
        return
    add = self.add_record
    n = 0
    try:
        for _rl, _sl, resource, _scope, records in walk_request(doc):
            for rec in records:
                add(rec, where, n, resource=resource)
                n += 1
    except DecodeError as exc:
        self._malformed(f"{where}: {STRICT}: {exc}")



class Progress:
    """A one-line progress bar on a terminal (stderr); silent elsewhere."""

    def __init__(self, total: int, stream: Any = None) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = hasattr(self.stream, "isatty") and self.stream.isatty() and total > 1 << 20
        self._next = 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.enabled and self.done >= self._next:
            self._next = self.done + self.total // 200
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            self.stream.write(f"\rverifying [{bar:<30}] {frac:6.1%} of {self.total / 1e6:.1f} MB")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 70 + "\r")
            self.stream.flush()

SOURCES = ("auto", "otlp", *_readers.kinds())
MAX_LISTED = 100  # a reader's problems and mismatches copied into a report


def feed(verifier: Verifier, records: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    """Hand a SIEM reader's (where, record) pairs to the verifier: OTLP/JSON records, or records a
    reader found as embedded canonical content (`audit.integrity.record`)."""
    for item in records:
        where, record = item
        if CANONICAL in record:
            stream, seq, prev, digest, content = record[CANONICAL]
            verifier.add_canonical(stream, seq, prev, digest, content, where)
        else:
            verifier.add_record(record, where, resource=getattr(item, "resource", None))


def add_findings(report: Report, label: str, reader: Any) -> None:
    """A reader's unverifiable records and searchable-field mismatches become the report's problems."""
    report.problems.extend(f"{label}: {p}" for p in list(reader.problems)[:MAX_LISTED])
    report.problems.extend(f"{label}: {m}" for m in list(reader.mismatches)[:MAX_LISTED])
    hidden = max(0, len(reader.problems) - MAX_LISTED) + max(0, len(reader.mismatches) - MAX_LISTED)
    if hidden:
        report.problems.append(f"{label}: ... and {hidden} more (see the reader's problems and mismatches)")


def verify_reader(
    reader: Reader, sources: Iterable[Any], keyring: Keyring, *, what: Callable[[], str],
    is_file: Callable[[Any], bool] | None = None, allow_open: bool = False, ignore_unsigned: bool = False,
    partial: bool = False, label: str | None = None, at: int | None = None,
) -> Report:
    """Verify what a SIEM reader finds in `sources` (anything its `records_in` takes); `what()` says
    what was read when nothing was. The readers' own ``verify_export`` helpers end here."""
    verifier = Verifier(keyring, allow_open=allow_open, ignore_unsigned=ignore_unsigned, partial=partial, at=at)
    for src in sources:
        if (is_file or (lambda x: isinstance(x, (str, os.PathLike))))(src):
            verifier.report.files += 1
        feed(verifier, reader.records_in(src))
    if reader.records == 0:
        raise InputError(f"no audit records found in {what()}, "
                         f"{len(reader.problems)} without a readable audit.otlp)"
                         + (f"; first: {reader.problems[0]}" if reader.problems else ""))
    report = verifier.finish()
    add_findings(report, label or reader.label, reader)
    return report


verify_export = verify_reader  # the name it had


def kinds_of(path: str | os.PathLike[str], source: str = "auto") -> dict[str, int]:
    """How many lines or documents of a file each reader takes ("otlp", "splunk", ...), as `verify_paths`
    reads it; {} for a file nothing in which is an archive line (tests and tools)."""
    v = Verifier(Keyring(), allow_open=True)
    _Run(v, source).read_file(Path(path))
    return dict(v.report.read_as)


def verify_paths(
    paths: Iterable[str | os.PathLike[str]], keyring: Keyring, *, allow_open: bool = False,
    ignore_unsigned: bool = False, progress: bool = True, source: str = "auto", partial: bool = False,
    state: str | os.PathLike[str] | None = None,
    at: int | None = None,
) -> Report:
    """Verify archives (OTLP JSON lines) and SIEM exports, each line by the reader whose shape it has
    (`source` forces one kind); see the module docstring for what is read, skipped and refused.

    SIEM exports are read through `audit.otlp`, the signed record each exporter ships next to the
    searchable fields; a searchable field that disagrees with it is a problem too. With `at` (unix ns),
    an open stream whose last checkpoint is older than its heartbeat allows is a silent stop.

    `state` is a state file (`otel_audit.verify.state`, docs/state.md): the input must be consistent
    with what earlier audits verified; the file is updated only when this run verifies.
    """
    sources = ("auto", "otlp", *_readers.kinds())
    if source not in sources:
        raise InputError(f"unknown source {source!r}; one of {', '.join(sources)}")
    found = scan(paths)
    with audit_state.opened(state) as st:
        report = _verify_files(found, keyring, allow_open=allow_open, ignore_unsigned=ignore_unsigned,
                               progress=progress, source=source, partial=partial, at=at,
                               roots_at=st.roots_wanted() if st is not None else None)
        if st is not None:
            st.check(report, partial=partial)
            st.commit(report)
    return report


def _verify_files(
    found: Any, keyring: Keyring, *, allow_open: bool, ignore_unsigned: bool, progress: bool, source: str,
    partial: bool, roots_at: Mapping[str, Iterable[int]] | None, at: int | None = None,
) -> Report:
    v = Verifier(keyring, allow_open=allow_open, ignore_unsigned=ignore_unsigned, partial=partial, roots_at=roots_at,
                 at=at)
    v.report.skipped.extend(found.skipped)
    try:
        total = sum(f.stat().st_size for f in found.files)
    except OSError as exc:
        raise InputError(f"{exc.filename}: cannot read: {exc.strerror}") from exc
    run = _Run(v, source)
    bar = Progress(total) if progress else None
    # Millions of small containers stay alive until the end: the cyclic GC would rescan them over
    # and over (measured: 4x slower parsing). Nothing here makes reference cycles.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for f in found.files:
            run.read_file(f, bar)
        if v.report.records:
            v.finish()
    finally:
        if gc_was_enabled:
            gc.enable()
        if bar is not None:
            bar.close()
    run.add_findings()
    rep = v.report
    if rep.records == 0:
        first = (rep.malformed or [p for p in rep.problems])[:1]
        if not rep.files:
            raise InputError("nothing to verify: no file of the input holds an archive line; skipped: "
                             + "; ".join(rep.skipped[:10]) + (" ..." if len(rep.skipped) > 10 else ""))
        raise InputError(f"no audit records found in {', '.join(map(str, found.files[:10]))}"
                         + (" ..." if len(found.files) > 10 else "")
                         + (f"; first problem: {first[0]}" if first else ""))
    return rep


def iter_records(paths: Iterable[Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every OTLP/JSON logRecord of the files, with file:line (used by tests and tools); a line longer than
    `otel_audit.readers.max_line()` raises InputError."""
    limit = _readers.max_line()
    for p in paths:
        with _open(p) as fh:
            for n, line, size in _lines(fh, limit):
                if line is None:
                    raise InputError(f"{p}:{n}: a line longer than {limit:,} bytes ({size:,} bytes)")
                if not line.strip():
                    continue
                doc = _loads(line)
                for rl in doc.get("resourceLogs") or ():
                    for sl in rl.get("scopeLogs") or ():
                        for rec in sl.get("logRecords") or ():
                            yield f"{p}:{n}", rec
