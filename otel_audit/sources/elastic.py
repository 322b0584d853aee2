"""Read audit records back from Elasticsearch search results, for the verifier.

Accepted input (a path, bytes, text, parsed JSON, or an iterable such as `helpers.scan(...)`):

* one `_search` / scroll / `search_after` response: a JSON object with `hits.hits[]._source`;
* a JSON array of such responses, or of hits;
* NDJSON: one hit or one response per line (optionally gzip-compressed);
* bare `_source` documents of the collector's elasticsearch exporter (otel mapping mode), one per
  line or as a JSON array (what `jq -c '.hits.hits[]._source'` makes of a search response).

Documents of two writers are read. Our own exporter (`otel_audit.exporters.elastic`): every hit's
`_source["audit"]["otlp"]` (or a flat `"audit.otlp"` key) holds the record's own OTLP/JSON
logRecord; it is what the verifier checks. The contrib `elasticsearch` exporter of the OpenTelemetry
Collector in `otel` mapping mode (what `collector-config/agent.yaml` ships): its documents carry the
record's parts as typed JSON (`event_name`, `@timestamp`, `severity_*`, `attributes`, `body`), from
which the logRecord is rebuilt (`otel_document_record`, see the end of this module), and the
resource in `resource.attributes`.
The searchable fields next to it may have been retyped by the cluster, so they are cross-checked
as values (a number stored as a string is the same number): every field the exporter derives from
the record (`otel_audit.siem_fields.es_record_fields`: message, log.level, event.*, user.*,
source.*, related.*, attributes.*, severity_*, trace/span ids, @timestamp ...) that `_source` holds
must say what the signed record says, and a field the record does not give is a mismatch unless the
cluster or an ingest pipeline adds it (`BACKEND_FIELDS`), it is the routing or the scope, or it is the
resource (`resource.attributes.*`, `service.*`, `host.*`): that is handed to the verifier as the
record's resource (`readers.Located`), which compares the producer identity it names with the
stream's signed checkpoints. A field left out of `_source` is not reported (a dump may be filtered).

No OpenTelemetry SDK imports: a verifier needs only the data and the public keys.
"""

from __future__ import annotations

import base64
import datetime as _dt
import itertools
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import orjson

from otel_audit import readers, siem_fields
from otel_audit.canonical import STREAM_ID, STREAM_SEQ
from otel_audit.decoding import DecodeError, decode_value
from otel_audit.decoding import loads as strict_loads
from otel_audit.errors import InputError

if TYPE_CHECKING:
    from otel_audit.keys import Keyring
    from otel_audit.verify.report import Report

__all__ = ["ElasticReader", "claims", "cross_check", "is_otel_document", "iter_hits", "otel_document_record",
           "otel_record", "record_of", "records_from_otel_documents", "verify_export"]

_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)


# -- input shapes ----------------------------------------------------------------------------------


def _documents(data: Any, name: str) -> Iterator[tuple[str, Any]]:
    """(where, parsed JSON value) of each top-level document of the input."""
    if isinstance(data, (str, os.PathLike)) and not (isinstance(data, str) and data.lstrip()[:1] in ("{", "[")):
        raw, _ = readers.read_document(data)
        yield from _documents(raw, name if name != "elasticsearch" else str(data))
        return
    if isinstance(data, str):
        data = data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw, _ = readers.read_document(bytes(data), name)
        try:
            yield name, orjson.loads(raw)
            return
        except orjson.JSONDecodeError:
            pass  # not one JSON value: NDJSON
        for n, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                yield f"{name}:{n}", orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield f"{name}:{n}", _Bad(f"not JSON ({exc})")
        return
    if isinstance(data, Mapping):
        yield name, data
        return
    if isinstance(data, Iterable):
        for n, item in enumerate(data):
            yield f"{name}[{n}]", item
        return
    raise InputError(f"{name}: cannot read a {type(data).__name__} as Elasticsearch search results")


@dataclass
class _Bad:
    why: str


def claims(doc: Any) -> bool:
    """Whether a decoded JSON value is of Elasticsearch's shape: a hit (`_source`), a search response
    (`hits.hits`), an error response, or a non-empty array of those."""
    if isinstance(doc, list):
        return bool(doc) and all(claims(item) for item in doc)
    if not isinstance(doc, Mapping):
        return False
    if "_source" in doc:
        return True
    hits = doc.get("hits")
    if isinstance(hits, Mapping) and isinstance(hits.get("hits"), list):
        return True
    if is_otel_document(doc):
        return True
    return "error" in doc and "status" in doc


def is_otel_document(source: Any) -> TypeGuard[Mapping[str, Any]]:
    """Whether a `_source` is an audit record as the contrib exporter writes it in otel mapping mode: an
    `@timestamp`, the integrity attributes under `attributes` (an object, its keys the attribute names),
    and none of what our own exporter writes (`audit.otlp`, the ECS `event.*` fields): a document of
    ours that lost its `audit.otlp` stays unverifiable, never rebuilt as something else."""
    if not isinstance(source, Mapping) or "@timestamp" not in source or "resourceLogs" in source:
        return False
    attrs = source.get("attributes")
    if not (isinstance(attrs, Mapping) and STREAM_ID in attrs):
        return False
    if any(k == "event" or k.startswith("event.") for k in source):
        return False
    return not _lookup(source, "audit.otlp")[0]


def iter_hits(data: Any, *, name: str = "elasticsearch") -> Iterator[tuple[str, Any]]:
    """(where, hit) for every hit of the input; a value that is neither a hit nor a response gives _Bad."""
    for where, doc in _documents(data, name):
        yield from _hits_of(doc, where)


def _hits_of(doc: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(doc, list):
        for n, item in enumerate(doc):
            yield from _hits_of(item, f"{where}[{n}]")
        return
    if isinstance(doc, Mapping):
        if "_source" in doc:
            yield where, doc
            return
        if is_otel_document(doc):
            yield where, {"_source": doc}
            return
        hits = doc.get("hits")
        if isinstance(hits, Mapping) and isinstance(hits.get("hits"), list):
            for n, hit in enumerate(hits["hits"]):
                yield f"{where} hit {n}", hit
            return
        if "error" in doc:
            yield where, _Bad(f"an error response, not search results: {str(doc.get('error'))[:200]}")
            return
    if isinstance(doc, _Bad):
        yield where, doc
        return
    yield where, _Bad("neither a search response (hits.hits) nor a hit (_source)")


# -- one hit ---------------------------------------------------------------------------------------


def _lookup(node: Any, dotted: str) -> tuple[bool, Any]:
    """A field by its dotted name, whether stored nested ({"a": {"b": 1}}) or flat ({"a.b": 1}) or mixed."""
    if not isinstance(node, Mapping):
        return False, None
    if dotted in node:
        return True, node[dotted]
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:i])
        if head in node:
            found, value = _lookup(node[head], ".".join(parts[i:]))
            if found:
                return True, value
    return False, None


def record_of(hit: Mapping[str, Any]) -> dict[str, Any]:
    """The OTLP/JSON logRecord embedded in a hit's `audit.otlp`; ValueError saying why when there is none."""
    source = hit.get("_source")
    if not isinstance(source, Mapping):
        raise ValueError("the hit has no _source (was it fetched with _source: false?)")
    found, text = _lookup(source, "audit.otlp")
    if not found:
        raise ValueError("no audit.otlp field: not a document written by otel-audit, or the field was removed")
    if isinstance(text, list) and len(text) == 1:
        text = text[0]
    if not isinstance(text, str):
        raise ValueError(f"audit.otlp is a {type(text).__name__}, not the text of an OTLP/JSON logRecord")
    try:
        rec = strict_loads(text)  # a member name twice is refused too
    except DecodeError as exc:
        if exc.rule == "not-json":
            raise ValueError(f"audit.otlp is not JSON ({exc.detail})") from None
        raise ValueError(f"audit.otlp is not strict OTLP/JSON: {exc}") from None
    if not isinstance(rec, dict):
        raise ValueError("audit.otlp is not a JSON object")
    return rec


def _one(value: Any) -> Any:
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _text(value: Any) -> str:
    value = _one(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _same_number(a: Any, b: Any) -> bool:
    try:
        return float(_text(a)) == float(_text(b))
    except ValueError:
        return False


def _iso_ns(text: str) -> tuple[int, int] | None:
    """(nanoseconds since the epoch, fraction digits given) of an RFC 3339 / ISO 8601 date."""
    m = _ISO.match(text.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        base = _dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), tzinfo=_dt.timezone.utc)
    except ValueError:
        return None
    offset = 0
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    seconds = int((base - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)).total_seconds()) - offset
    frac = frac or ""
    return seconds * 1_000_000_000 + int((frac + "0" * 9)[:9]), len(frac)


def _timestamp_matches(value: Any, ns: int) -> bool:
    value = _one(value)
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value)):
        # epoch_millis, as a date field may hold it
        return bool(int(float(value)) == ns // 1_000_000)
    if not isinstance(value, str):
        return False
    parsed = _iso_ns(value)
    if parsed is None:
        return False
    got, digits = parsed
    unit = int(10 ** (9 - digits))
    return got == ns // unit * unit


#: hit keys next to `_source` that Elasticsearch adds (never derived from the record)
HIT_KEYS = frozenset({"_index", "_id", "_score", "_seq_no", "_primary_term", "_version", "_routing", "_ignored",
                      "_nested", "_shard", "_node", "_explanation", "sort", "fields", "highlight", "inner_hits",
                      "matched_queries", "_source"})
#: `_source` fields an ingest pipeline or the cluster may add or that follow the routing, not the record:
#: exact names, then prefixes (`event.ingested` by the Fleet final pipeline, `ecs.version`, the
#: geoip / user_agent processors' outputs, Elastic Agent metadata ...)
BACKEND_FIELDS = frozenset({"event.ingested", "event.dataset", "event.module", "event.original", "ecs.version",
                            "tags", "user_agent.name", "user_agent.version"})
_BACKEND_PREFIXES = ("data_stream.", "agent.", "elastic_agent.", "input.", "ecs.", "scope.", "source.geo.",
                     "source.as.", "user_agent.os.", "user_agent.device.", "labels.")
#: the resource as the document names it: unsigned, handed to the verifier as the record's resource
_RESOURCE_PREFIX = "resource.attributes."
_RESOURCE_ROOTS = ("service.", "host.")
_TIMES = ("@timestamp", "event.created")
_MISSING: Any = object()


def _leaves(node: Any, prefix: str, out: dict[str, Any]) -> None:
    """The derived document's fields by dotted path; a list or a scalar is a leaf."""
    if isinstance(node, Mapping):
        for k, v in node.items():
            _leaves(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = node


def _values(node: Any, prefix: str, out: dict[str, list[Any]]) -> None:
    """A `_source`'s fields by dotted path, however stored (nested, dotted, mixed), as lists of values:
    the way Elasticsearch indexes them (two spellings of one path make one multi-valued field)."""
    if isinstance(node, Mapping):
        if not node and prefix:
            out.setdefault(prefix, [])
        for k, v in node.items():
            _values(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(node, list):
        have = out.setdefault(prefix, [])
        for v in node:
            if isinstance(v, (Mapping, list)):
                _values(v, prefix, out)
            else:
                have.append(v)
    else:
        out.setdefault(prefix, []).append(node)


def _same_scalar(want: Any, got: Any) -> bool:
    if isinstance(got, (Mapping, list)) or got is None:
        return False
    if isinstance(want, bool) or isinstance(got, bool):
        return _text(want) == _text(got)
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        return _same_number(want, got)  # a number the cluster stores as a string is the same number
    return _text(want) == _text(got)


def _same_values(want: Any, got: list[Any]) -> bool:
    wanted = want if isinstance(want, list) else [want]
    return len(wanted) == len(got) and all(_same_scalar(w, g) for w, g in zip(wanted, got, strict=True))


def _shown(values: Any) -> Any:
    """A field's value(s) for a message: a scalar as its text, several as a list of texts."""
    if isinstance(values, list):
        return _text(values[0]) if len(values) == 1 else [_text(v) for v in values]
    return _text(values)


def _resource_value(key: str, value: Any) -> Any:
    """A resource field as the signed producer line holds it (process.pid an integer)."""
    if key == "process.pid" and isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def cross_check(hit: Mapping[str, Any], record: Mapping[str, Any],
                resource: dict[str, Any] | None = None) -> list[str]:
    """How the hit's searchable fields differ from its signed record (messages without a location).

    Every field the exporter derives from the record (`otel_audit.siem_fields.es_record_fields`) that
    `_source` holds must have the value the signed record gives (a number stored as a string is the same
    number; ``@timestamp`` and ``event.created`` at any precision the date type keeps); a field the
    record does not give is a mismatch unless it is the routing, the scope, a field the cluster or an
    ingest pipeline adds (`BACKEND_FIELDS`), or the resource: ``resource.attributes.*``, ``service.*``
    and ``host.*``, which go into `resource` for the verifier to compare with the stream's signed
    checkpoints (``service.name`` / ``host.name`` must also agree with ``resource.attributes``).
    """
    source = hit.get("_source") or {}
    out: list[str] = []
    try:
        derived, attrs = siem_fields.es_record_fields(record)
    except DecodeError as exc:
        return [f"audit.otlp is not strict OTLP/JSON: {exc}"]
    stream, seq = attrs.get(STREAM_ID), attrs.get(STREAM_SEQ)
    who = f" (stream {stream} seq {seq})" if stream is not None else " (an unsigned record)"
    res: dict[str, Any] = {} if resource is None else resource
    want: dict[str, Any] = {}
    _leaves(derived, "", want)
    got: dict[str, list[Any]] = {}
    _values(source, "", got)
    got.pop(siem_fields.ES_OTLP, None)
    ns = int(record.get("timeUnixNano") or 0) or int(record.get("observedTimeUnixNano") or 0)
    observed = int(record.get("observedTimeUnixNano") or 0)

    for path, expected in want.items():
        values = got.pop(path, _MISSING)
        if values is _MISSING:
            continue  # a hit's `_source` may be filtered: only what it shows can be searched, and is checked
        if path in _TIMES:
            when = ns if path == "@timestamp" else observed
            if len(values) != 1 or not _timestamp_matches(values[0], when):
                out.append(f"searchable field {path} is {_shown(values)!r} but the signed record says "
                           f"{expected!r}{who}")
            continue
        if not _same_values(expected, values):
            out.append(f"searchable field {path} is {_shown(values)!r} but the signed record has "
                       f"{_shown(expected)!r}{who}")

    named: dict[str, Any] = {}
    for path, values in got.items():
        if path in BACKEND_FIELDS or path.startswith(_BACKEND_PREFIXES):
            continue
        if path.startswith(_RESOURCE_PREFIX):
            key = path[len(_RESOURCE_PREFIX):]
            res[key] = _resource_value(key, _one(values))
        elif path.startswith(_RESOURCE_ROOTS):
            named[path] = _resource_value(path, _one(values))
        else:
            out.append(f"searchable field {path} is {_shown(values)!r} but the signed record has no such "
                       f"value{who}")
    for key, value in named.items():
        if key in res and not _same_scalar(res[key], value):
            out.append(f"searchable field {key} is {_shown(value)!r} but {_RESOURCE_PREFIX}{key} is "
                       f"{_shown(res[key])!r}{who}")
        res[key] = value

    dataset = got.get("data_stream.dataset")
    event_dataset = got.get("event.dataset")
    if dataset is not None and event_dataset is not None and not _same_values(_shown(dataset), event_dataset):
        out.append(f"searchable field event.dataset is {_shown(event_dataset)!r} but data_stream.dataset is "
                   f"{_shown(dataset)!r}{who}")

    aid = derived["event"].get("id")
    doc_id = hit.get("_id")
    if aid is not None and doc_id is not None and doc_id != aid:
        out.append(f"searchable field _id is {doc_id!r} but the signed record says {aid!r}{who}")
    return out


# -- the reader ------------------------------------------------------------------------------------


def _label(where: str, hit: Mapping[str, Any]) -> str:
    index, doc_id = hit.get("_index"), hit.get("_id")
    if index is None and doc_id is None:
        return where
    return f"{where} [{index}/{doc_id}]"


_AUDIT_ID = re.compile(r"^[0-9a-f]{32}-\d+$")


def _looks_ours(hit: Mapping[str, Any]) -> bool:
    """A hit of an otel-audit document (integrity attributes or the event id the exporter sets)."""
    source = hit.get("_source")
    for name in (f"attributes.{STREAM_ID}", "event.id"):
        found, value = _lookup(source, name)
        if found and value is not None and (name != "event.id" or _AUDIT_ID.match(_text(value))):
            return True
    return False



class ElasticReader:
    """Turns Elasticsearch hits into ``(where, OTLP/JSON logRecord)`` pairs, collecting what is wrong.

    ``mismatches``: searchable fields that disagree with the signed record (tampering at rest, or
    an ingest pipeline rewriting them). ``problems``: hits of ours that cannot be verified
    (``audit.otlp`` missing or broken, input that is not search results). ``skipped``: hits that
    are not audit records. A `otel_audit.readers.Reader`.
    """

    kind = "elastic"
    label = "elasticsearch"

    def __init__(self) -> None:
        self.mismatches: list[str] = []
        self.problems: list[str] = []
        self.hits = 0
        self.records = 0
        #: of `records`, those rebuilt from the contrib exporter's otel-mode documents
        self.otel_documents = 0
        self.skipped = 0
        self._last_resource: dict[str, Any] = {}

    def records_of(self, hits: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
        for where, hit in hits:
            self.hits += 1
            if isinstance(hit, _Bad):
                self.problems.append(f"{where}: {hit.why}")
                continue
            if not isinstance(hit, Mapping):
                self.problems.append(f"{where}: a hit must be a JSON object")
                continue
            label = _label(where, hit)
            source = hit.get("_source")
            if is_otel_document(source):
                self.records += 1
                self.otel_documents += 1
                try:
                    rec = otel_record(source)
                except (ValueError, TypeError) as exc:
                    self.problems.append(f"{label}: an otel-mode document that cannot be read as a record: {exc}")
                    continue
                res = source.get("resource")
                attrs = res.get("attributes") if isinstance(res, Mapping) else None
                otel_resource = {str(k): _resource_value(str(k), v) for k, v in attrs.items()} \
                    if isinstance(attrs, Mapping) else {}
                yield readers.Located(label, rec, self._same_resource(otel_resource))
                continue
            try:
                rec = record_of(hit)
            except ValueError as exc:
                if _looks_ours(hit):
                    self.problems.append(f"{label}: {exc}; it cannot be verified")
                else:
                    self.skipped += 1
                continue
            self.records += 1
            resource: dict[str, Any] = {}
            self.mismatches.extend(f"{label}: {msg}" for msg in cross_check(hit, rec, resource))
            yield readers.Located(label, rec, self._same_resource(resource))

    def _same_resource(self, resource: dict[str, Any]) -> dict[str, Any]:
        """One object for equal resources in a row (the verifier reads a resource object's identity once)."""
        if resource != self._last_resource:
            self._last_resource = resource
        return self._last_resource

    def records_in(self, source: Any, where: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Records of a file path, raw bytes or text, parsed JSON, or an iterable of hits or responses."""
        return self.records_of(iter_hits(source, name=where or "elasticsearch"))

    def claims(self, doc: Any) -> bool:
        return claims(doc)

    def claims_text(self, first_line: bytes) -> bool:
        return False  # Elasticsearch answers in JSON


def verify_export(sources: Iterable[Any], keyring: Keyring, *, allow_open: bool = False,
                  ignore_unsigned: bool = False, partial: bool = False) -> tuple[Report, ElasticReader]:
    """Verify the audit records in Elasticsearch search results or dumps; mismatches and unverifiable
    hits are added to the report's problems, so the report is ok only when all is well.

    Each source is anything `ElasticReader.records_in` takes; the hits of `helpers.scan(...)`
    can be passed directly as `sources`.
    """
    reader = ElasticReader()
    report = readers.verify_export(
        reader, sources, keyring,
        what=lambda: f"the Elasticsearch data ({reader.hits} hits",
        is_file=lambda src: isinstance(src, os.PathLike)
        or (isinstance(src, str) and src.lstrip()[:1] not in ("{", "[")),
        allow_open=allow_open, ignore_unsigned=ignore_unsigned, partial=partial)
    return report, reader


# -- documents of the collector's own elasticsearch exporter (mapping mode "otel") ----------------
#
# The contrib `elasticsearch` exporter (v0.147.0, `mapping: {mode: otel}`) writes no `audit.otlp`;
# its document carries the record's parts in typed JSON: `event_name`, `@timestamp` as the string
# "<milliseconds>.<remaining nanoseconds, unpadded>", `severity_text`, `severity_number` (both left
# out when empty/0), `attributes` (a JSON object with each value in its own type: a double keeps a
# radix point, a map stays a nested object, a list a list) and `body.text` (a scalar) or
# `body.structured` (a map, or a list wrapped as {"value": [...]}). Two things are not told apart:
#   * bytes are written as lower-case hex strings, like a string of hex digits;
#   * a list body is wrapped as {"value": [...]}, like a map body with one key "value".
# `records_from_otel_documents` rebuilds the OTLP/JSON logRecord and resolves those two ambiguities
# only where the record's own chained digest (audit.integrity.prev/digest, both carried) confirms
# one reading; where none does, the plain reading (string / map) is kept and the verifier reports the
# record as modified. A digest match is a proof (SHA-256), not a guess that could pass tampering.

_HEX = re.compile(r"^(?:[0-9a-f]{2})+$")
_MAX_READINGS = 256


def _anyvalue(value: Any, as_bytes: bool = False) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        if as_bytes:
            return {"bytesValue": base64.b64encode(bytes.fromhex(value)).decode("ascii")}
        return {"stringValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [_anyvalue(v) for v in value]}}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": [{"key": k, "value": _anyvalue(v)} for k, v in value.items()]}}
    raise ValueError(f"a {type(value).__name__} is not a JSON value")


def _otel_timestamp_ns(value: Any) -> int:
    text = _text(value)
    ms, _, rest = text.partition(".")
    return int(ms) * 1_000_000 + (int(rest) if rest else 0)


def otel_document_record(source: Mapping[str, Any], *, bytes_keys: frozenset[str] = frozenset(),
                         body_bytes: bool = False, body_list: bool = False) -> dict[str, Any]:
    """One reading of an otel-mode document as an OTLP/JSON logRecord (see above for the choices)."""
    rec: dict[str, Any] = {}
    found, ts = _lookup(source, "@timestamp")
    if found and ts is not None:
        rec["timeUnixNano"] = str(_otel_timestamp_ns(ts))
    if source.get("severity_number"):
        rec["severityNumber"] = int(source["severity_number"])
    if source.get("severity_text"):
        rec["severityText"] = str(source["severity_text"])
    if source.get("event_name"):
        rec["eventName"] = str(source["event_name"])
    attrs = source.get("attributes") or {}
    rec["attributes"] = [{"key": k, "value": _anyvalue(v, k in bytes_keys)} for k, v in attrs.items()]
    body = source.get("body")
    if isinstance(body, Mapping):
        if "text" in body:
            rec["body"] = _anyvalue(body["text"], body_bytes)
        elif "structured" in body:
            s = body["structured"]
            if body_list and isinstance(s, Mapping) and list(s) == ["value"] and isinstance(s["value"], list):
                rec["body"] = _anyvalue(s["value"])
            else:
                rec["body"] = _anyvalue(s)
    return rec


def _digest_matches(rec: Mapping[str, Any]) -> bool:
    from otel_audit import canonical
    from otel_audit.canonical import DIGEST, PREV_DIGEST

    attrs = {kv["key"]: decode_value(kv["value"]) for kv in rec.get("attributes") or ()}
    try:
        stream, seq = attrs[STREAM_ID], attrs[STREAM_SEQ]
        prev, digest = bytes.fromhex(attrs[PREV_DIGEST]), bytes.fromhex(attrs[DIGEST])
        body = rec.get("body")
        content = canonical.canonical_bytes(
            stream, seq, rec.get("eventName", ""), int(rec.get("timeUnixNano") or 0),
            int(rec.get("severityNumber") or 0), rec.get("severityText", ""),
            None if body is None else decode_value(body), attrs)
    except (KeyError, TypeError, ValueError):
        return False
    return canonical.record_digest(prev, content) == digest


def otel_record(source: Mapping[str, Any]) -> dict[str, Any]:
    """The OTLP/JSON logRecord of one otel-mode `_source`: the plain reading, or the first other reading
    (bytes for hex strings, a list body) that the record's own chained digest confirms; the plain one
    when none does (the verifier then reports the record as modified)."""
    plain = otel_document_record(source)
    if _digest_matches(plain):
        return plain
    readings = itertools.islice(_other_readings(source), _MAX_READINGS)
    return next((c for c in readings if _digest_matches(c)), plain)


def records_from_otel_documents(sources: Iterable[Mapping[str, Any]], *, name: str = "elasticsearch"
                                ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, OTLP/JSON logRecord) for each `_source` written by the contrib exporter in otel mode.

    Accepts `_source` objects or hits (`{"_id":..., "_source": {...}}`). Ambiguous hex strings (bytes?)
    and a {"value": [...]} body (a list?) are read the way the record's own digest confirms.
    """
    for n, item in enumerate(sources):
        source = item.get("_source", item) if isinstance(item, Mapping) else item
        where = f"{name}[{n}]" + (f" [{item.get('_id')}]" if isinstance(item, Mapping) and "_id" in item else "")
        if not isinstance(source, Mapping):
            raise InputError(f"{where}: not a JSON object")
        yield where, otel_record(source)


def _other_readings(source: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The readings of an otel-mode document other than the plain one, fewest reinterpretations first."""
    attrs = source.get("attributes") or {}
    hexy = [k for k, v in attrs.items() if isinstance(v, str) and _HEX.match(v)
            and k not in (STREAM_ID, "audit.integrity.prev", "audit.integrity.digest")]
    given = source.get("body")
    body: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
    body_opts = [(False, False)]
    if isinstance(body.get("text"), str) and _HEX.match(body["text"]):
        body_opts.append((True, False))
    structured = body.get("structured")
    if isinstance(structured, Mapping) and list(structured) == ["value"] and isinstance(structured["value"], list):
        body_opts.append((False, True))
    for r in range(len(hexy) + 1):
        for keys in itertools.combinations(hexy, r):
            for as_bytes, as_list in body_opts:
                if keys or as_bytes or as_list:
                    yield otel_document_record(source, bytes_keys=frozenset(keys), body_bytes=as_bytes,
                                               body_list=as_list)
