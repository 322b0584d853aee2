"""OTLP/JSON for logs: encode SDK log records the way the collector's ``file`` exporter writes them.

The mapping is the one of the OTLP specification (protobuf's JSON mapping with two overrides):
keys in lowerCamelCase, 64-bit integers as decimal strings, enums as integers, ``traceId`` and
``spanId`` as lowercase hex instead of base64. Encoding builds plain dicts and serializes them
with orjson; going through protobuf messages would cost several times as much per record.

Decoding is strict and delegates to ``otel_audit.decoding`` (the one decoder of every reader): only
forms that every standard OTLP decoder reads as we do are accepted; see docs/canonical-form.md §7.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from otel_audit.decoding import decode_attributes as _strict_attributes
from otel_audit.decoding import decode_value, walk_request

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.util.types import AnyValue

__all__ = [
    "decode_anyvalue",
    "decode_attributes",
    "dumps_line",
    "encode_anyvalue",
    "encode_attributes",
    "encode_logs",
    "iter_log_records",
]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def _encode_double(value: float) -> float | str:
    # orjson writes NaN and the infinities as null; protobuf's JSON mapping spells them as strings.
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def plain_json(value: Any) -> Any:
    """A value as plain JSON can carry it (not type-tagged): bytes as base64, non-finite doubles as
    their OTLP/JSON names, maps and sequences recursively; what the SIEM exporters put in fields."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return _encode_double(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    raise TypeError(f"a value of type {type(value).__name__} has no JSON form")


def encode_anyvalue(value: object) -> dict[str, Any]:
    """Return the OTLP/JSON ``AnyValue`` object for a Python value.

    ``None`` gives the empty AnyValue ``{}``. Raises ``ValueError`` for an ``int`` outside the
    int64 range and ``TypeError`` for a type that has no AnyValue form.
    """
    # The order matters: bool is a subclass of int, and str/bytes are sequences.
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise ValueError(f"integer {value} is outside the int64 range of an OTLP intValue")
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": _encode_double(value)}
    if value is None:
        return {}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytesValue": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        return {
            "kvlistValue": {
                "values": [{"key": str(k), "value": encode_anyvalue(v)} for k, v in value.items()]
            }
        }
    if isinstance(value, Sequence):
        return {"arrayValue": {"values": [encode_anyvalue(v) for v in value]}}
    raise TypeError(f"a value of type {type(value).__name__} has no OTLP AnyValue form")


def encode_attributes(attributes: Mapping[str, object] | None) -> list[dict[str, Any]]:
    """Return the OTLP/JSON ``KeyValue`` list of a mapping, in the mapping's order.

    Raises ``ValueError`` or ``TypeError`` naming the key whose value cannot be encoded.
    """
    if not attributes:
        return []
    out: list[dict[str, Any]] = []
    append = out.append
    for key, value in attributes.items():
        # Fast path for the scalar types that make up nearly every attribute.
        cls = type(value)
        if cls is str:
            append({"key": key, "value": {"stringValue": value}})
            continue
        if cls is int and _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]  # mypy: cls is type(value)
            append({"key": key, "value": {"intValue": str(value)}})
            continue
        if cls is bool:
            append({"key": key, "value": {"boolValue": value}})
            continue
        try:
            encoded = encode_anyvalue(value)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"attribute {key!r}: {exc}") from exc
        append({"key": key, "value": encoded})
    return out


def decode_anyvalue(value: Mapping[str, Any] | None) -> AnyValue:
    """Return the Python value of an OTLP/JSON ``AnyValue``; the inverse of :func:`encode_anyvalue`.

    ``None`` and the empty AnyValue give ``None``. Strict (``otel_audit.decoding.decode_value``):
    raises ``DecodeError`` (a ``ValueError``) naming the rule and the path for any form a standard
    decoder could read differently (two value fields, a snake_case name, ``"6.9"`` as an int, ...).
    """
    if value is None:
        return None
    decoded: AnyValue = decode_value(value)
    return decoded


def decode_attributes(key_values: Sequence[Mapping[str, Any]] | None) -> dict[str, AnyValue]:
    """Return a dict from an OTLP/JSON ``KeyValue`` list (``None`` gives ``{}``).

    Strict (``otel_audit.decoding.decode_attributes``): a key given twice, at any level, raises
    ``DecodeError`` (a ``ValueError``), as does a malformed item.
    """
    if key_values is None:
        return {}
    return _strict_attributes(key_values)


def _encode_scope(scope: InstrumentationScope | None) -> dict[str, Any]:
    if scope is None:
        return {}
    out: dict[str, Any] = {}
    if scope.name:
        out["name"] = scope.name
    if scope.version:
        out["version"] = scope.version
    if scope.attributes:
        out["attributes"] = encode_attributes(scope.attributes)
    return out


def encode_log_record(readable: ReadableLogRecord) -> dict[str, Any]:
    """One record as its OTLP/JSON logRecord object (what `logRecords` holds)."""
    return _encode_log_record(readable)


def _encode_log_record(readable: ReadableLogRecord) -> dict[str, Any]:
    record = readable.log_record
    out: dict[str, Any] = {}
    if record.timestamp:
        out["timeUnixNano"] = str(record.timestamp)
    if record.observed_timestamp:
        out["observedTimeUnixNano"] = str(record.observed_timestamp)
    severity = record.severity_number
    if severity is not None and severity.value:
        out["severityNumber"] = severity.value
    if record.severity_text:
        out["severityText"] = record.severity_text
    if record.body is not None:
        try:
            out["body"] = encode_anyvalue(record.body)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"log record body: {exc}") from exc
    if record.attributes:
        out["attributes"] = encode_attributes(record.attributes)
    dropped = readable.dropped_attributes
    if dropped:
        out["droppedAttributesCount"] = dropped
    flags = int(record.trace_flags) if record.trace_flags is not None else 0
    if flags:
        out["flags"] = flags
    # An all-zero id is the invalid id: the field is left out, as protobuf leaves out empty bytes.
    if record.trace_id:
        out["traceId"] = format(record.trace_id, "032x")
    if record.span_id:
        out["spanId"] = format(record.span_id, "016x")
    if record.event_name:
        out["eventName"] = record.event_name
    return out


def encode_logs(batch: Sequence[ReadableLogRecord]) -> dict[str, Any]:
    """Return one OTLP/JSON ``ExportLogsServiceRequest`` for a batch of SDK log records.

    Records are grouped by resource, then by instrumentation scope, in order of first
    appearance; within a scope they keep the batch's order. Raises ``ValueError`` or
    ``TypeError`` when a value cannot be encoded (an int beyond int64, an unknown type).
    """
    # Group resources by identity first: Resource.__hash__ serializes every attribute to JSON,
    # and a batch nearly always carries a single Resource object.
    by_id: dict[int, tuple[dict[str, Any], dict[InstrumentationScope | None, list[dict[str, Any]]]]] = {}
    groups: list[
        tuple[Resource, dict[str, Any], dict[InstrumentationScope | None, list[dict[str, Any]]]]
    ] = []
    for readable in batch:
        resource = readable.resource
        entry = by_id.get(id(resource))
        if entry is None:
            for known, resource_out, scopes in groups:
                if known == resource:
                    entry = (resource_out, scopes)
                    break
            else:
                resource_out = {"resource": {"attributes": encode_attributes(resource.attributes)}}
                entry = (resource_out, {})
                groups.append((resource, resource_out, entry[1]))
            by_id[id(resource)] = entry
        scopes = entry[1]
        scope = readable.instrumentation_scope or None
        records = scopes.get(scope)
        if records is None:
            records = scopes[scope] = []
        records.append(_encode_log_record(readable))

    resource_logs: list[dict[str, Any]] = []
    for resource, resource_out, scopes in groups:
        scope_logs: list[dict[str, Any]] = []
        for scope, records in scopes.items():
            scope_out: dict[str, Any] = {"scope": _encode_scope(scope), "logRecords": records}
            if scope is not None and scope.schema_url:
                scope_out["schemaUrl"] = scope.schema_url
            scope_logs.append(scope_out)
        resource_out["scopeLogs"] = scope_logs
        if resource.schema_url:
            resource_out["schemaUrl"] = resource.schema_url
        resource_logs.append(resource_out)
    return {"resourceLogs": resource_logs}


def dumps_line(batch: Sequence[ReadableLogRecord]) -> bytes:
    """Return the batch as one line of OTLP/JSON, UTF-8, ending in ``b"\\n"``."""
    return orjson.dumps(encode_logs(batch), option=orjson.OPT_APPEND_NEWLINE)


def iter_log_records(
    request: Mapping[str, Any],
) -> Iterator[tuple[list[Any], Mapping[str, Any], Mapping[str, Any]]]:
    """Yield ``(resource attributes, scope, log record)`` for every log record of a request.

    The resource attributes are the raw OTLP/JSON ``KeyValue`` list, the scope and the record
    are the raw dicts; use :func:`decode_attributes` and :func:`decode_anyvalue` on them (or
    ``otel_audit.decoding.decode_log_record`` on the record). The envelope is checked strictly
    (``otel_audit.decoding.walk_request``): ``DecodeError`` (a ``ValueError``) when the request does
    not have the shape of an ``ExportLogsServiceRequest``.
    """
    for rl, sl, _resource, _scope, records in walk_request(request):
        resource = rl.get("resource") or {}
        for record in records:
            yield resource.get("attributes") or [], sl.get("scope") or {}, record
