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

from collections.abc import Mapping
from typing import Any

import orjson

from otel_audit.decoding import decode_log_record
from otel_audit.otlpjson import plain_json

__all__ = [
    "SPLUNK_EVENT_NAME",
    "SPLUNK_OTLP",
    "SPLUNK_SEVERITY_NUMBER",
    "SPLUNK_SEVERITY_TEXT",
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
