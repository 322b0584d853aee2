"""Read audit records back out of Datadog, for verification.

The Datadog exporter puts each record's own OTLP/JSON logRecord into the log's ``audit.otlp``
attribute. The collector's contrib ``datadog`` exporter sends no ``audit.otlp``; with the signing
processor's ``embed_record`` its logs carry the record's canonical content
(``audit.integrity.record``) and integrity fields as attributes, which are verified as they are.
This module finds them again in what Datadog gives back:

* a Logs Search API v2 response page (``POST /api/v2/logs/events/search``)::

      {"data": [{"id": "...", "type": "log",
                 "attributes": {"attributes": {...}, "message": "...", "service": "...",
                                "status": "...", "tags": [...], "timestamp": "...", "host": "..."}}],
       "links": {"next": "..."}, "meta": {"page": {"after": "..."}, ...}}

* a JSON array of such pages, a JSON array of their ``data`` items, or either one per line
  (NDJSON), as tools that page through the API save them;
* a v1 log list response (``{"logs": [{"id": ..., "content": {...}}], "nextLogId": ...}``);
* a CSV download of the Log Explorer, if it has an ``audit.otlp`` (or ``@audit.otlp``) column.
  Datadog does not document the CSV's columns: this is read on a best-effort basis, columns
  named like the attributes (``@user.id`` or ``user.id``) being cross-checked when present.

Datadog may show dotted attribute names nested (``{"audit": {"stream": {"seq": 4}}}``) or flat
(``{"audit.stream.seq": 4}``); both are read.

Next to every record it cross-checks every searchable field the exporter derives from the signed
record (`otel_audit.siem_fields.dd_record_fields`: ``message``, ``status``, the ``otel.*`` fields,
``evt.name``, the flattened attributes and their standard aliases, the ``audit_category:`` tag,
the timestamp) against it, as the exporter documents shrunk (``otel_audit.shrunk``) and restamped
(``otel_audit.restamped``) entries. An attribute the record does not give is a mismatch when only a
record gives its name (``audit.*``, ``user.*``, ``evt.*`` ...), else it is a resource attribute: it goes
with ``service`` and ``hostname`` (unless flagged ``otel_audit.host_fallback``) to the verifier as the
record's resource (`readers.Located`), compared with the stream's signed checkpoints. A searchable
field altered at rest while ``audit.otlp`` was left alone is a mismatch, reported with the stream and seq.

No OpenTelemetry SDK imports: a verifier needs only the data and the public keys.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from otel_audit import readers, siem_fields
from otel_audit.decoding import DecodeError
from otel_audit.decoding import loads as strict_loads
from otel_audit.errors import InputError

if TYPE_CHECKING:
    from otel_audit.verify.report import Report

__all__ = [
    "SEARCH_PATH",
    "DatadogReader",
    "Event",
    "claims",
    "claims_csv",
    "cross_check",
    "is_missing",
    "iter_events",
    "load_events",
    "lookup",
    "search_pages",
    "verify_export",
]

_log = logging.getLogger(__name__)

SEARCH_PATH = "/api/v2/logs/events/search"
OTLP_FIELD = "audit.otlp"
_MISSING: Any = object()


@dataclass
class Event:
    """One Datadog log event, whatever format it came in."""

    where: str
    id: str | None
    attributes: Mapping[str, Any]  # the log's own attributes (``attributes.attributes``)
    timestamp: Any = None  # Datadog's official date: ISO 8601 text or epoch milliseconds
    message: Any = None
    service: Any = None
    host: Any = None
    status: Any = None
    tags: list[str] = field(default_factory=list)
    columns: frozenset[str] | None = None  # a CSV's columns: only these fields can be checked
    problem: str | None = None  # why this item (a CSV row that does not fit the header) cannot be read


def lookup(attributes: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted attribute path, whether Datadog shows it flat, nested or mixed.

    Returns the module's ``_MISSING`` sentinel when it is absent.
    """
    if path in attributes:
        return attributes[path]
    parts = path.split(".")
    for i in range(1, len(parts)):
        sub = attributes.get(".".join(parts[:i]))
        if isinstance(sub, Mapping):
            found = lookup(sub, ".".join(parts[i:]))
            if found is not _MISSING:
                return found
    return _MISSING


def is_missing(value: Any) -> bool:
    """True for the value `lookup` returns when a path is absent."""
    return value is _MISSING


#: the signing processor's embedded canonical content (embed_record)
CANONICAL_FIELD = "audit.integrity.record"


def _one(value: Any) -> Any:
    """A value shown once, or as a one-item list."""
    return None if value is _MISSING else (value[0] if isinstance(value, list) and len(value) == 1 else value)


# -- the formats -----------------------------------------------------------------------------------


def _event_of(item: Any, where: str) -> Event | None:
    if not isinstance(item, Mapping):
        return None
    eid = item.get("id")
    if "content" in item and isinstance(item["content"], Mapping):  # v1 log list
        body = item["content"]
    elif isinstance(item.get("attributes"), Mapping):  # v2 search
        body = item["attributes"]
    else:
        return None
    attrs = body.get("attributes")
    tags = body.get("tags")
    return Event(
        where=f"{where} (id {eid})" if eid else where,
        id=eid if isinstance(eid, str) else None,
        attributes=attrs if isinstance(attrs, Mapping) else {},
        timestamp=body.get("timestamp"),
        message=body.get("message"),
        service=body.get("service"),
        host=body.get("host"),
        status=body.get("status"),
        tags=[t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
    )


def iter_events(doc: Any, where: str = "<datadog>") -> Iterator[Event]:
    """Every log event of a decoded Datadog document: a search page, a list of pages or of events,
    or a v1 log list. Raises InputError for anything else."""
    if isinstance(doc, Mapping):
        if isinstance(doc.get("data"), list):
            for i, item in enumerate(doc["data"]):
                ev = _event_of(item, f"{where} #{i}")
                if ev is None:
                    raise InputError(f"{where} #{i}: not a Datadog log event (no attributes)")
                yield ev
            return
        if isinstance(doc.get("logs"), list):
            for i, item in enumerate(doc["logs"]):
                ev = _event_of(item, f"{where} #{i}")
                if ev is None:
                    raise InputError(f"{where} #{i}: not a Datadog log (no content)")
                yield ev
            return
        if "errors" in doc and "data" not in doc:
            raise InputError(f"{where}: a Datadog error response, not logs: {str(doc['errors'])[:200]}")
        ev = _event_of(doc, where)
        if ev is None:
            raise InputError(f"{where}: not a Datadog log search response (no data) nor a log event")
        yield ev
        return
    if isinstance(doc, list):
        for i, item in enumerate(doc):
            if isinstance(item, Mapping) and ("data" in item or "logs" in item):
                yield from iter_events(item, f"{where} page {i}")
            else:
                ev = _event_of(item, f"{where} #{i}")
                if ev is None:
                    raise InputError(f"{where} #{i}: neither a Datadog log event nor a search response page")
                yield ev
        return
    raise InputError(f"{where}: expected a Datadog search response (a JSON object or array), "
                     f"got {type(doc).__name__}")


def claims(doc: Any) -> bool:
    """Whether a decoded JSON value is of Datadog's shape: a Logs Search API v2 page (`data`), a v1 log
    list (`logs`), an error response, one log event (v2 ``type: log`` or v1 ``content``), or a
    non-empty array of those."""
    if isinstance(doc, list):
        return bool(doc) and all(claims(item) for item in doc)
    if not isinstance(doc, Mapping):
        return False
    if isinstance(doc.get("data"), list) or isinstance(doc.get("logs"), list):
        return True
    if "errors" in doc and "data" not in doc:
        return True
    if doc.get("type") == "log" and isinstance(doc.get("attributes"), Mapping):
        return True
    return isinstance(doc.get("content"), Mapping) and "id" in doc


def claims_csv(first_line: bytes) -> bool:
    """Whether a file's first line is the header of a Log Explorer CSV download: it names an
    ``audit.otlp`` column, or holds columns named like Datadog's attributes (``@...``)."""
    try:
        text = first_line.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        return False
    if not text or text[:1] in "{[":
        return False
    try:
        header = next(csv.reader([text]))
    except (csv.Error, StopIteration):
        return False
    names = [_column(h) for h in header]
    return OTLP_FIELD in names or (len(header) >= 2 and any(h.strip().startswith("@") for h in header))


def _csv_events(text: str, where: str) -> Iterator[Event]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not any(_column(h) == OTLP_FIELD for h in reader.fieldnames):
        raise InputError(f"{where}: a CSV without an audit.otlp column; add the @audit.otlp column to the "
                         "Log Explorer's list before downloading, or use the Logs Search API")
    columns = frozenset(_column(h) for h in reader.fieldnames)
    width = len(reader.fieldnames)
    for row in reader:
        n = reader.line_num
        attrs: dict[str, Any] = {}
        ev = Event(where=f"{where}:{n}", id=None, attributes=attrs, columns=columns)
        extra, short = row.get(None), [h for h, v in row.items() if h is not None and v is None]
        if extra is not None or short:
            # every row is accounted for: one that does not fit the header is not an event of this export
            got = width + len(extra) if extra is not None else width - len(short)
            ev.problem = f"a row of {got} field(s) under a header of {width}: not a row of this CSV export"
            yield ev
            continue
        for header, value in row.items():
            if header is None or value is None or value == "":
                continue
            name = _column(header)
            low = name.lower()
            if low in ("date", "timestamp"):
                ev.timestamp = value
            elif low == "host":
                ev.host = value
            elif low == "service":
                ev.service = value
            elif low in ("message", "content"):
                ev.message = value
            elif low == "status":
                ev.status = value
            elif low == "tags":
                ev.tags = [t.strip() for t in value.split(",") if t.strip()]
            else:
                attrs[name] = value
        yield ev


def _column(header: str) -> str:
    h = header.strip()
    return h[1:] if h.startswith("@") else h


def load_events(source: str | os.PathLike[str] | bytes, where: str | None = None) -> Iterator[Event]:
    """The events of a file (or its bytes): JSON, NDJSON or CSV, optionally gzip-compressed."""
    data, name = readers.read_document(source, where)
    stripped = data.lstrip()
    if not stripped:
        raise InputError(f"{name}: empty")
    if stripped[:1] in (b"{", b"["):
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = _MISSING
        if doc is not _MISSING:
            yield from iter_events(doc, name)
            return
        for n, line in enumerate(data.splitlines(), 1):  # NDJSON: a page or an event per line
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise InputError(f"{name}:{n}: not JSON: {exc}") from None
            yield from iter_events(doc, f"{name}:{n}")
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{name}: neither JSON nor UTF-8 CSV") from None
    yield from _csv_events(text, name)


# -- cross-checks ----------------------------------------------------------------------------------


def _same(expected: Any, actual: Any) -> bool:
    """Equal as Datadog keeps values: numbers as doubles, CSV cells as text."""
    if isinstance(expected, bool):
        return actual is expected or (isinstance(actual, str) and actual.lower() == str(expected).lower())
    if isinstance(expected, (int, float)):
        if isinstance(actual, bool):
            return False
        try:
            return float(actual) == float(expected)
        except (TypeError, ValueError):
            return False
    if isinstance(expected, str):
        if isinstance(actual, str):
            return actual == expected
        return isinstance(actual, (int, float)) and not isinstance(actual, bool) and str(actual) == expected
    return bool(actual == expected)


def _millis(value: Any) -> int | None:
    """Datadog's date as epoch milliseconds: ISO 8601 text or a number of milliseconds."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        try:
            when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.timezone.utc)
        delta = when - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
        return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000
    return None


#: attributes the exporter itself documents on an entry (restamped: too old for Datadog; shrunk: over 1 MB)
EXPORTER_FIELDS = frozenset({OTLP_FIELD, "otel_audit.restamped", "otel_audit.shrunk", siem_fields.DD_HOST_FALLBACK})
#: attribute names only a record gives: such a field that the signed record does not produce was added
_RECORD_ONLY_PREFIXES = ("audit.", "user.", "usr.", "client.", "network.client.", "evt.", "session.", "otel.",
                         "otel_audit.attr.", "dd.", "error.", "http.", "url.")
# a resource attribute whose name Datadog reserves (and the earlier versions' prefix)
_RESOURCE_RENAMED = (siem_fields.SHADOWED_PREFIX, siem_fields.LEGACY_SHADOWED_PREFIX)
_OPTIONAL = frozenset(siem_fields.DD_STANDARD_ALIASES.values())  # Datadog's remappers may move them
_CATEGORY_TAG = "audit_category:"


def _paths(node: Any, prefix: str, out: dict[str, Any]) -> None:
    """An event's attributes by dotted path, whether Datadog shows them nested, flat or mixed."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            _paths(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = node


def _same_value(expected: Any, actual: Any) -> bool:
    if isinstance(expected, list):
        if isinstance(actual, str):  # a CSV cell
            try:
                actual = orjson.loads(actual)
            except orjson.JSONDecodeError:
                return False
        return isinstance(actual, list) and len(actual) == len(expected) and all(
            _same(e, a) for e, a in zip(expected, actual, strict=True))
    if isinstance(actual, (Mapping, list)):
        return False
    return _same(expected, actual)


def _status_shown(status: str) -> str:
    """A status as Datadog's status remapper shows it (syslog severities by name or first letters)."""
    s = status.strip().lower()
    names = ("emergency", "alert", "critical", "error", "warning", "notice", "info", "debug")
    if s.isdigit():
        return names[int(s)] if int(s) <= 7 else "info"
    for prefixes, name in ((("emerg", "f"), "emergency"), (("a",), "alert"), (("c",), "critical"),
                           (("e",), "error"), (("w",), "warning"), (("n",), "notice"), (("i",), "info"),
                           (("d", "t", "v"), "debug"), (("o", "s"), "ok")):
        if s.startswith(prefixes):
            return name
    return "info"


def _producer_value(key: str, value: Any) -> Any:
    """A resource attribute (sent as a string) as the signed producer line holds it (process.pid an integer)."""
    if key == "process.pid" and isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def cross_check(event: Event, record: Mapping[str, Any], resource: dict[str, Any] | None = None) -> list[str]:
    """Mismatches between an event's searchable fields and its signed record, one message each.

    Every field the exporter derives from the record (`otel_audit.siem_fields.dd_record_fields`:
    ``message``, ``status``, the ``otel.*`` fields, ``evt.name``, the attributes and their standard
    aliases, the ``audit_category:`` tag) must be what the signed record gives; one the exporter
    documents as dropped (``otel_audit.shrunk``) may be missing, and the message of a shrunk entry is
    its preview; Datadog's timestamp may differ from the record's time only when
    ``otel_audit.restamped`` says so, and then not be earlier. An attribute the record does not give is
    a resource attribute (unsigned: put into `resource` with ``service`` and ``host``, for the verifier
    to compare with the stream's signed checkpoints) unless only a record gives its name: then it was
    added.
    """
    try:
        head, flat, attrs, ns = siem_fields.dd_record_fields(record)
    except DecodeError as exc:
        return [f"{event.where}: audit.otlp is not strict OTLP/JSON: {exc}"]
    sid, seq = attrs.get("audit.stream.id"), attrs.get("audit.stream.seq")
    which = f"stream {sid} seq {seq}" if sid is not None else "an unsigned record"
    res: dict[str, Any] = {} if resource is None else resource
    got: dict[str, Any] = {}
    _paths(event.attributes, "", got)
    shrunk = got.get("otel_audit.shrunk")
    dropped = set(shrunk) if isinstance(shrunk, list) else set()
    restamped = got.get("otel_audit.restamped") in (True, "true")
    host_fallback = got.get(siem_fields.DD_HOST_FALLBACK) in (True, "true")
    columns = event.columns
    out: list[str] = []

    def shown(path: str) -> bool:
        return columns is None or path in columns

    status, message = head.pop("status"), head.pop("message")
    for path, expected in {**head, **flat}.items():
        if not shown(path):
            continue  # a CSV download without this column says nothing about it
        actual = got.pop(path, _MISSING)
        if actual is _MISSING:
            if path not in dropped and path not in _OPTIONAL:
                out.append(f"{event.where}: searchable field {path} is missing; the signed record has "
                           f"{expected!r} ({which})")
            continue
        if not _same_value(expected, actual):
            out.append(f"{event.where}: searchable field {path} is {actual!r} but the signed record has "
                       f"{expected!r} ({which})")

    for path, actual in got.items():
        if path in EXPORTER_FIELDS or not shown(path):
            continue
        if path.startswith(_RESOURCE_RENAMED):
            res[path.split(".attr.", 1)[1]] = actual
        elif path.startswith(_RECORD_ONLY_PREFIXES) or path in siem_fields.DD_RESERVED:
            out.append(f"{event.where}: searchable field {path} is {actual!r} but the signed record has no such "
                       f"value ({which})")
        else:
            res[path] = _producer_value(path, actual)

    if event.message is not None and shown("message"):
        want = siem_fields.dd_preview(message) if "message" in dropped else message
        if event.message != want:
            out.append(f"{event.where}: searchable field message is {event.message!r} but the signed record has "
                       f"{want!r} ({which})")
    if event.status is not None and shown("status") and (
            not isinstance(event.status, str) or _status_shown(event.status) != _status_shown(status)):
        out.append(f"{event.where}: searchable field status is {event.status!r} but the signed record has "
                   f"{status!r} ({which})")
    if columns is None:
        category = attrs.get("audit.category")
        want_tags = ([siem_fields.dd_normalize_tag(f"{_CATEGORY_TAG}{category}")]
                     if isinstance(category, str) and category else [])
        tags = [t for t in event.tags if t.startswith(_CATEGORY_TAG)]
        if tags != want_tags:
            out.append(f"{event.where}: searchable tag {tags[0] if len(tags) == 1 else tags!r} but the signed "
                       f"record has {want_tags[0] if len(want_tags) == 1 else want_tags!r} "
                       f"(audit.category, {which})")
    for key, value in (("service.name", event.service), ("host.name", event.host)):
        if key == "host.name" and host_fallback:
            continue  # the exporter's configured fallback, not the producer's host
        if isinstance(value, str) and value:
            if key in res and res[key] != value:
                out.append(f"{event.where}: field {'service' if key == 'service.name' else 'host'} is {value!r} "
                           f"but attribute {key} is {res[key]!r} ({which})")
            res[key] = value

    if ns:
        ms = _millis(event.timestamp)
        if ms is not None and (ms < ns // 1_000_000 if restamped else ms != ns // 1_000_000):
            out.append(f"{event.where}: Datadog's timestamp is {event.timestamp!r} but the signed record's "
                       f"time is {_dt.datetime.fromtimestamp(ns / 1e9, _dt.timezone.utc).isoformat()} ({which})")
    return out


# -- the reader ------------------------------------------------------------------------------------


class DatadogReader:
    """Turns Datadog events into ``(where, OTLP/JSON logRecord)`` pairs, collecting what is wrong.

    ``mismatches``: searchable fields that disagree with the signed record (tampering at rest, or
    a Datadog pipeline rewriting them). ``problems``: events of ours that cannot be verified
    (``audit.otlp`` missing or cut short). ``skipped``: events that are not audit records.
    A `otel_audit.readers.Reader`.
    """

    kind = "datadog"
    label = "datadog"

    def __init__(self, *, source: str | None = "otel_audit") -> None:
        self.source = source  # ddsource of our events, to tell "not ours" from "ours but broken"
        self.mismatches: list[str] = []
        self.problems: list[str] = []
        self.events = 0
        self.records = 0
        self.skipped = 0
        self._last_resource: dict[str, Any] = {}

    def records_of(self, events: Iterable[Event]) -> Iterator[tuple[str, dict[str, Any]]]:
        for ev in events:
            self.events += 1
            if ev.problem is not None:
                self.problems.append(f"{ev.where}: {ev.problem}")
                continue
            text = lookup(ev.attributes, OTLP_FIELD)
            if text is _MISSING and not is_missing(content := lookup(ev.attributes, CANONICAL_FIELD)):
                # sent by the collector's datadog exporter with the signing processor's embed_record:
                # the canonical content and the integrity fields are attributes of the log (the exporter
                # writes them into a JSON message, which Datadog's JSON preprocessing turns into attributes)
                vals = [_one(lookup(ev.attributes, k)) for k in (
                    "audit.stream.id", "audit.stream.seq", "audit.integrity.prev", "audit.integrity.digest")]
                self.records += 1
                yield ev.where, {readers.CANONICAL: (*vals, _one(content))}
                continue
            if text is _MISSING:
                if self._looks_ours(ev):
                    self.problems.append(f"{ev.where}: an audit record without its audit.otlp field; it cannot "
                                         "be verified (removed at rest, or by a Datadog pipeline)")
                else:
                    self.skipped += 1
                continue
            try:
                record = strict_loads(text) if isinstance(text, (str, bytes)) else _MISSING
            except DecodeError as exc:  # a member name twice is refused too
                record = _MISSING
                reason = (f"not valid JSON ({exc.detail}); was the log truncated?" if exc.rule == "not-json"
                          else f"not strict OTLP/JSON: {exc}")
            else:
                reason = "not a JSON object"
            if not isinstance(record, dict):
                self.problems.append(f"{ev.where}: audit.otlp is {reason}")
                continue
            self.records += 1
            resource: dict[str, Any] = {}
            self.mismatches.extend(cross_check(ev, record, resource))
            yield readers.Located(ev.where, record, self._same_resource(resource))

    def _same_resource(self, resource: dict[str, Any]) -> dict[str, Any]:
        """One object for equal resources in a row (the verifier reads a resource object's identity once)."""
        if resource != self._last_resource:
            self._last_resource = resource
        return self._last_resource

    def records_in(self, source: Any, where: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Records of a file path, raw bytes, or an already-decoded document (page, list of pages)."""
        if isinstance(source, (str, os.PathLike, bytes)):
            return self.records_of(load_events(source, where))
        return self.records_of(iter_events(source, where or "<datadog>"))

    def claims(self, doc: Any) -> bool:
        return claims(doc)

    def claims_text(self, first_line: bytes) -> bool:
        return claims_csv(first_line)

    def _looks_ours(self, ev: Event) -> bool:
        if not is_missing(lookup(ev.attributes, "audit.stream.id")):
            return True
        return bool(self.source) and f"source:{self.source}" in ev.tags


def verify_export(sources: Iterable[Any], keyring: Any, *, allow_open: bool = False,
                  ignore_unsigned: bool = False, source: str | None = "otel_audit", partial: bool = False
                  ) -> tuple[Report, DatadogReader]:
    """Verify the audit records in Datadog exports or search pages; mismatches and unverifiable
    events are added to the report's problems, so the report is ok only when all is well."""
    reader = DatadogReader(source=source)
    report = readers.verify_export(reader, sources, keyring,
                                   what=lambda: f"the Datadog data ({reader.events} events",
                                   allow_open=allow_open, ignore_unsigned=ignore_unsigned, partial=partial)
    return report, reader


# -- the Logs Search API ---------------------------------------------------------------------------


def search_pages(
    base_url: str,
    *,
    api_key: str,
    app_key: str,
    query: str = "source:otel_audit",
    from_: str = "now-15m",
    to: str = "now",
    limit: int = 1000,
    sort: str = "timestamp",
    indexes: list[str] | None = None,
    session: Any = None,
    timeout: float = 30.0,
    max_wait: float = 300.0,
) -> Iterator[dict[str, Any]]:
    """Page through ``POST /api/v2/logs/events/search`` (cursor pagination); yields each response.

    ``base_url`` is the site's API, e.g. ``https://api.datadoghq.eu``. A 429 waits for
    ``Retry-After`` or ``X-RateLimit-Reset`` (at most ``max_wait`` seconds in all); any other
    error raises InputError with Datadog's reason. The keys never appear in a message.
    """
    import requests  # only this function talks to the network

    if not 1 <= limit <= 1000:
        raise ValueError(f"limit must be 1 to 1000 (the API's maximum page), got {limit}")
    own = session is None
    http = session or requests.Session()
    url = base_url.rstrip("/") + SEARCH_PATH
    headers = {"DD-API-KEY": api_key, "DD-APPLICATION-KEY": app_key, "Content-Type": "application/json",
               "Accept": "application/json"}
    body: dict[str, Any] = {"filter": {"query": query, "from": from_, "to": to}, "page": {"limit": limit},
                            "sort": sort}
    if indexes:
        body["filter"]["indexes"] = indexes
    waited = 0.0
    try:
        while True:
            try:
                resp = http.post(url, data=orjson.dumps(body), headers=headers, timeout=timeout)
            except requests.RequestException as exc:
                raise InputError(f"{url}: {type(exc).__name__}") from None
            if resp.status_code == 429:
                wait = _wait_of(resp.headers)
                if waited + wait > max_wait:
                    raise InputError(f"{url}: rate limited (429) for more than {max_wait:.0f}s")
                time.sleep(wait)
                waited += wait
                continue
            if resp.status_code != 200:
                raise InputError(f"{url}: HTTP {resp.status_code}: {_errors(resp)}")
            try:
                page = resp.json()
            except ValueError:
                raise InputError(f"{url}: the response is not JSON") from None
            yield page
            after = ((page.get("meta") or {}).get("page") or {}).get("after")
            if not after or not page.get("data"):
                return
            body["page"]["cursor"] = after
    finally:
        if own:
            http.close()


def _wait_of(headers: Mapping[str, str]) -> float:
    for name in ("Retry-After", "X-RateLimit-Reset"):
        value = headers.get(name)
        if value and value.strip().isdigit():
            return max(0.1, float(value.strip()))
    return 1.0


def _errors(resp: Any) -> str:
    try:
        doc = resp.json()
    except ValueError:
        return (resp.text or resp.reason or "")[:200]
    errors = doc.get("errors") if isinstance(doc, Mapping) else None
    return "; ".join(str(e) for e in errors[:3])[:300] if isinstance(errors, list) else str(doc)[:200]
