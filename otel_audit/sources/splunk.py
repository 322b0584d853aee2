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
import gzip
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from otel_audit.errors import InputError
from otel_audit.otlpjson import decode_attributes
from otel_audit.verify import Report, Verifier

__all__ = [
    "SplunkReader",
    "cross_check",
    "iter_results",
    "load_results",
    "record_of",
    "verify_export",
]

OTLP_FIELD = "audit.otlp"
EVENT_NAME_FIELD = "event_name"
#: (searchable field, what it must equal in the signed record) for the cross-check
CHECKED_ATTRIBUTES = ("user.id", "audit.outcome", "audit.stream.id", "audit.stream.seq")
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
    elif "_raw" in doc or OTLP_FIELD in doc:  # a bare result
        yield where, doc
    # otherwise: messages, preview markers, an empty lastrow: nothing to read


def iter_results(doc: Any, where: str = "<splunk>") -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, result)`` for every search result of an already-decoded document."""
    yield from _results_of(doc, where)


def load_results(source: str | os.PathLike[str] | bytes, where: str | None = None
                 ) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, result)`` for every search result of a file (or its bytes), optionally gzipped."""
    if isinstance(source, bytes):
        data, name = source, where or "<bytes>"
    else:
        path = Path(source)
        name = where or str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise InputError(f"{name}: broken gzip data: {exc}") from None
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
    if text is _MISSING:
        ours = (event is not None and "audit.stream.id" in event) or "audit.stream.id" in result
        if ours:
            return None, ("an audit record without its audit.otlp field: it cannot be verified (removed at "
                          "rest, or the export left out _raw and Splunk did not extract the field)")
        return None, ""
    if not isinstance(text, str):
        return None, f"audit.otlp is a {type(text).__name__}, not the JSON text of a logRecord"
    try:
        record = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return None, f"audit.otlp is not valid JSON ({exc}); was the event truncated (TRUNCATE in props.conf)?"
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


def cross_check(result: Mapping[str, Any], record: Mapping[str, Any], where: str) -> list[str]:
    """Mismatches between a result's searchable fields and its signed record, one message each."""
    try:
        attrs = decode_attributes(record.get("attributes"))
    except ValueError as exc:
        return [f"{where}: audit.otlp has malformed attributes: {exc}"]
    sid, seq = attrs.get("audit.stream.id"), attrs.get("audit.stream.seq")
    which = f"stream {sid} seq {seq}" if sid is not None else "an unsigned record"
    event = _event_of(result)
    out: list[str] = []

    def check(name: str, expected: Any) -> None:
        if event is not None:
            actual = event.get(name, _MISSING)
            if actual is _MISSING:
                if expected is not None:
                    out.append(f"{where}: searchable field {name} is missing from _raw; the signed record has "
                               f"{expected!r} ({which})")
            elif expected is None:
                out.append(f"{where}: searchable field {name} in _raw is {actual!r} but the signed record has no "
                           f"such value ({which})")
            elif not _same(expected, actual):
                out.append(f"{where}: searchable field {name} in _raw is {actual!r} but the signed record has "
                           f"{expected!r} ({which})")
        actual = result.get(name, _MISSING)
        if actual is _MISSING:
            return  # a search need not extract every field
        if expected is None:
            out.append(f"{where}: field {name} is {actual!r} but the signed record has no such value ({which})")
        elif not _same(expected, actual):
            out.append(f"{where}: field {name} is {actual!r} but the signed record has {expected!r} ({which})")

    check(EVENT_NAME_FIELD, record.get("eventName") or None)
    for name in CHECKED_ATTRIBUTES:
        check(name, attrs.get(name))

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


# -- the reader ------------------------------------------------------------------------------------


class SplunkReader:
    """Turns Splunk search results into ``(where, OTLP/JSON logRecord)`` pairs, collecting what is wrong.

    ``mismatches``: searchable fields that disagree with the signed record (tampering at rest, or
    a Splunk transform rewriting them). ``problems``: results of ours that cannot be verified
    (``audit.otlp`` missing or cut short). ``skipped``: results that are not audit records.
    """

    def __init__(self) -> None:
        self.mismatches: list[str] = []
        self.problems: list[str] = []
        self.results = 0
        self.records = 0
        self.skipped = 0

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
            self.mismatches.extend(cross_check(result, record, where))
            yield where, record

    def records_in(self, source: Any, where: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Records of a file path, raw bytes, or an already-decoded document."""
        if isinstance(source, (str, os.PathLike, bytes)):
            return self.records_of(load_results(source, where))
        return self.records_of(iter_results(source, where or "<splunk>"))


def verify_export(sources: Iterable[Any], keyring: Any, *, allow_open: bool = False,
                  ignore_unsigned: bool = False) -> tuple[Report, SplunkReader]:
    """Verify the audit records in Splunk search exports; mismatches and unverifiable results are
    added to the report's problems, so the report is ok only when all is well."""
    reader = SplunkReader()
    verifier = Verifier(keyring, allow_open=allow_open, ignore_unsigned=ignore_unsigned)
    for src in sources:
        if isinstance(src, (str, os.PathLike)):
            verifier.report.files += 1
        for where, record in reader.records_in(src):
            verifier.add_record(record, where)
    if reader.records == 0:
        raise InputError(f"no audit records found in the Splunk results ({reader.results} results, "
                         f"{len(reader.problems)} without a readable audit.otlp)"
                         + (f"; first: {reader.problems[0]}" if reader.problems else ""))
    report = verifier.finish()
    report.problems.extend(f"splunk: {p}" for p in reader.problems)
    report.problems.extend(f"splunk: {m}" for m in reader.mismatches)
    return report, reader
