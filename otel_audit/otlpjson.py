"""OTLP/JSON for logs: encode SDK log records the way the collector's ``file`` exporter writes them.

The mapping is the one of the OTLP specification (protobuf's JSON mapping with two overrides):
keys in lowerCamelCase, 64-bit integers as decimal strings, enums as integers, ``traceId`` and
``spanId`` as lowercase hex instead of base64. Encoding builds plain dicts and serializes them
with orjson; going through protobuf messages would cost several times as much per record.

Decoding is tolerant, as the specification asks of receivers: integers as strings or numbers,
the special doubles as strings, and the original snake_case field names as well as camelCase.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

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
        if cls is int and _INT64_MIN <= value <= _INT64_MAX:  # type: ignore[operator]
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


def decode_anyvalue(value: Mapping[str, Any] | None) -> object:
    """Return the Python value of an OTLP/JSON ``AnyValue``; the inverse of :func:`encode_anyvalue`.

    An empty or unrecognised AnyValue gives ``None``. Raises ``ValueError`` for a malformed one
    (an ``intValue`` that is not an integer, bad base64, a list where an object belongs, ...).
    """
    if not value:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"an AnyValue must be a JSON object, not {type(value).__name__}")
    for key, item in value.items():
        decoder = _DECODERS.get(key)
        if decoder is not None:
            return decoder(item)
    return None


def decode_attributes(key_values: Sequence[Mapping[str, Any]] | None) -> dict[str, object]:
    """Return a dict from an OTLP/JSON ``KeyValue`` list; for a duplicate key the last one wins.

    Raises ``ValueError`` when the list or one of its items is malformed.
    """
    if not key_values:
        return {}
    if not isinstance(key_values, list):
        raise ValueError(f"attributes must be a JSON list, not {type(key_values).__name__}")
    out: dict[str, object] = {}
    for kv in key_values:
        if not isinstance(kv, Mapping):
            raise ValueError(f"an attribute must be a JSON object with key and value, not {kv!r}")
        key = kv.get("key", "")
        if not isinstance(key, str):
            raise ValueError(f"an attribute key must be a string, not {key!r}")
        out[key] = decode_anyvalue(kv.get("value"))
    return out


def _decode_string(item: object) -> str:
    if not isinstance(item, str):
        raise ValueError(f"stringValue must be a string, not {type(item).__name__}")
    return item


def _decode_bool(item: object) -> bool:
    if not isinstance(item, bool):
        raise ValueError(f"boolValue must be true or false, not {item!r}")
    return item


def _container_values(item: object, name: str) -> list[Any]:
    if item is None:
        return []
    if not isinstance(item, Mapping):
        raise ValueError(f"{name} must be a JSON object, not {type(item).__name__}")
    values = item.get("values") or []
    if not isinstance(values, list):
        raise ValueError(f"{name}.values must be a JSON list, not {type(values).__name__}")
    return values


def _decode_array(item: object) -> list[object]:
    return [decode_anyvalue(v) for v in _container_values(item, "arrayValue")]


def _decode_kvlist(item: object) -> dict[str, object]:
    return decode_attributes(_container_values(item, "kvlistValue"))


def _decode_int(item: object) -> int:
    if isinstance(item, bool):
        raise ValueError(f"intValue must be an integer, not {item!r}")
    if isinstance(item, int):
        return item
    if isinstance(item, float) and item.is_integer():
        return int(item)
    if isinstance(item, str):
        try:
            return int(item.strip(), 10)
        except ValueError:
            pass
    raise ValueError(f"intValue must be an integer or a decimal string, not {item!r}")


def _decode_double(item: object) -> float:
    if isinstance(item, bool):
        raise ValueError(f"doubleValue must be a number, not {item!r}")
    if isinstance(item, (int, float)):
        return float(item)
    if isinstance(item, str):
        special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
        if item in special:
            return special[item]
        try:
            return float(item)
        except ValueError:
            pass
    raise ValueError(f"doubleValue must be a number or NaN/Infinity/-Infinity, not {item!r}")


def _decode_bytes(item: object) -> bytes:
    if not isinstance(item, str):
        raise ValueError(f"bytesValue must be a base64 string, not {type(item).__name__}")
    text = item.strip()
    # Protobuf's JSON parser accepts both alphabets and missing padding; so do we.
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"bytesValue is not valid base64: {exc}") from None


# Protobuf's JSON parser accepts the original snake_case names as well; receivers must too.
_DECODERS: dict[str, Callable[[Any], object]] = {}
for _camel, _decoder in (
    ("stringValue", _decode_string),
    ("boolValue", _decode_bool),
    ("intValue", _decode_int),
    ("doubleValue", _decode_double),
    ("bytesValue", _decode_bytes),
    ("arrayValue", _decode_array),
    ("kvlistValue", _decode_kvlist),
):
    _DECODERS[_camel] = _decoder
    _DECODERS[re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), _camel)] = _decoder


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


def _field(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def iter_log_records(
    request: Mapping[str, Any],
) -> Iterator[tuple[list[Any], Mapping[str, Any], Mapping[str, Any]]]:
    """Yield ``(resource attributes, scope, log record)`` for every log record of a request.

    The resource attributes are the raw OTLP/JSON ``KeyValue`` list, the scope and the record
    are the raw dicts; use :func:`decode_attributes` and :func:`decode_anyvalue` on them.
    Raises ``ValueError`` when the request does not have the shape of an
    ``ExportLogsServiceRequest``.
    """
    if not isinstance(request, Mapping):
        raise ValueError(f"an OTLP logs request must be a JSON object, not {type(request).__name__}")
    resource_logs = _field(request, "resourceLogs", "resource_logs") or []
    if not isinstance(resource_logs, list):
        raise ValueError("resourceLogs must be a list")
    for rl in resource_logs:
        if not isinstance(rl, Mapping):
            raise ValueError("each resourceLogs item must be an object")
        resource = rl.get("resource") or {}
        attributes = resource.get("attributes") or [] if isinstance(resource, Mapping) else []
        scope_logs = _field(rl, "scopeLogs", "scope_logs") or []
        if not isinstance(scope_logs, list):
            raise ValueError("scopeLogs must be a list")
        for sl in scope_logs:
            if not isinstance(sl, Mapping):
                raise ValueError("each scopeLogs item must be an object")
            scope = sl.get("scope") or {}
            records = _field(sl, "logRecords", "log_records") or []
            if not isinstance(records, list):
                raise ValueError("logRecords must be a list")
            for record in records:
                if not isinstance(record, Mapping):
                    raise ValueError("each logRecords item must be an object")
                yield attributes, scope, record
