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
from collections.abc import Mapping
from typing import Any

import orjson

from otel_audit.canonical import STREAM_ID, STREAM_SEQ
from otel_audit.catalog import EVENTS, OUTCOMES
from otel_audit.decoding import decode_log_record
from otel_audit.otlpjson import plain_json

__all__ = [
    "ES_OTLP",
    "ES_RESOURCE_FIELDS",
    "SPLUNK_EVENT_NAME",
    "SPLUNK_OTLP",
    "SPLUNK_SEVERITY_NUMBER",
    "SPLUNK_SEVERITY_TEXT",
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


def splunk_merge(head: Mapping[str, Any], resource_flat: Mapping[str, Any], record_flat: Mapping[str, Any],
                 reserved: frozenset[str]) -> dict[str, Any]:
    """The HEC event (without ``audit.otlp``): the header, then the resource's and the record's flattened
    attributes (the record's win), a name the header uses moved to ``otel.attr.<name>``."""
    event = dict(head)
    flat = {**resource_flat, **record_flat}
    for k in reserved.intersection(flat):
        flat[f"otel.attr.{k}"] = flat.pop(k)
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
