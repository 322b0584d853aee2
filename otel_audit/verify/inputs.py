"""Inputs of the verifier: files and folders, OTLP/JSON archives and SIEM exports, each record handed
to the prover (`prove.Verifier`)."""

from __future__ import annotations

import gc
import gzip
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from otel_audit.decoding import DecodeError, check_members, walk_request
from otel_audit.errors import InputError
from otel_audit.keys import Keyring
from otel_audit.verify.prove import STRICT, Verifier
from otel_audit.verify.report import Report

_loads = orjson.loads
ARCHIVE_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")
MAX_LINE = 256 * 1024 * 1024


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; a folder means every archive file under it, sorted."""
    try:
        return _expand(paths)
    except OSError as exc:
        raise InputError(f"{exc.filename or 'input'}: cannot read: {exc.strerror}") from exc


def _expand(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(ARCHIVE_SUFFIXES))
            if not found:
                raise InputError(f"{p}: folder holds no archive files ({', '.join(ARCHIVE_SUFFIXES)})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    return out


def _open(path: Path) -> BinaryIO:
    fh = open(path, "rb")  # noqa: SIM115 - returned to the caller
    magic = fh.read(2)
    fh.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=fh)  # type: ignore[return-value]
    return fh



def add_otlp_file(self: Verifier, path: Path, progress: Callable[[int], None] | None = None) -> None:
    """Every line of an OTLP/JSON lines archive into the verifier."""
    self.report.files += 1
    try:
        fh = _open(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror}") from exc
    name = str(path)
    with fh:
        try:
            for n, line in enumerate(fh, 1):
                if progress is not None:
                    progress(len(line))
                if not line.strip():
                    continue
                self.report.lines += 1
                try:
                    doc = _loads(line)
                except orjson.JSONDecodeError as exc:
                    if not line.endswith(b"\n") and not fh.read(1):
                        # the file's last line, cut short: a writer killed mid-write
                        self.report.torn.append(f"{name}:{n}: last line cut short ({len(line)} bytes)")
                        continue
                    self._malformed(f"{name}:{n}: not JSON ({exc.msg})")
                    continue
                try:
                    check_members(line, doc)
                except DecodeError as exc:
                    self._malformed(f"{name}:{n}: {STRICT}: {exc}")
                    continue
                add_request(self, doc, f"{name}:{n}")
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            self._malformed(f"{name}: read failed after some lines: {exc}")

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

SOURCES = ("auto", "otlp", "splunk", "elastic", "datadog")
MAX_LISTED = 100  # a reader's problems and mismatches copied into a report
CANONICAL = "__canonical__"  # a reader's record known by its embedded canonical content


def feed(verifier: Verifier, records: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    """Hand a SIEM reader's (where, record) pairs to the verifier: OTLP/JSON records, or records a
    reader found as embedded canonical content (`audit.integrity.record`)."""
    for where, record in records:
        if CANONICAL in record:
            verifier.add_canonical(*record[CANONICAL], where)
        else:
            verifier.add_record(record, where)


def add_findings(report: Report, label: str, reader: Any) -> None:
    """A reader's unverifiable records and searchable-field mismatches become the report's problems."""
    report.problems.extend(f"{label}: {p}" for p in list(reader.problems)[:MAX_LISTED])
    report.problems.extend(f"{label}: {m}" for m in list(reader.mismatches)[:MAX_LISTED])
    hidden = max(0, len(reader.problems) - MAX_LISTED) + max(0, len(reader.mismatches) - MAX_LISTED)
    if hidden:
        report.problems.append(f"{label}: ... and {hidden} more (see the reader's problems and mismatches)")


def verify_export(
    reader: Any, sources: Iterable[Any], keyring: Keyring, *, label: str, what: Callable[[], str],
    is_file: Callable[[Any], bool] | None = None, allow_open: bool = False, ignore_unsigned: bool = False,
    partial: bool = False,
) -> Report:
    """Verify what a SIEM reader finds in `sources`; `what()` says what was read when nothing was."""
    verifier = Verifier(keyring, allow_open=allow_open, ignore_unsigned=ignore_unsigned, partial=partial)
    for src in sources:
        if (is_file or (lambda x: isinstance(x, (str, os.PathLike))))(src):
            verifier.report.files += 1
        feed(verifier, reader.records_in(src))
    if reader.records == 0:
        raise InputError(f"no audit records found in {what()}, "
                         f"{len(reader.problems)} without a readable audit.otlp)"
                         + (f"; first: {reader.problems[0]}" if reader.problems else ""))
    report = verifier.finish()
    add_findings(report, label, reader)
    return report


def _reader(kind: str) -> Any:
    if kind == "splunk":
        from otel_audit.sources.splunk import SplunkReader

        return SplunkReader()
    if kind == "elastic":
        from otel_audit.sources.elastic import ElasticReader

        return ElasticReader()
    from otel_audit.sources.datadog import DatadogReader

    return DatadogReader()


def sniff(path: Path) -> str:
    """Which kind of input a file is: an OTLP JSON archive, or a Splunk, Elasticsearch or Datadog export."""
    try:
        with _open(path) as fh:
            head = fh.read(65536)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    text = head.lstrip()
    if path.suffix == ".csv":
        return "datadog"
    if b'"resourceLogs"' in head:
        return "otlp"
    if b'"_raw"' in head or (text.startswith(b'{"preview"') or b'"result":' in head[:2000]):
        return "splunk"
    if b'"_source"' in head or b'"hits"' in head[:2000]:
        return "elastic"
    if b'"data"' in head[:2000] or (b'"type":"log"' in head.replace(b" ", b"")):
        return "datadog"
    return "otlp"  # let the OTLP reader say precisely what is wrong


def verify_paths(
    paths: Iterable[str | os.PathLike[str]], keyring: Keyring, *, allow_open: bool = False,
    ignore_unsigned: bool = False, progress: bool = True, source: str = "auto", partial: bool = False,
) -> Report:
    """Verify archives (OTLP JSON lines) and SIEM exports; `source` names the kind or sniffs it per file.

    SIEM exports are read through `audit.otlp`, the signed record each exporter ships next to the
    searchable fields; a searchable field that disagrees with it is a problem too.
    """
    if source not in SOURCES:
        raise InputError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")
    files = expand_paths(paths)
    v = Verifier(keyring, allow_open=allow_open, ignore_unsigned=ignore_unsigned, partial=partial)
    try:
        total = sum(f.stat().st_size for f in files)
    except OSError as exc:
        raise InputError(f"{exc.filename}: cannot read: {exc.strerror}") from exc
    kinds = {f: (sniff(f) if source == "auto" else source) for f in files}
    readers: dict[str, Any] = {}
    bar = Progress(total) if progress else None
    # Millions of small containers stay alive until the end: the cyclic GC would rescan them over
    # and over (measured: 4x slower parsing). Nothing here makes reference cycles.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for f in files:
            kind = kinds[f]
            if kind == "otlp":
                v.add_file(f, bar)
                continue
            reader = readers.get(kind) or readers.setdefault(kind, _reader(kind))
            v.report.files += 1
            try:
                with _open(f) as fh:
                    data = fh.read()
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise InputError(f"{f}: cannot read: {exc}") from exc
            if bar is not None:
                bar(f.stat().st_size)
            try:
                feed(v, reader.records_in(data, str(f)))
            except (ValueError, TypeError) as exc:
                raise InputError(f"{f}: not a readable {kind} export: {exc}") from exc
        if v.report.records:
            v.finish()
    finally:
        if gc_was_enabled:
            gc.enable()
        if bar is not None:
            bar.close()
    for kind, reader in readers.items():
        add_findings(v.report, kind, reader)
    if v.report.records == 0 and not v.report.malformed:
        what = ", ".join(sorted(set(kinds.values())))
        raise InputError(f"no audit records found in {', '.join(map(str, files))} (read as {what})")
    if v.report.records == 0:
        raise InputError(
            "no readable OTLP log records in the input; first problem: " + v.report.malformed[0]
        )
    return v.report


def iter_records(paths: Iterable[Path]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every OTLP/JSON logRecord of the files, with file:line (used by tests and tools)."""
    for p in paths:
        with _open(p) as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                doc = _loads(line)
                for rl in doc.get("resourceLogs") or ():
                    for sl in rl.get("scopeLogs") or ():
                        for rec in sl.get("logRecords") or ():
                            yield f"{p}:{n}", rec
