"""The protocol between the verifier and the readers of SIEM exports, and their registry.

A reader turns what a SIEM gives back (Splunk search results, Elasticsearch hits, Datadog log
events) into the signed OTLP/JSON logRecords its exporter shipped next to the searchable fields.
The verifier (`otel_audit.verify.inputs`) reads every input file line by line (or, for an export
that is one JSON document over many lines, document by document) and asks each registered reader
whether a decoded document has its shape (`claims`); the one reader that claims it reads it
(`records_in`). A document no reader claims, or more than one claims, is reported, never skipped.

Readers depend on this module, `otel_audit.decoding`, `otel_audit.canonical` and
`otel_audit.errors` only, never on the verifier; the verifier finds them here (`create`, `kinds`).
A reader of another SIEM registers itself with `register(kind, factory)`.

Limits on what is held in memory at once (decompressed bytes), for every input:

* `MAX_LINE` (64 MiB; `$OTEL_AUDIT_MAX_LINE`): one line. A longer line is reported where it is
  and skipped to the next newline without being held.
* `MAX_DOCUMENT` (256 MiB; `$OTEL_AUDIT_MAX_DOCUMENT`): a whole file read as one JSON document
  (a pretty-printed `_search` dump, a Splunk results document, a Datadog CSV). Save bigger exports
  as one JSON value per line (NDJSON), which every reader takes.

No OpenTelemetry SDK imports.
"""

from __future__ import annotations

import gzip
import importlib
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from otel_audit.errors import InputError

if TYPE_CHECKING:
    from otel_audit.keys import Keyring
    from otel_audit.verify.report import Report

__all__ = [
    "CANONICAL",
    "Located",
    "ENV_MAX_DOCUMENT",
    "ENV_MAX_LINE",
    "MAX_DOCUMENT",
    "MAX_LINE",
    "Reader",
    "create",
    "kinds",
    "max_document",
    "max_line",
    "read_document",
    "register",
    "verify_export",
]

#: a reader's record known by its embedded canonical content (`audit.integrity.record`): the record
#: handed on is ``{CANONICAL: (stream, seq, prev, digest, content)}`` instead of an OTLP/JSON logRecord
CANONICAL = "__canonical__"

MAX_LINE = 64 * 1024 * 1024
MAX_DOCUMENT = 256 * 1024 * 1024
ENV_MAX_LINE = "OTEL_AUDIT_MAX_LINE"
ENV_MAX_DOCUMENT = "OTEL_AUDIT_MAX_DOCUMENT"


def _limit(env: str, default: int) -> int:
    text = os.environ.get(env, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"${env} must be a number of bytes, got {text[:40]!r}") from None
    if value < 1024:
        raise InputError(f"${env} must be at least 1024 bytes, got {value}")
    return value


def max_line() -> int:
    """The longest line read, in bytes: `MAX_LINE`, or ``$OTEL_AUDIT_MAX_LINE``."""
    return _limit(ENV_MAX_LINE, MAX_LINE)


def max_document() -> int:
    """The largest file read as one document, in bytes: `MAX_DOCUMENT`, or ``$OTEL_AUDIT_MAX_DOCUMENT``."""
    return _limit(ENV_MAX_DOCUMENT, MAX_DOCUMENT)


class Located(tuple[str, dict[str, Any]]):  # noqa: SLOT001
    """A reader's ``(where, record)`` pair that also carries the resource attributes the export names
    for the record (``.resource``: its producer identity, e.g. ``service.name`` and ``host.name``), for
    the verifier to compare with the stream's signed checkpoints. Unpacks as a plain pair."""

    resource: dict[str, Any] | None

    def __new__(cls, where: str, record: dict[str, Any], resource: dict[str, Any] | None = None) -> Located:
        self = super().__new__(cls, (where, record))
        self.resource = resource
        return self


@runtime_checkable
class Reader(Protocol):
    """What the verifier needs of a reader. One instance serves one verification run.

    ``kind`` names it (``--source KIND``), ``label`` prefixes its findings in a report.
    ``problems``: records of ours it could not hand on (``audit.otlp`` missing or cut short, input
    of its format that is broken); ``mismatches``: searchable fields that disagree with the signed
    record; ``records``: records handed on; ``skipped``: items of its format that are not audit
    records (another application's logs in the same index).
    """

    kind: str
    label: str
    problems: list[str]
    mismatches: list[str]
    records: int
    skipped: int

    def claims(self, doc: Any) -> bool:
        """Whether a decoded JSON document (a line, an item of a top-level array, or a whole file) has
        this reader's shape. It must not claim an OTLP/JSON request (an object whose key is resourceLogs)."""
        ...

    def claims_text(self, first_line: bytes) -> bool:
        """Whether a file that is not JSON is of this reader's format, by its first line (a CSV header)."""
        ...

    def records_in(self, source: Any, where: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(where, record)`` for each record of a claimed document, of a claimed non-JSON file's bytes,
        or of what the reader's own API takes (a path, bytes, an iterable of hits ...). A record is an
        OTLP/JSON logRecord, or ``{CANONICAL: (...)}``. A pair may be a `Located`, naming the
        record's resource as the export gives it."""
        ...


# -- the registry ----------------------------------------------------------------------------------

#: kind -> ("module:Class", label): the readers of this package, each imported only when a document needs it
#: (`_Deferred`): a plain OTLP archive never loads them, nor the SIEM field mappings they use
_BUILTIN: dict[str, tuple[str, str]] = {
    "splunk": ("otel_audit.sources.splunk:SplunkReader", "splunk"),
    "elastic": ("otel_audit.sources.elastic:ElasticReader", "elasticsearch"),
    "datadog": ("otel_audit.sources.datadog:DatadogReader", "datadog"),
}
_REGISTERED: dict[str, Callable[[], Reader] | str] = {kind: spec for kind, (spec, _) in _BUILTIN.items()}


def register(kind: str, factory: Callable[[], Reader] | str) -> None:
    """Make a reader known to the verifier: ``factory()`` gives a fresh reader (or "module:Class")."""
    if not kind or not kind.isidentifier() or kind in ("auto", "otlp"):
        raise ValueError(f"a reader kind must be a name other than auto and otlp, got {kind!r}")
    _REGISTERED[kind] = factory


def kinds() -> tuple[str, ...]:
    """The kinds of the registered readers, in registration order."""
    return tuple(_REGISTERED)


def create(kind: str) -> Reader:
    """A fresh reader of that kind. A reader of this package is a `Reader` that imports its module on
    first need (a document that is not a plain OTLP/JSON request, or any other use of it)."""
    try:
        factory = _REGISTERED[kind]
    except KeyError:
        raise InputError(f"unknown source {kind!r}; one of auto, otlp, {', '.join(_REGISTERED)}") from None
    if isinstance(factory, str):
        builtin = _BUILTIN.get(kind)
        if builtin is not None and builtin[0] == factory:
            return _Deferred(kind, builtin[1], factory)
        factory = _load_factory(factory)
    return factory()


def _load_factory(spec: str) -> Callable[[], Reader]:
    module, _, name = spec.partition(":")
    factory: Callable[[], Reader] = getattr(importlib.import_module(module), name)
    return factory


class _Deferred:
    """A reader of this package (`_BUILTIN`) that imports its module only when it is first needed.

    Every verification in auto mode asks every registered reader whether each document is of its shape;
    a line of an OTLP archive is a request ``{"resourceLogs": [...]}``, which no reader may claim (see
    `Reader.claims`; tests/test_cli_startup.py holds the built-in readers to it), so it is answered here
    without importing the reader, its SIEM field mappings and the event catalog. Anything else (any other
    document, a first line that is not JSON, records_in, any attribute of the reader's own) loads the
    reader, and from then on everything is the real reader's. Before it is loaded, it has no findings:
    `problems` and `mismatches` are empty, `records` and `skipped` are 0, as a fresh reader's."""

    def __init__(self, kind: str, label: str, spec: str) -> None:
        self.kind = kind
        self.label = label
        self._spec = spec
        self._reader: Reader | None = None

    def _load(self) -> Reader:
        if self._reader is None:
            self._reader = _load_factory(self._spec)()
        return self._reader

    def claims(self, doc: Any) -> bool:
        if self._reader is None and type(doc) is dict and len(doc) == 1 and "resourceLogs" in doc:
            return False  # an OTLP/JSON request: no reader's
        return self._load().claims(doc)

    def claims_text(self, first_line: bytes) -> bool:
        return self._load().claims_text(first_line)

    def records_in(self, source: Any, where: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        return self._load().records_in(source, where)

    @property
    def problems(self) -> list[str]:
        return [] if self._reader is None else self._reader.problems

    @problems.setter
    def problems(self, value: list[str]) -> None:
        self._load().problems = value

    @property
    def mismatches(self) -> list[str]:
        return [] if self._reader is None else self._reader.mismatches

    @mismatches.setter
    def mismatches(self, value: list[str]) -> None:
        self._load().mismatches = value

    @property
    def records(self) -> int:
        return 0 if self._reader is None else self._reader.records

    @records.setter
    def records(self, value: int) -> None:
        self._load().records = value

    @property
    def skipped(self) -> int:
        return 0 if self._reader is None else self._reader.skipped

    @skipped.setter
    def skipped(self, value: int) -> None:
        self._load().skipped = value

    def __getattr__(self, name: str) -> Any:  # the reader's own attributes (hits, events, source ...)
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._load(), name)

    def __repr__(self) -> str:
        return f"<{self.kind} reader{'' if self._reader is not None else ' (not loaded yet)'}: {self._spec}>"


# -- bounded reading -------------------------------------------------------------------------------


def read_document(source: str | os.PathLike[str] | bytes, where: str | None = None,
                  limit: int | None = None) -> tuple[bytes, str]:
    """(the bytes of a file or of given bytes, gzip-decompressed if compressed, its name), refusing
    with InputError more than `limit` (`max_document()`) bytes read or decompressed, without holding more."""
    limit = max_document() if limit is None else limit
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), where or "<bytes>"
        if data[:2] != b"\x1f\x8b":
            return data, name  # already in memory: nothing more is held
        try:
            out = _gunzip(data, limit)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"{name}: broken gzip data: {exc}") from None
    else:
        path = Path(source)
        name = where or str(path)
        try:
            with open(path, "rb") as fh:
                gz = fh.read(2) == b"\x1f\x8b"
                fh.seek(0)
                stream: Any = gzip.GzipFile(fileobj=fh) if gz else fh
                try:
                    out = stream.read(limit + 1)
                except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
                    raise InputError(f"{name}: broken gzip data: {exc}") from None
        except OSError as exc:
            raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if len(out) > limit:
        raise InputError(f"{name}: larger than {limit:,} bytes decompressed, too large to read as one document "
                         f"(${ENV_MAX_DOCUMENT}); save the export as one JSON value per line")
    return out, name


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip members (concatenated ones too), stopping after limit + 1 bytes."""
    out = bytearray()
    rest = data
    while rest and len(out) <= limit:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += d.decompress(rest, limit + 1 - len(out))
        while d.unconsumed_tail and len(out) <= limit:
            out += d.decompress(d.unconsumed_tail, limit + 1 - len(out))
        if len(out) > limit:
            break
        if not d.eof:
            raise EOFError("compressed data ended before the end-of-stream marker")
        rest = d.unused_data.lstrip(b"\x00")
    return bytes(out)


# -- the API the readers' own verify_export helpers use --------------------------------------------


def verify_export(reader: Reader, sources: Iterable[Any], keyring: Keyring, *, what: Callable[[], str],
                  is_file: Callable[[Any], bool] | None = None, allow_open: bool = False,
                  ignore_unsigned: bool = False, partial: bool = False) -> Report:
    """Verify what `reader` finds in `sources` (anything its `records_in` takes) with the public keyring.

    The readers' ``verify_export`` helpers call this; it reaches the verifier only here, at call
    time, so that no reader module imports `otel_audit.verify`.
    """
    from otel_audit.verify.inputs import verify_reader

    return verify_reader(reader, sources, keyring, what=what, is_file=is_file, allow_open=allow_open,
                         ignore_unsigned=ignore_unsigned, partial=partial)
