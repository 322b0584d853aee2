"""Read audit records back out of Splunk search results, for verification.

The Splunk HEC exporter sends each record as a JSON ``event`` object that holds, next to the
searchable fields, ``audit.otlp``: the record's own OTLP/JSON logRecord. Splunk keeps that object
as the event's ``_raw``. This module finds the record again in what a search gives back:

* the export format: ``splunk search '...' -output json`` and the REST endpoint
  ``search/jobs/export?output_mode=json`` write one JSON object per line,
  ``{"preview": false, "offset": 0, "result": {"_raw": "...", "_time": "...", ...}}``
  (lines holding only ``messages``, and ``lastrow`` markers, are fine);
* a JSON array of results (or of those per-line objects), as tools that collect them save it;
* a results document of ``search/jobs/<sid>/results?output_mode=json``
  (``{"results": [...], ...}``); any of these optionally gzip-compressed.

The record is read from ``_raw`` (the HEC event object); when ``_raw`` is not in the results
(``| fields - _raw``), from the extracted field ``audit.otlp``. Splunk's automatic extraction
stops after the first 10240 characters of ``_raw`` (limits.conf ``[kv] maxchars``), so keep
``_raw`` in exports of big records.

Next to every record it cross-checks the searchable fields an analyst sees against the signed
record: the event name, ``user.id``, ``audit.outcome``, the timestamp (``_time``, to the
millisecond HEC keeps), ``audit.stream.id`` and ``audit.stream.seq``; in ``_raw`` (where they
must be present when the record has them) and in the result's fields (index-time ``fields`` and
search-time extractions, checked when present; a field that is both is multivalued, every value
must agree). Splunk gives field values as strings: ``"12"`` matches the integer 12. A searchable
field altered at rest while ``audit.otlp`` was left alone is a mismatch, reported with the stream
and seq.

No OpenTelemetry SDK imports: a verifier needs only the data and the public keys.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from otel_audit import readers, siem_fields
from otel_audit.decoding import DecodeError, decode_value
from otel_audit.decoding import loads as strict_loads
from otel_audit.errors import InputError

if TYPE_CHECKING:
    from otel_audit.verify.report import Report

__all__ = [
    "SplunkReader",
    "contrib_hec_mismatches",
    "cross_check",
    "iter_results",
    "load_results",
    "record_of",
    "records_from_contrib_hec",
    "verify_export",
]

OTLP_FIELD = "audit.otlp"
EVENT_NAME_FIELD = "event_name"
#: the record attributes the HEC exporter also writes as index-time fields (exporters/splunk_hec.py INDEXED_FIELDS)
INDEXED_ATTRIBUTES = ("audit.stream.id", "audit.stream.seq", "audit.category", "audit.action", "audit.outcome",
                      "user.id")
_MISSING: Any = object()


# -- the formats -----------------------------------------------------------------------------------


def _results_of(doc: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """The results in one decoded JSON document (a line, or a whole file)."""
    if isinstance(doc, list):
        for i, item in enumerate(doc):
            yield from _results_of(item, f"{where}[{i}]")
        return
    if not isinstance(doc, dict):
        return
    if isinstance(doc.get("result"), dict):  # the export format's wrapper
        yield where, doc["result"]
    elif isinstance(doc.get("results"), list):  # search/jobs/<sid>/results
        for i, item in enumerate(doc["results"]):
            if isinstance(item, dict):
                yield f"{where}[{i}]", item
    elif "_raw" in doc or OTLP_FIELD in doc or CANONICAL_FIELD in doc:  # a bare result
        yield where, doc
    # otherwise: messages, preview markers, an empty lastrow: nothing to read


#: the keys of the export format's lines that carry no result (messages, preview markers, lastrow)
_EXPORT_KEYS = frozenset({"preview", "offset", "init_offset", "lastrow", "messages", "highlighted", "fields",
                          "post_process_count"})


def claims(doc: Any) -> bool:
    """Whether a decoded JSON value is of a Splunk search output's shape: a line of the export format
    (with a result, or only messages / preview markers), a results document, a bare result, or a
    non-empty array of those."""
    if isinstance(doc, list):
        return bool(doc) and all(claims(item) for item in doc)
    if not isinstance(doc, dict):
        return False
    if isinstance(doc.get("result"), dict) or isinstance(doc.get("results"), list):
        return True
    if "_raw" in doc or OTLP_FIELD in doc or CANONICAL_FIELD in doc:
        return True
    return bool(doc) and doc.keys() <= _EXPORT_KEYS and bool({"preview", "messages", "lastrow"} & doc.keys())


def iter_results(doc: Any, where: str = "<splunk>") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, result)`` for every search result of an already-decoded document."""
    yield from _results_of(doc, where)


def load_results(source: str | os.PathLike[str] | bytes, where: str | None = None
                 ) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, result)`` for every search result of a file (or its bytes), optionally gzipped."""
    data, name = readers.read_document(source, where)
    if not data.strip():
        raise InputError(f"{name}: empty")
    if data.lstrip()[:1] not in (b"{", b"["):
        raise InputError(f"{name}: not Splunk's JSON output; export with output_mode=json (or -output json)")
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        doc = _MISSING
    if doc is not _MISSING:
        yield from _results_of(doc, name)
        return
    for n, line in enumerate(data.splitlines(), 1):  # one JSON object per line
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{name}:{n}: not JSON: {exc}") from None
        yield from _results_of(doc, f"{name}:{n}")


# -- one result ------------------------------------------------------------------------------------


def _event_of(result: Mapping[str, Any]) -> dict[str, Any] | None:
    raw = result.get("_raw")
    if isinstance(raw, list) and raw:
        raw = raw[0]
    if not isinstance(raw, str) or not raw.lstrip().startswith("{"):
        return None
    try:
        event = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return event if isinstance(event, dict) else None


#: the signing processor's embedded canonical content (embed_record), and how a reader hands it on
CANONICAL_FIELD = "audit.integrity.record"
CANONICAL_KEY = readers.CANONICAL


def _one(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def record_of(result: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(the signed OTLP/JSON logRecord of a result, "") or (None, why it cannot be read).

    The reason is "" too when the result simply is not an audit record (no ``audit.otlp``
    anywhere and no stream id): the caller counts it as skipped.
    """
    event = _event_of(result)
    text: Any = _MISSING
    if event is not None and OTLP_FIELD in event:
        text = event[OTLP_FIELD]
    elif OTLP_FIELD in result:
        text = result[OTLP_FIELD]
        if isinstance(text, list):
            distinct = set(text) if all(isinstance(t, str) for t in text) else {None, 0}
            text = text[0] if len(distinct) == 1 else _MISSING
            if text is _MISSING:
                return None, "audit.otlp has several differing values"
    if text is _MISSING and CANONICAL_FIELD in result:
        # sent by the collector's splunk_hec exporter with the signing processor's embed_record:
        # the canonical content and the integrity fields are index-time fields of the result
        vals = [_one(result.get(k)) for k in ("audit.stream.id", "audit.stream.seq", "audit.integrity.prev",
                                              "audit.integrity.digest", CANONICAL_FIELD)]
        return {CANONICAL_KEY: tuple(vals)}, ""
    if text is _MISSING:
        ours = (event is not None and "audit.stream.id" in event) or "audit.stream.id" in result
        if ours:
            return None, ("an audit record without its audit.otlp field: it cannot be verified (removed at "
                          "rest, or the export left out _raw and Splunk did not extract the field)")
        return None, ""
    if not isinstance(text, str):
        return None, f"audit.otlp is a {type(text).__name__}, not the JSON text of a logRecord"
    try:
        record = strict_loads(text)  # a member name twice is refused too
    except DecodeError as exc:
        if exc.rule != "not-json":
            return None, f"audit.otlp is not strict OTLP/JSON: {exc}"
        return None, (f"audit.otlp is not valid JSON ({exc.detail}); was the event truncated (TRUNCATE in "
                      "props.conf)?")
    if not isinstance(record, dict):
        return None, "audit.otlp is not a JSON object"
    return record, ""


def _text(value: Any) -> str:
    """A value as Splunk shows it in results: a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and math.isfinite(value):
            return str(int(value))
        return repr(value)
    if value is None:
        return "null"
    return orjson.dumps(value).decode()


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(actual, list):
        return bool(actual) and all(_same(expected, a) for a in actual)
    if isinstance(expected, float) or isinstance(actual, float):
        try:
            return float(_text(actual)) == float(_text(expected))
        except ValueError:
            return False
    return _text(expected) == _text(actual)


def _millis_of_time(value: Any) -> int | None:
    """``_time`` in milliseconds: ISO 8601 text (as exports write it) or epoch seconds."""
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return round(float(value) * 1000)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return round(float(text) * 1000)
    except ValueError:
        pass
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    delta = when - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


#: what Splunk adds to a result next to the event's own fields: never derived from the record
BACKEND_FIELDS = frozenset({
    "_raw", "_time", "_indextime", "_cd", "_bkt", "_serial", "_si", "_sourcetype", "_kv", "_subsecond",
    "_eventtype_color", "_confstr", "_serial_id", "index", "linecount", "splunk_server", "splunk_server_group",
    "punct", "timestartpos", "timeendpos", "eventtype", "tag", "source", "sourcetype", "host",
})
_BACKEND_PREFIXES = ("date_", "tag::", "_")
#: the producer identity a resource names (as the verifier compares it with the signed checkpoints)
PRODUCER_KEYS = ("service.name", "service.namespace", "service.instance.id", "service.version", "host.name",
                 "process.pid")
#: HEC metadata the exporter takes from a resource (or record) attribute, never written as an event field
_METADATA_ATTRS = frozenset({"com.splunk.source", "com.splunk.sourcetype", "com.splunk.index",
                             "com.splunk.hec.access_token"})
_RESERVED = frozenset({EVENT_NAME_FIELD, "body", "trace_id", "span_id", OTLP_FIELD,
                       siem_fields.SPLUNK_SEVERITY_TEXT, siem_fields.SPLUNK_SEVERITY_NUMBER})
#: field names only a record gives (a resource attribute so named would be renamed or is not ours):
#: such a field in the event that the signed record does not produce was added
_RECORD_ONLY_PREFIXES = ("audit.", siem_fields.SHADOWED_PREFIX, siem_fields.LEGACY_SHADOWED_PREFIX, "user.",
                         "client.", "session.")


def _backend(name: str) -> bool:
    return name in BACKEND_FIELDS or name.startswith(_BACKEND_PREFIXES)


def _spath(prefix: str, value: Any, out: dict[str, list[str]]) -> None:
    """A JSON event's fields as Splunk's search-time extraction (spath, KV_MODE=json) names them, as text."""
    if isinstance(value, dict):
        for k, v in value.items():
            _spath(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list):
        for v in value:
            _spath(prefix + "{}", v, out)
    else:
        out.setdefault(prefix, []).append(_text(value))


def _producer_value(key: str, value: Any) -> Any:
    """A searchable producer field as the signed producer line holds it (process.pid an integer)."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if key == "process.pid" and isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def cross_check(result: Mapping[str, Any], record: Mapping[str, Any], where: str,
                resource: dict[str, Any] | None = None) -> list[str]:
    """Mismatches between a result's searchable fields and its signed record, one message each.

    Every field the exporter derives from the record (`otel_audit.siem_fields`) must be what the signed
    record gives, in ``_raw`` and in the result's fields; a field the record does not give is a resource
    attribute (unsigned: the producer identity it names is put in `resource`, for the verifier to compare
    with the stream's signed checkpoints) unless its name is one only a record gives, then it was added.
    """
    try:
        head, record_flat, attrs = siem_fields.splunk_record_fields(record, skip=_METADATA_ATTRS)
    except DecodeError as exc:
        return [f"{where}: audit.otlp is not strict OTLP/JSON: {exc}"]
    sid, seq = attrs.get("audit.stream.id"), attrs.get("audit.stream.seq")
    which = f"stream {sid} seq {seq}" if sid is not None else "an unsigned record"
    derived = siem_fields.splunk_merge(head, {}, record_flat, _RESERVED)
    event = _event_of(result)
    out: list[str] = []
    res: dict[str, Any] = {} if resource is None else resource

    def added(name: str, actual: Any, place: str) -> None:
        out.append(f"{where}: searchable field {name}{place} is {actual!r} but the signed record has no such "
                   f"value ({which})")

    if event is not None:
        for name, expected in derived.items():
            actual = event.get(name, _MISSING)
            if actual is _MISSING:
                out.append(f"{where}: searchable field {name} is missing from _raw; the signed record has "
                           f"{expected!r} ({which})")
            elif not _same_json(actual, expected):
                out.append(f"{where}: searchable field {name} in _raw is {actual!r} but the signed record has "
                           f"{expected!r} ({which})")
        for name, actual in event.items():
            if name in derived or name == OTLP_FIELD:
                continue
            if name in _RESERVED or name.startswith(_RECORD_ONLY_PREFIXES) or name in _METADATA_ATTRS:
                added(name, actual, " in _raw")
            elif name in PRODUCER_KEYS:
                res[name] = _producer_value(name, actual)
        expected_fields: dict[str, list[str]] = {}
        _spath("", event, expected_fields)
    else:
        expected_fields = {}
        _spath("", derived, expected_fields)
    # index-time fields: the event name and some attributes, as text
    for k in (EVENT_NAME_FIELD, *INDEXED_ATTRIBUTES):
        v = derived.get(k)
        if v is not None and not isinstance(v, (list, dict)):
            expected_fields.setdefault(k, []).append(_text(v))
    # the host: host.name of the record or its resource, else the exporter's host name
    host = result.get("host", _MISSING)
    if host is not _MISSING:
        host = _producer_value("host", host)
        named = derived.get("host.name", res.get("host.name"))
        if isinstance(named, str) and named and host != named:
            out.append(f"{where}: host is {host!r} but the record names host.name {named!r} ({which})")
        elif not isinstance(named, str) or not named:
            res["host.name"] = host
    for name, actual in result.items():
        if _backend(name) or name == OTLP_FIELD:
            continue
        values = actual if isinstance(actual, list) else [actual]
        want = expected_fields.get(name)
        if want is None:
            if name in _RESERVED or name.startswith(_RECORD_ONLY_PREFIXES) or event is not None \
                    or name in _METADATA_ATTRS:
                added(name, actual, "")
            elif name in PRODUCER_KEYS:
                res[name] = _producer_value(name, actual)
            continue
        if not values or not all(any(_same_text(w, v) for w in want) for v in values):
            shown = want[0] if len(want) == 1 else want
            out.append(f"{where}: field {name} is {actual!r} but the signed record has {shown!r} ({which})")

    ns_text = record.get("timeUnixNano") or record.get("observedTimeUnixNano")
    try:
        ns = int(ns_text) if ns_text is not None else 0
    except (TypeError, ValueError):
        ns = 0
    if ns and "_time" in result:
        ms = _millis_of_time(result["_time"])
        if ms != ns // 1_000_000:
            signed = _dt.datetime.fromtimestamp(ns / 1e9, _dt.timezone.utc).isoformat(timespec="milliseconds")
            out.append(f"{where}: _time is {result['_time']!r} but the signed record's time is {signed} ({which})")
    return out


def _same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values, types too (True is not 1, 1 is not 1.0 unless JSON makes them one)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _same_text(expected: str, actual: Any) -> bool:
    if isinstance(actual, (dict, list)):
        return False
    return _same(expected, actual)


# -- the reader ------------------------------------------------------------------------------------


class SplunkReader:
    """Turns Splunk search results into ``(where, OTLP/JSON logRecord)`` pairs, collecting what is wrong.

    ``mismatches``: searchable fields that disagree with the signed record (tampering at rest, or
    a Splunk transform rewriting them). ``problems``: results of ours that cannot be verified
    (``audit.otlp`` missing or cut short). ``skipped``: results that are not audit records.
    A `otel_audit.readers.Reader`.
    """

    kind = "splunk"
    label = "splunk"

    def __init__(self) -> None:
        self.mismatches: list[str] = []
        self.problems: list[str] = []
        self.results = 0
        self.records = 0
        self.skipped = 0
        self._last_resource: dict[str, Any] = {}

    def records_of(self, results: Iterable[tuple[str, Mapping[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
        for where, result in results:
            self.results += 1
            record, why = record_of(result)
            if record is None:
                if why:
                    self.problems.append(f"{where}: {why}")
                else:
                    self.skipped += 1
                continue
            self.records += 1
            if CANONICAL_KEY not in record:
                resource: dict[str, Any] = {}
                self.mismatches.extend(cross_check(result, record, where, resource))
                yield readers.Located(where, record, self._same_resource(resource))
                continue
            yield where, record

    def _same_resource(self, resource: dict[str, Any]) -> dict[str, Any]:
        """One object for equal resources in a row (the verifier reads a resource object's identity once)."""
        if resource != self._last_resource:
            self._last_resource = resource
        return self._last_resource

    def records_in(self, source: Any, where: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Records of a file path, raw bytes, or an already-decoded document."""
        if isinstance(source, (str, os.PathLike, bytes)):
            return self.records_of(load_results(source, where))
        return self.records_of(iter_results(source, where or "<splunk>"))

    def claims(self, doc: Any) -> bool:
        return claims(doc)

    def claims_text(self, first_line: bytes) -> bool:
        return False  # Splunk's output is JSON


def verify_export(sources: Iterable[Any], keyring: Any, *, allow_open: bool = False,
                  ignore_unsigned: bool = False, partial: bool = False) -> tuple[Report, SplunkReader]:
    """Verify the audit records in Splunk search exports; mismatches and unverifiable results are
    added to the report's problems, so the report is ok only when all is well."""
    reader = SplunkReader()
    report = readers.verify_export(reader, sources, keyring,
                                   what=lambda: f"the Splunk results ({reader.results} results",
                                   allow_open=allow_open, ignore_unsigned=ignore_unsigned, partial=partial)
    return report, reader


# -- events of the collector's own splunk_hec exporter ---------------------------------------------
#
# The contrib `splunk_hec` exporter (v0.147.0, pkg/translator/splunk LogToSplunkEvent) writes no
# `audit.otlp`. Per log record it sends {"event": <body as raw JSON>, "fields": {...}, "time":
# <seconds, rounded to the millisecond>, "host", "source", "sourcetype", "index"}, where `fields` holds
# the resource attributes and the record attributes merged into one flat object (maps flattened to
# "key.sub", lists of lists/maps as JSON text, bytes as base64 text, every double that happens to be
# whole written as an integer) plus "otel.log.severity.text" / "otel.log.severity.number".
# What that loses for good, so that the signed canonical form cannot be rebuilt exactly:
#   * the event name: not sent at all;
#   * the timestamp below the millisecond (the canonical form signs nanoseconds);
#   * records whose body is empty or "": dropped by the exporter, never sent;
#   * which fields were resource attributes and which record attributes; the type of a bytes value
#     or of a whole double; whether a dotted key was a map.
# `records_from_contrib_hec` rebuilds what IS carried; the verifier then reports such records as
# modified unless the lost parts happened to be empty (no event name, a whole-millisecond time).

CONTRIB_SEVERITY_TEXT = "otel.log.severity.text"
CONTRIB_SEVERITY_NUMBER = "otel.log.severity.number"


def _contrib_anyvalue(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [_contrib_anyvalue(v) for v in value]}}
    if isinstance(value, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": _contrib_anyvalue(v)} for k, v in value.items()]}}
    raise ValueError(f"a {type(value).__name__} is not a JSON value")


def records_from_contrib_hec(events: Any, *, resource_keys: Any = (), name: str = "splunk"
                             ) -> Any:
    """(where, OTLP/JSON logRecord) rebuilt from HEC envelopes sent by the contrib splunk_hec exporter.

    `resource_keys`: field names known to be resource attributes (left out of the record's attributes).
    No event name is set (none is carried); `timeUnixNano` is the millisecond the envelope gives.
    """
    skip = {CONTRIB_SEVERITY_TEXT, CONTRIB_SEVERITY_NUMBER, *resource_keys}
    for n, env in enumerate(events):
        where = f"{name}[{n}]"
        fields = dict(env.get("fields") or {})
        rec: dict[str, Any] = {}
        t = env.get("time")
        if t is not None:
            rec["timeUnixNano"] = str(round(float(t) * 1000) * 1_000_000)
        if fields.get(CONTRIB_SEVERITY_NUMBER) is not None:
            rec["severityNumber"] = int(fields[CONTRIB_SEVERITY_NUMBER])
        if fields.get(CONTRIB_SEVERITY_TEXT):
            rec["severityText"] = str(fields[CONTRIB_SEVERITY_TEXT])
        rec["attributes"] = [{"key": k, "value": _contrib_anyvalue(v)} for k, v in fields.items() if k not in skip]
        if env.get("event") is not None:
            rec["body"] = _contrib_anyvalue(env["event"])
        yield where, rec


def _contrib_form(value: Any) -> Any:
    """A decoded AnyValue as the contrib exporter writes it into JSON (bytes base64, whole doubles as ints)."""
    import base64

    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_contrib_form(v) for v in value]
    if isinstance(value, dict):
        return {k: _contrib_form(v) for k, v in value.items()}
    return value


def _contrib_fields(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Record attributes as the contrib exporter's `fields`: maps flattened to dotted keys; a list holding a
    list or map becomes JSON text, whose exact bytes (Go's encoder) are not rebuilt: such keys map to None."""
    out: dict[str, Any] = {}

    def put(key: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, sub in v.items():
                put(f"{key}.{k}", sub)
        elif isinstance(v, list) and any(isinstance(x, (list, dict)) for x in v):
            out[key] = None
        else:
            out[key] = _contrib_form(v)

    for k, v in attrs.items():
        put(k, v)
    return out


def contrib_hec_mismatches(events: Iterable[Mapping[str, Any]], verified: Iterable[Mapping[str, Any]]) -> list[str]:
    """What the contrib splunk_hec exporter's events say differently from verified OTLP/JSON records.

    `verified`: the same stream's records from a copy that verifies (e.g. the collector's file archive).
    Compares every part the exporter carries: body, severity, the millisecond time and each attribute's
    value (a list nested in a list or map is compared only for presence). An event whose seq the
    verified copy lacks, or whose digest differs from it, is named too. Messages name stream and seq.
    """
    by_key: dict[tuple[object, object], Mapping[str, Any]] = {}  # (stream id, seq) as the records hold them
    for signed in verified:
        attrs = {kv["key"]: decode_value(kv.get("value") or {}) for kv in signed.get("attributes") or ()}
        by_key[(attrs.get("audit.stream.id"), attrs.get("audit.stream.seq"))] = signed
    out: list[str] = []
    for env in events:
        fields = dict(env.get("fields") or {})
        key = (fields.get("audit.stream.id"), fields.get("audit.stream.seq"))
        who = f"stream {key[0]} seq {key[1]}"
        rec = by_key.get(key)
        if rec is None:
            out.append(f"{who}: not in the verified records")
            continue
        want_attrs = {kv["key"]: decode_value(kv.get("value") or {}) for kv in rec.get("attributes") or ()}
        body = rec.get("body")
        want_body = None if body is None else _contrib_form(decode_value(body))
        if env.get("event") != want_body:
            out.append(f"{who}: event (the body) differs from the signed record")
        ns = int(rec.get("timeUnixNano") or rec.get("observedTimeUnixNano") or 0)
        t = env.get("time")
        if t is not None and round(float(t) * 1000) != (ns + 500_000) // 1_000_000:
            out.append(f"{who}: time differs from the signed record")
        if fields.pop(CONTRIB_SEVERITY_NUMBER, None) not in (rec.get("severityNumber"), None) or (
                fields.pop(CONTRIB_SEVERITY_TEXT, None) or "") != (rec.get("severityText") or ""):
            out.append(f"{who}: severity differs from the signed record")
        for k, v in _contrib_fields(want_attrs).items():
            if k not in fields:
                out.append(f"{who}: field {k} is missing")
            elif v is not None and fields[k] != v:
                out.append(f"{who}: field {k} differs from the signed record")
    return out
