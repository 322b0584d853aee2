"""The searchable fields a SIEM exporter derives from a signed record, as one pure mapping.

The Splunk HEC exporter writes them from a record's OTLP/JSON logRecord with these functions, and
the Splunk reader (`otel_audit.sources.splunk`) derives them again from ``audit.otlp`` and compares:
the writer and the checker cannot drift apart. What a record does not sign (its resource) enters the
mapping as a separate input: the reader takes it from the export, hands the producer identity it
names to the verifier (which compares it with the stream's signed checkpoints), and checks that no
field only a record can give was added.

No OpenTelemetry SDK imports: a verifier needs only the data and the public keys.
"""

from __future__ import annotations

import base64
import datetime as _dt
import ipaddress
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson

from otel_audit.canonical import STREAM_ID, STREAM_SEQ
from otel_audit.catalog import EVENTS, OUTCOMES
from otel_audit.decoding import decode_log_record
from otel_audit.otlpjson import plain_json

__all__ = [
    "DD_HOST_FALLBACK",
    "DD_PREVIEW_CHARS",
    "DD_PREVIEW_NOTE",
    "DD_RESERVED",
    "DD_STANDARD_ALIASES",
    "ES_OTLP",
    "ES_RESOURCE_FIELDS",
    "SPLUNK_EVENT_NAME",
    "SPLUNK_OTLP",
    "SPLUNK_SEVERITY_NUMBER",
    "SPLUNK_SEVERITY_TEXT",
    "dd_attribute_fields",
    "dd_flatten",
    "dd_jsonable",
    "dd_message",
    "dd_normalize_tag",
    "dd_preview",
    "dd_record_fields",
    "dd_scalar",
    "dd_status_of",
    "ecs_fields",
    "es_iso",
    "es_jsonable",
    "es_record_fields",
    "es_resource_fields",
    "es_scalar",
    "es_searchable",
    "es_text",
    "splunk_flatten",
    "splunk_merge",
    "splunk_record_fields",
]

SPLUNK_EVENT_NAME = "event_name"
SPLUNK_OTLP = "audit.otlp"
SPLUNK_SEVERITY_TEXT = "otel.log.severity.text"
SPLUNK_SEVERITY_NUMBER = "otel.log.severity.number"
_MAX_DEPTH = 10
_PLAIN = frozenset({str, int, bool})


def _scalar(value: Any) -> Any:
    """A JSON scalar: bytes as base64, the special doubles as strings, anything nested as JSON text."""
    if isinstance(value, (str, bool, int, float, bytes, bytearray, memoryview)):
        return plain_json(value)
    return orjson.dumps(plain_json(value)).decode()


def _flatten(prefix: str, value: Any, out: dict[str, Any], depth: int = 0) -> None:
    """Maps become dotted keys and lists keep their scalar items, as the contrib exporter does;
    a list holding lists or maps becomes its JSON text."""
    if value is None:
        return
    if isinstance(value, Mapping):
        if depth >= _MAX_DEPTH:
            out[prefix] = orjson.dumps(plain_json(value)).decode()
            return
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (Mapping, list, tuple)) for v in value):
            out[prefix] = orjson.dumps(plain_json(value)).decode()
        else:
            out[prefix] = [_scalar(v) for v in value if v is not None]
        return
    out[prefix] = _scalar(value)


def splunk_flatten(attrs: Mapping[str, Any], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Attributes (decoded values) as HEC event fields: dotted keys, JSON values; keys in `skip` left out."""
    flat: dict[str, Any] = {}
    for k, v in attrs.items():
        if type(v) in _PLAIN:  # nearly every attribute: no flattening to do
            flat[k] = v
        elif k not in skip:
            _flatten(k, v, flat)
    for k in skip.intersection(flat):
        del flat[k]
    return flat


def splunk_record_fields(rec: Mapping[str, Any], *, severity_text: str = SPLUNK_SEVERITY_TEXT,
                         severity_number: str = SPLUNK_SEVERITY_NUMBER, skip: frozenset[str] = frozenset()
                         ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(the header fields, the flattened record attributes, the decoded attributes) of an OTLP/JSON logRecord.

    The header: ``event_name``, the severity text and number (under the exporter's
    ``otel_to_hec_fields`` names), ``body`` (plain JSON), ``trace_id``, ``span_id``; each only when the
    record has it. Raises `otel_audit.decoding.DecodeError` for a record that is not strict OTLP/JSON.
    """
    f = decode_log_record(rec)
    head: dict[str, Any] = {}
    if f[0]:
        head[SPLUNK_EVENT_NAME] = f[0]
    if f[3]:
        head[severity_text] = f[3]
    if f[2]:
        head[severity_number] = f[2]
    if "body" in rec and f[4] is not None:
        head["body"] = plain_json(f[4])
    if f[8]:
        head["trace_id"] = f[8]
    if f[9]:
        head["span_id"] = f[9]
    return head, splunk_flatten(f[5], skip), f[5]


#: Where a record or resource attribute goes when its name is one the SIEM itself reads (Splunk's
#: ``body``, Datadog's ``host``): ``otel_audit.attr.<name>``, in this product's own namespace (see
#: docs/naming.md); earlier versions wrote ``otel.attr.<name>``, in the namespace OpenTelemetry
#: reserves, which the readers still accept.
SHADOWED_PREFIX = "otel_audit.attr."
LEGACY_SHADOWED_PREFIX = "otel.attr."


def splunk_merge(head: Mapping[str, Any], resource_flat: Mapping[str, Any], record_flat: Mapping[str, Any],
                 reserved: frozenset[str]) -> dict[str, Any]:
    """The HEC event (without ``audit.otlp``): the header, then the resource's and the record's flattened
    attributes (the record's win), a name the header uses moved to ``otel_audit.attr.<name>``."""
    event = dict(head)
    flat = {**resource_flat, **record_flat}
    for k in reserved.intersection(flat):
        flat[f"{SHADOWED_PREFIX}{k}"] = flat.pop(k)
    event.update(flat)
    return event


# -- Elasticsearch (exporters/elastic.py, otel_audit/sources/elastic.py) ---------------------------

ES_OTLP = "audit.otlp"
_ES_NATIVE = frozenset({str, int, bool})
_ES_STAMPS: dict[int, str] = {}  # seconds -> "YYYY-MM-DDTHH:MM:SS": records come in bursts of the same second


def es_iso(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds: Elasticsearch's date and date_nanos both parse it."""
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = _ES_STAMPS.get(seconds)
    if stamp is None:
        if len(_ES_STAMPS) > 256:
            _ES_STAMPS.clear()
        stamp = _ES_STAMPS[seconds] = _dt.datetime.fromtimestamp(seconds, _dt.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def es_jsonable(value: Any) -> Any:
    """A value as plain JSON: bytes as base64, the special doubles as strings."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): es_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [es_jsonable(v) for v in value]
    return value


def es_scalar(value: Any) -> Any:
    """A searchable form of one value that never breaks a mapping: JSON scalars stay, the rest is text."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return orjson.dumps(es_jsonable(value)).decode()


def es_searchable(value: Any) -> Any:
    """An attribute value as a document field: a list of same-typed scalars stays a list (an ES array)."""
    if type(value) in _ES_NATIVE:
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            return []
        types = {type(v) for v in value}
        if len(types) == 1 and types <= {str, int, bool} or types == {float}:
            return [es_scalar(v) for v in value]
        return orjson.dumps(es_jsonable(value)).decode()
    return es_scalar(value)


def es_text(value: Any) -> str | None:
    """A keyword-able string of a scalar attribute, or None."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, (bool, int, float)):
        return str(value)
    return None


def _es_ip(text: str) -> str | None:
    candidate = text.strip()
    if candidate.startswith("[") and "]" in candidate:  # [v6]:port
        candidate = candidate[1:candidate.index("]")]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def ecs_fields(event_name: str | None, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The ECS fields of an audit record, from its event name, the catalog and its attributes."""
    event: dict[str, Any] = {"kind": "event"}
    spec = EVENTS.get(event_name or "")
    if spec is not None:
        event["category"] = list(spec.ecs_category)
        event["type"] = list(spec.ecs_type)
    if event_name:
        event["action"] = event_name
    outcome = attributes.get("audit.outcome")
    if outcome in OUTCOMES:
        event["outcome"] = outcome
    reason = es_text(attributes.get("audit.reason"))
    if reason:
        event["reason"] = reason
    out: dict[str, Any] = {"event": event}

    user: dict[str, str] = {}
    related_users: list[str] = []
    for attr, key in (("user.id", "id"), ("user.name", "name"), ("user.email", "email")):
        text = es_text(attributes.get(attr))
        if text:
            user[key] = text
            if key != "email":
                related_users.append(text)
    if user:
        out["user"] = user
    actor = es_text(attributes.get("audit.actor.id"))
    if actor:
        related_users.append(actor)

    related: dict[str, list[str]] = {}
    address = es_text(attributes.get("client.address"))
    if address:
        ip = _es_ip(address)
        source: dict[str, str] = {"address": address}
        if ip:
            source["ip"] = ip
            related["ip"] = [ip]
        else:
            source["domain"] = address
        out["source"] = source
    if related_users:
        related["user"] = list(dict.fromkeys(related_users))
    if related:
        out["related"] = related

    # Semantic-convention names that ECS spells the same way.
    method = es_text(attributes.get("http.request.method"))
    if method:
        out["http"] = {"request": {"method": method}}
    path = es_text(attributes.get("url.path"))
    if path:
        out["url"] = {"path": path}
    agent = es_text(attributes.get("user_agent.original"))
    if agent:
        out["user_agent"] = {"original": agent}
    error = es_text(attributes.get("error.type"))
    if error:
        out["error"] = {"type": error}
    return out


def _es_audit_id(attributes: Mapping[str, Any]) -> str | None:
    stream = attributes.get(STREAM_ID)
    seq = attributes.get(STREAM_SEQ)
    if isinstance(stream, str) and stream and type(seq) is int and seq >= 0:
        return f"{stream}-{seq}"
    return None


def es_record_fields(rec: Mapping[str, Any], *, now_ns: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the document fields derived from the record, its decoded attributes) of an OTLP/JSON logRecord.

    The fields: ``@timestamp`` (the record's time, else its observed time, else `now_ns`; absent when
    none is known), the ECS fields (`ecs_fields`), ``event.id`` (the audit id), ``event.created`` (the
    observed time), ``event.severity``, ``log.level``, ``message`` (the body: a string, else its JSON
    text), ``trace.id``, ``span.id``, ``attributes.*`` (`es_searchable`), ``severity_text``,
    ``severity_number``, ``event_name``; each only when the record has it. Raises
    `otel_audit.decoding.DecodeError` for a record that is not strict OTLP/JSON.
    """
    f = decode_log_record(rec)
    event_name, t, sev, sev_text, body, attrs, observed = f[0], f[1], f[2], f[3], f[4], f[5], f[6]
    doc: dict[str, Any] = {}
    ns = t or observed or now_ns
    if ns:
        doc["@timestamp"] = es_iso(ns)
    doc.update(ecs_fields(event_name, attrs))
    event = doc["event"]
    aid = _es_audit_id(attrs)
    if aid:
        event["id"] = aid
    if observed:
        event["created"] = es_iso(observed)
    if sev:
        event["severity"] = sev
    if sev_text:
        doc["log"] = {"level": sev_text}
    if "body" in rec and body is not None:
        doc["message"] = body if isinstance(body, str) else orjson.dumps(es_jsonable(body)).decode()
    if f[8]:
        doc["trace"] = {"id": f[8]}
    if f[9]:
        doc["span"] = {"id": f[9]}
    doc["attributes"] = {k: es_searchable(v) for k, v in attrs.items()}
    if sev_text:
        doc["severity_text"] = sev_text
    if sev:
        doc["severity_number"] = sev
    if event_name:
        doc["event_name"] = event_name
    return doc, attrs


#: the resource attributes the Elasticsearch exporter also writes as ECS fields: (attribute, field, key)
ES_RESOURCE_FIELDS = (("service.name", "service", "name"), ("host.name", "host", "name"))


def es_resource_fields(resource_attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The document fields of a resource: ``service.name``, ``host.name`` and ``resource.attributes.*``."""
    out: dict[str, Any] = {}
    for attr, field, key in ES_RESOURCE_FIELDS:
        text = es_text(resource_attrs.get(attr))
        if text:
            out[field] = {key: text}
    if resource_attrs:
        out["resource"] = {"attributes": {k: es_searchable(v) for k, v in resource_attrs.items()}}
    return out


# -- Datadog (exporters/datadog.py, otel_audit/sources/datadog.py) ---------------------------------

#: Keys Datadog's preprocessing reads as the log's host, service, status, message, date or trace: a record
#: attribute of that name would silently become one of them, so it travels as "otel_audit.attr.<name>" instead.
#: Our own added keys are reserved for the same reason.
DD_RESERVED = frozenset({
    "host", "hostname", "syslog.hostname", "service", "syslog.appname", "dd.service",
    "status", "severity", "level", "syslog.severity", "message", "msg", "log",
    "timestamp", "@timestamp", "_timestamp", "Timestamp", "eventTime", "date", "published_date",
    "syslog.timestamp", "source", "ddsource", "ddtags", "trace_id", "dd.trace_id", "dd.span_id",
    "evt.name", "evt.outcome", "usr.id", "network.client.ip", "audit.otlp",
    "otel.timestamp", "otel.severity_text", "otel.severity_number", "otel.trace_id", "otel.span_id",
    "otel_audit.restamped", "otel_audit.shrunk", "otel_audit.host_fallback",
})
#: set (true) on an entry whose ``hostname`` is the exporter's fallback: its resource names no host
DD_HOST_FALLBACK = "otel_audit.host_fallback"
#: Record attributes copied to Datadog standard attributes, so Datadog's own views and Cloud SIEM rules find them.
DD_STANDARD_ALIASES: Mapping[str, str] = {
    "audit.outcome": "evt.outcome",
    "user.id": "usr.id",
    "client.address": "network.client.ip",
}
DD_PREVIEW_CHARS = 2048
DD_PREVIEW_NOTE = " [cut by otel-audit: the full body is in audit.otlp]"
_DD_MAX_DEPTH = 10  # nested maps are flattened this deep, as the contrib exporter does
_DD_TAG_BAD = re.compile(r"[^a-z0-9_:./-]")


def dd_normalize_tag(tag: str) -> str:
    """A tag as Datadog stores it: lower case, disallowed characters as '_', at most 200 characters."""
    return _DD_TAG_BAD.sub("_", tag.lower())[:200]


def dd_status_of(severity_number: int, severity_text: str = "") -> str:
    """The Datadog status of an OTel severity, by the inverse of the OTel data model's syslog mapping.

    1-8 (TRACE, DEBUG) debug; 9 info; 10-12 (INFO2-4) notice; 13-16 warning; 17 error;
    18 critical; 19-20 alert; 21-24 (FATAL) emergency. With no severity number the severity
    text is passed on for Datadog's status remapper, else ``info``.
    """
    n = severity_number
    if n <= 0:
        return severity_text.strip().lower() if severity_text and severity_text.strip() else "info"
    if n <= 8:
        return "debug"
    if n == 9:
        return "info"
    if n <= 12:
        return "notice"
    if n <= 16:
        return "warning"
    if n == 17:
        return "error"
    if n == 18:
        return "critical"
    if n <= 20:
        return "alert"
    return "emergency"


def dd_scalar(value: Any) -> Any:
    """A JSON value Datadog can index: bytes as base64, special doubles as strings."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return orjson.dumps(dd_jsonable(value)).decode()


def dd_jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): dd_jsonable(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (list, tuple)):
        return [dd_jsonable(v) for v in value]
    if isinstance(value, float):
        return dd_scalar(value)
    return value


def dd_flatten(prefix: str, value: Any, out: dict[str, Any], depth: int = 0) -> None:
    """Maps become dotted keys (as the contrib exporter does, to depth 10); lists keep scalar items."""
    if value is None:
        return
    if isinstance(value, Mapping):
        if depth >= _DD_MAX_DEPTH:
            out[prefix] = orjson.dumps(dd_jsonable(value)).decode()
            return
        for k, v in value.items():
            dd_flatten(f"{prefix}.{k}", v, out, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        out[prefix] = [dd_scalar(v) if not isinstance(v, (Mapping, list, tuple)) else
                       orjson.dumps(dd_jsonable(v)).decode() for v in value if v is not None]
        return
    out[prefix] = dd_scalar(value)


def dd_message(body: Any) -> str:
    """The ``message`` of a body: a string as it is, anything else as JSON text, none as ""."""
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    if isinstance(body, (Mapping, list, tuple)):
        return orjson.dumps(dd_jsonable(body)).decode()
    value = dd_scalar(body)
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def dd_preview(message: str) -> str:
    """The ``message`` of a shrunk entry (one over Datadog's 1 MB log limit)."""
    return message[:DD_PREVIEW_CHARS] + DD_PREVIEW_NOTE if len(message) > DD_PREVIEW_CHARS else message


def dd_attribute_fields(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """A record's attributes as Datadog entry fields: flattened, reserved names as ``otel_audit.attr.<name>``,
    then the standard aliases (`DD_STANDARD_ALIASES`)."""
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        t = type(v)
        if t is str or t is int or t is bool:
            out[f"{SHADOWED_PREFIX}{k}" if k in DD_RESERVED else k] = v
            continue
        flat: dict[str, Any] = {}
        dd_flatten(k, v, flat)
        for fk, fv in flat.items():
            out[f"{SHADOWED_PREFIX}{fk}" if fk in DD_RESERVED else fk] = fv
    for k, alias in DD_STANDARD_ALIASES.items():
        v = attrs.get(k)
        if isinstance(v, (str, int, float)) and not isinstance(v, bool):
            out[alias] = v
    return out


def dd_record_fields(rec: Mapping[str, Any], *, now_ns: int = 0
                     ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], int]:
    """(the header fields, the attribute fields, the decoded attributes, the record's time in ns) of an
    OTLP/JSON logRecord, as the Datadog exporter writes them.

    The header: ``status``, ``message``, ``otel.timestamp`` (the record's time, else its observed time,
    else `now_ns`), ``otel.severity_number``, ``otel.severity_text``, ``otel.trace_id`` / ``dd.trace_id``
    (the low 64 bits, decimal), ``otel.span_id`` / ``dd.span_id``, ``evt.name``; each only when the record
    has it. The attribute fields: `dd_attribute_fields`. Raises `otel_audit.decoding.DecodeError` for a
    record that is not strict OTLP/JSON.
    """
    f = decode_log_record(rec)
    event_name, t, sev, sev_text, body, attrs, observed = f[0], f[1], f[2], f[3], f[4], f[5], f[6]
    ts = t or observed or now_ns
    head: dict[str, Any] = {"status": dd_status_of(sev, sev_text), "message": dd_message(body)}
    if ts:
        head["otel.timestamp"] = str(ts)
    if sev:
        head["otel.severity_number"] = sev
    if sev_text:
        head["otel.severity_text"] = sev_text
    if f[8]:
        head["otel.trace_id"] = f[8]
        head["dd.trace_id"] = str(int(f[8], 16) & 0xFFFFFFFFFFFFFFFF)
    if f[9]:
        head["otel.span_id"] = f[9]
        head["dd.span_id"] = str(int(f[9], 16))
    if event_name:
        head["evt.name"] = event_name
    return head, dd_attribute_fields(attrs), attrs, ts
