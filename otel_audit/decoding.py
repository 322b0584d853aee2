"""Strict OTLP/JSON decoding: the one decoder every reader of the integrity core uses.

A verifier must never prove one value while a standard OTLP decoder (the collector's pdata is
the reference, protobuf's ``json_format`` a second one) reads another. So this decoder accepts
only forms that every standard decoder reads exactly as we do, and rejects everything else with
a :class:`DecodeError` that names a stable rule id and the JSON path inside the record. The
spec, with every rule and the test vectors ``otel_audit/testvectors/decoding-v1.json``, is
``docs/canonical-form.md`` §7. No OpenTelemetry SDK imports.

API
---
``DecodeError(ValueError)``
    ``.rule`` (one of :data:`RULES`), ``.path`` (e.g. ``attributes[3].value.intValue``),
    ``.detail``; ``str()`` is ``"<rule> at <path>: <detail>"``.
``decode_value(anyvalue) -> value``
    one AnyValue as a Python value: ``str``, ``bool``, ``int`` (int64), ``float``, ``bytes``,
    ``list``, ``dict`` (a kvlist) or ``None`` (the empty AnyValue ``{}``).
``decode_attributes(kvlist) -> dict``
    a KeyValue list; a key given twice is ``duplicate-key`` (at every level).
``decode_log_record(rec) -> LogRecordFields``
    one logRecord: every field checked for form, unknown and snake_case fields rejected.
``iter_request(doc) -> Iterator[(resource_attributes, Scope, raw logRecord)]``
    the envelope of an ExportLogsServiceRequest, checked; decode each record with
    ``decode_log_record``. Unknown envelope fields are ignored, as OTLP asks of receivers.
``check_members(line, doc)``
    raises ``duplicate-member`` when the JSON text ``line`` has an object with a member name
    twice (orjson keeps the last silently; pdata appends repeated fields, so two ``logRecords``
    or two ``attributes`` members would be read differently). ``loads(text)`` parses and checks.
``decode_line(line) -> [(resource_attributes, Scope, LogRecordFields)]``
    a whole OTLP/JSON line, all of the above: the reference of what a verifier reads from a line.
``decode_canonical_content(text) -> (event, time, severity, severity_text, body, attributes)``
    the canonical content array a SIEM carries in ``audit.integrity.record``; it must be exactly
    the bytes ``canonical.content_bytes`` gives for what it decodes to.
"""

from __future__ import annotations

import binascii
import json
import math
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import orjson

from otel_audit import canonical

__all__ = [
    "RULES",
    "DecodeError",
    "LogRecordFields",
    "Scope",
    "check_members",
    "decode_attributes",
    "decode_canonical_content",
    "decode_line",
    "decode_log_record",
    "decode_value",
    "iter_request",
    "loads",
]

#: rule id -> what it rejects. Stable: reports, tests and other implementations name them.
RULES: dict[str, str] = {
    "not-json": "the text is not one JSON value (RFC 8259, UTF-8, no lone surrogate)",
    "duplicate-member": "a JSON object has the same member name twice",
    "duplicate-key": "an attribute list or kvlist has the same key twice",
    "two-value-fields": "an AnyValue has more than one value field",
    "both-spellings": "a field is given both in lowerCamelCase and in snake_case",
    "snake-case": "a field is given by its proto name (snake_case); OTLP/JSON uses lowerCamelCase only",
    "unknown-field": "a field that the log record, AnyValue, KeyValue or container messages do not have",
    "bad-type": "a field has the wrong JSON type (null included), or a required field is missing",
    "non-canonical-int": "an integer not written as a JSON integer or its exact decimal string",
    "int-out-of-range": "an integer outside its field's range (int64, uint64, int32, uint32)",
    "non-canonical-bool": "a boolValue that is not JSON true or false",
    "non-canonical-double": "a doubleValue that is not a finite JSON number or NaN/Infinity/-Infinity",
    "bad-base64": "a bytesValue that is not exactly RFC 4648 standard base64 with padding",
    "bad-hex": "a traceId or spanId that is not 32 or 16 lowercase hex digits",
    "too-deep": "arrays and maps nested deeper than the canonical form allows (64 levels below the value)",
    "non-canonical-content": "an embedded canonical content array that is not exactly in canonical form",
}

INT64_MIN, INT64_MAX = canonical.INT64_MIN, canonical.INT64_MAX
UINT64_MAX = 2**64 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
UINT32_MAX = 2**32 - 1
MAX_DEPTH = canonical.MAX_DEPTH


class DecodeError(ValueError):
    """Input that a standard OTLP decoder could read differently, or would refuse."""

    def __init__(self, rule: str, path: str, detail: str) -> None:
        super().__init__(rule, path, detail)
        self.rule = rule
        self.path = path
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.rule} at {self.path or '<top>'}: {self.detail}"

    def within(self, prefix: str) -> DecodeError:
        """Prefix the path (``attributes[3]`` + ``value.intValue``) and return self for re-raising."""
        p = self.path
        self.path = prefix if not p else (prefix + p if p[0] == "[" else f"{prefix}.{p}")
        return self


def _show(x: Any) -> str:
    """A short form of a malformed scalar for a message (never a whole string value)."""
    if isinstance(x, str):
        return f"a string of {len(x)} characters" if len(x) > 24 else repr(x)
    if isinstance(x, (dict, list)):
        return f"a JSON {'object' if isinstance(x, dict) else 'array'}"
    return "null" if x is None else repr(x)


def _json_type(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, (int, float)):
        return "a number"
    if isinstance(x, str):
        return "a string"
    if isinstance(x, list):
        return "an array"
    if isinstance(x, Mapping):
        return "an object"
    return type(x).__name__


# -- integers --------------------------------------------------------------------------------------


def _integer(x: Any, lo: int, hi: int, path: str, strings: bool = True) -> int:
    """An integer field: a JSON integer, or (when `strings`) its exact shortest decimal string."""
    t = type(x)
    v: int | None
    if t is int:
        v = x
    elif t is str and not strings:
        raise DecodeError("non-canonical-int", path, f"{_show(x)} is a string; this field is a JSON integer")
    elif t is str:
        # isascii: Python's int() reads Arabic-Indic and other Unicode digits, Go's never does;
        # str(int(x)) == x rejects '+', leading zeros, '-0', whitespace and '_' too.
        v = None
        if 0 < len(x) <= 21 and x.isascii():
            try:
                v = int(x)
            except ValueError:
                v = None
            if v is not None and str(v) != x:
                v = None
        if v is None:
            raise DecodeError("non-canonical-int", path, f"{_show(x)} is not an integer's decimal form "
                              "(ASCII digits, optional '-', no '+', no leading zeros, no spaces)")
    elif t is float:
        if x.is_integer() and not lo <= x <= hi:
            raise DecodeError("int-out-of-range", path, f"{_show(x)} is outside [{lo}, {hi}]")
        raise DecodeError("non-canonical-int", path, f"{_show(x)} is a JSON number with a fraction or an "
                          "exponent; an integer field takes a JSON integer" + (" or a decimal string" * strings))
    else:
        raise DecodeError("bad-type", path, f"an integer field holds {_json_type(x)}")
    if not lo <= v <= hi:
        raise DecodeError("int-out-of-range", path, f"{_show(x)} is outside [{lo}, {hi}]")
    return v


# -- AnyValue --------------------------------------------------------------------------------------


def _string(x: Any, depth: int) -> str:
    if type(x) is not str:
        raise DecodeError("bad-type", "", f"stringValue holds {_json_type(x)}")
    return x


def _bool(x: Any, depth: int) -> bool:
    if x is True or x is False:
        return x
    raise DecodeError("non-canonical-bool", "", f"boolValue is {_show(x)}, not JSON true or false")


def _int(x: Any, depth: int) -> int:
    if x.__class__ is str and 0 < len(x) < 19 and x.isdigit() and x.isascii() and x[0] != "0":
        return int(x)  # 1..18 ASCII digits, no leading zero: canonical and inside int64
    return _integer(x, INT64_MIN, INT64_MAX, "")


_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _double(x: Any, depth: int) -> float:
    t = type(x)
    if t is float:
        f: float = x  # orjson refuses NaN, Infinity and numbers that overflow to infinity
        return f
    if t is int:
        try:
            return float(x)
        except OverflowError:
            raise DecodeError("non-canonical-double", "", "the number overflows a double") from None
    if t is str:
        v = _SPECIAL.get(x)
        if v is not None:
            return v
        raise DecodeError("non-canonical-double", "", f"doubleValue is the string {_show(x)}; only NaN, "
                          "Infinity and -Infinity are written as strings")
    raise DecodeError("bad-type", "", f"doubleValue holds {_json_type(x)}")


# RFC 4648 standard base64 with padding: what a2b_base64's strict_mode (Python 3.11+) reads, but for
# the odd form some versions let pass (3.11 ignores a '=' after a complete quad).
_STRICT_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def _a2b_base64_checked(raw: bytes) -> bytes:
    """``binascii.a2b_base64(raw, strict_mode=True)`` where ``strict_mode`` is missing (Python 3.10):
    the same bytes for standard padded base64, else binascii.Error. Both callers go on to require the
    canonical round trip, so they read the same on every version."""
    if _STRICT_BASE64.fullmatch(raw) is None:
        raise binascii.Error("not standard base64 with padding")
    return binascii.a2b_base64(raw)


def _bytes(x: Any, depth: int) -> bytes:
    if type(x) is not str:
        raise DecodeError("bad-type", "", f"bytesValue holds {_json_type(x)}")
    try:
        raw = x.encode("ascii")
        if sys.version_info >= (3, 11):  # (checked inline: a wrapper or a partial costs more than the decode)
            b = binascii.a2b_base64(raw, strict_mode=True)
        else:  # pragma: no cover - Python 3.10
            b = _a2b_base64_checked(raw)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        b = None
    # The round trip rejects the URL-safe alphabet, missing padding, data after the padding,
    # whitespace and non-zero padding bits: all forms some decoder reads and another refuses.
    if b is None or binascii.b2a_base64(b, newline=False) != raw:
        raise DecodeError("bad-base64", "", f"{_show(x)} is not RFC 4648 standard base64 with padding")
    return b


def _values(x: Any, name: str) -> list[Any]:
    """The `values` list of an arrayValue / kvlistValue object ({} and a missing list are empty)."""
    if type(x) is not dict:
        raise DecodeError("bad-type", "", f"{name} holds {_json_type(x)}, not an object")
    if len(x) == 1 and "values" in x:
        vs = x["values"]
    elif not x:
        return []
    else:
        _check_fields(x, _CONTAINER_FIELDS, _NO_SNAKE, name)
        vs = x["values"]
    if type(vs) is not list:
        raise DecodeError("bad-type", "values", f"{name}.values holds {_json_type(vs)}, not an array")
    return vs


def _array(x: Any, depth: int) -> list[Any]:
    if depth > MAX_DEPTH:
        raise DecodeError("too-deep", "", f"a container nested more than {MAX_DEPTH + 1} levels deep")
    out: list[Any] = []
    append = out.append
    for i, v in enumerate(_values(x, "arrayValue")):
        try:
            append(decode_value(v, depth + 1))
        except DecodeError as exc:
            raise exc.within(f"values[{i}]") from None
    return out


def _kvlist(x: Any, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise DecodeError("too-deep", "", f"a container nested more than {MAX_DEPTH + 1} levels deep")
    try:
        return _key_values(_values(x, "kvlistValue"), depth + 1)
    except DecodeError as exc:
        if exc.path.startswith("["):
            raise exc.within("values") from None
        raise


_VALUE_FIELDS = {
    "stringValue": _string,
    "boolValue": _bool,
    "intValue": _int,
    "doubleValue": _double,
    "bytesValue": _bytes,
    "arrayValue": _array,
    "kvlistValue": _kvlist,
}
_VALUE_SNAKE = {
    "string_value": "stringValue", "bool_value": "boolValue", "int_value": "intValue",
    "double_value": "doubleValue", "bytes_value": "bytesValue", "array_value": "arrayValue",
    "kvlist_value": "kvlistValue",
}


def decode_value(v: Any, _depth: int = 0) -> Any:
    """One OTLP/JSON AnyValue as a Python value; raises DecodeError (path relative to the value)."""
    if type(v) is not dict:
        if isinstance(v, Mapping):
            v = dict(v)
        else:
            raise DecodeError("bad-type", "", f"an AnyValue must be an object, not {_json_type(v)}")
    if len(v) == 1:
        ((name, x),) = v.items()
        dec = _VALUE_FIELDS.get(name)
        if dec is not None:
            try:
                return dec(x, _depth)
            except DecodeError as exc:
                raise exc.within(name) from None
    elif not v:
        return None
    _check_fields(v, _VALUE_FIELDS, _VALUE_SNAKE, "AnyValue")
    names = [k for k in v if k in _VALUE_FIELDS]
    raise DecodeError("two-value-fields", "", f"an AnyValue has the value fields {', '.join(names)}; "
                      "decoders disagree on which one counts")


# -- fields of messages ----------------------------------------------------------------------------


def _check_fields(obj: Mapping[str, Any], known: Any, snake: Mapping[str, str], what: str,
                  unknown_ok: bool = False) -> None:
    """Raise for a snake_case spelling, both spellings, or (unless `unknown_ok`) an unknown field."""
    for k in obj:
        if k in known:
            continue
        camel = snake.get(k)
        if camel is not None:
            if camel in obj:
                raise DecodeError("both-spellings", k, f"{what} has both {camel!r} and {k!r}")
            raise DecodeError("snake-case", k, f"{what} field {k!r} is the proto name; OTLP/JSON "
                              f"writes it {camel!r}")
        if not unknown_ok:
            raise DecodeError("unknown-field", k, f"{what} has no field {k!r}")


_NO_SNAKE: dict[str, str] = {}
_CONTAINER_FIELDS = frozenset({"values"})
_KV_SNAKE = {"key_strindex": "keyStrindex"}


def _key_values(kvs: Any, depth: int, len: Any = len, str: Any = str) -> dict[str, Any]:  # noqa: A002
    """A KeyValue list as a dict. This is the verifier's hot path: the loop takes the common shape
    ({"key": "...", "value": {"stringValue": "..."}}) with as few operations as it can; anything else
    is decoded by decode_value, and any doubt sends the whole list to _key_values_slow, which decodes it
    again and raises the precise error."""
    out: dict[str, Any] = {}
    try:
        for kv in kvs:
            v = kv["value"]
            sv = v.get("stringValue")
            if sv.__class__ is str and len(v) == 1 and len(kv) == 2:
                out[kv["key"]] = sv
            elif len(kv) == 2:
                out[kv["key"]] = decode_value(v, depth)
            else:
                return _key_values_slow(kvs, depth)
        # a duplicate key, or a key that is no string (join refuses those)
        if len(out) != len(kvs) or "".join(out).__class__ is not str:
            return _key_values_slow(kvs, depth)
    except (DecodeError, TypeError, KeyError, AttributeError):
        return _key_values_slow(kvs, depth)
    return out


def _key_values_slow(kvs: Any, depth: int) -> dict[str, Any]:
    if not isinstance(kvs, list):
        raise DecodeError("bad-type", "", f"a KeyValue list must be an array, not {_json_type(kvs)}")
    out: dict[str, Any] = {}
    for i, kv in enumerate(kvs):
        key, v = _kv_slow(kv, i)
        if key in out:
            raise DecodeError("duplicate-key", f"[{i}].key", f"key {key!r} is given more than once; "
                              "decoders disagree on which value counts")
        try:
            out[key] = decode_value(v, depth)
        except DecodeError as exc:
            raise exc.within(f"[{i}].value") from None
    return out


def _kv_slow(kv: Any, i: int) -> tuple[str, dict[str, Any]]:
    """The precise error for a KeyValue off the fast path, or its (key, value) if it is fine."""
    at = f"[{i}]"
    if not isinstance(kv, Mapping):
        raise DecodeError("bad-type", at, f"a KeyValue must be an object, not {_json_type(kv)}")
    try:
        _check_fields(kv, ("key", "value"), _KV_SNAKE, "KeyValue")
    except DecodeError as exc:
        raise exc.within(at) from None
    if "key" not in kv:
        raise DecodeError("bad-type", at, "a KeyValue has no key")
    key = kv["key"]
    if type(key) is not str:
        raise DecodeError("bad-type", at + ".key", f"the key is {_json_type(key)}, not a string")
    v = kv.get("value", {})
    if not isinstance(v, Mapping):
        raise DecodeError("bad-type", at + ".value", f"the value is {_json_type(v)}, not an AnyValue object")
    return key, dict(v)


def decode_attributes(kvlist: Any) -> dict[str, Any]:
    """An OTLP/JSON KeyValue list as a dict; raises DecodeError for a key given twice, and for
    every malformed KeyValue or value (path relative to the list, e.g. ``[3].value.intValue``)."""
    return _key_values(kvlist, 0)


# -- the log record --------------------------------------------------------------------------------


class LogRecordFields(NamedTuple):
    """One decoded logRecord. Absent fields take their proto3 zero values."""

    event_name: str
    time_unix_nano: int
    severity_number: int
    severity_text: str
    body: Any  # None when absent or the empty AnyValue
    attributes: dict[str, Any]  # every attribute, the integrity ones included
    observed_time_unix_nano: int
    flags: int
    trace_id: str  # lowercase hex, "" when absent
    span_id: str
    dropped_attributes_count: int


_RECORD_FIELDS = frozenset({
    "timeUnixNano", "observedTimeUnixNano", "severityNumber", "severityText", "body", "attributes",
    "droppedAttributesCount", "flags", "traceId", "spanId", "eventName",
})
_RECORD_SNAKE = {
    "time_unix_nano": "timeUnixNano", "observed_time_unix_nano": "observedTimeUnixNano",
    "severity_number": "severityNumber", "severity_text": "severityText",
    "dropped_attributes_count": "droppedAttributesCount", "trace_id": "traceId", "span_id": "spanId",
    "event_name": "eventName",
}
#: the fields nearly every record has; a record with only these skips the checks of the others
_COMMON = frozenset({"timeUnixNano", "observedTimeUnixNano", "severityNumber", "severityText", "body",
                     "attributes", "eventName"})
_HEX = frozenset("0123456789abcdef")
_new = tuple.__new__


def _hex_id(x: Any, n: int, path: str) -> str:
    if type(x) is not str:
        raise DecodeError("bad-type", path, f"{path} holds {_json_type(x)}, not a hex string")
    if x and (len(x) != n or not _HEX.issuperset(x)):
        raise DecodeError("bad-hex", path, f"{path} is {_show(x)}, not {n} lowercase hex digits")
    return x


def _text(rec: Mapping[str, Any], name: str) -> str:
    x = rec[name]
    if type(x) is not str:
        raise DecodeError("bad-type", name, f"{name} holds {_json_type(x)}, not a string")
    return x


def decode_log_record(rec: Any) -> LogRecordFields:
    """One OTLP/JSON logRecord, every field checked (see the module docstring); DecodeError paths
    are relative to the record (``timeUnixNano``, ``attributes[3].value``, ``body.arrayValue...``).

    This is the verifier's hot path: the common forms are checked inline, the rest by helpers."""
    if rec.__class__ is not dict:
        if not isinstance(rec, Mapping):
            raise DecodeError("bad-type", "", f"a logRecord must be an object, not {_json_type(rec)}")
        rec = dict(rec)
    common = _COMMON.issuperset(rec)
    if not common and not _RECORD_FIELDS.issuperset(rec):
        _check_fields(rec, _RECORD_FIELDS, _RECORD_SNAKE, "logRecord")
    get = rec.get
    # A decimal string of 1..19 ASCII digits without a leading zero is canonical and inside uint64;
    # anything else goes through _integer, which says precisely what is wrong.
    ts = get("timeUnixNano", 0)
    if ts.__class__ is str and 0 < len(ts) < 20 and ts.isdigit() and ts.isascii() and ts[0] != "0":
        t = int(ts)
    else:
        t = _integer(ts, 0, UINT64_MAX, "timeUnixNano")
    ots = get("observedTimeUnixNano", 0)
    if ots == ts:
        ot = t
    elif ots.__class__ is str and 0 < len(ots) < 20 and ots.isdigit() and ots.isascii() and ots[0] != "0":
        ot = int(ots)
    else:
        ot = _integer(ots, 0, UINT64_MAX, "observedTimeUnixNano")
    sev = get("severityNumber", 0)
    if sev.__class__ is not int or sev < INT32_MIN or sev > INT32_MAX:
        sev = _integer(sev, INT32_MIN, INT32_MAX, "severityNumber", strings=False)
    sevtext = get("severityText", "")
    event = get("eventName", "")
    if sevtext.__class__ is not str or event.__class__ is not str:
        _text(rec, "severityText" if sevtext.__class__ is not str else "eventName")
    b = get("body", _ABSENT)
    if b is _ABSENT:
        body = None
    elif b.__class__ is dict and len(b) == 1 and (body := b.get("stringValue")).__class__ is str:
        pass
    else:
        try:
            body = decode_value(b)
        except DecodeError as exc:
            raise exc.within("body") from None
    a = get("attributes")
    if a is None:
        if "attributes" in rec:
            raise DecodeError("bad-type", "attributes", "attributes holds null, not an array")
        attrs: dict[str, Any] = {}
    else:
        try:
            attrs = _key_values(a, 0)
        except DecodeError as exc:
            raise exc.within("attributes") from None
    if common:
        return _new(LogRecordFields, (event, t, sev, sevtext, body, attrs, ot, 0, "", "", 0))
    # the rarer fields
    flags = _integer(rec["flags"], 0, UINT32_MAX, "flags", strings=False) if "flags" in rec else 0
    dropped = (_integer(rec["droppedAttributesCount"], 0, UINT32_MAX, "droppedAttributesCount", strings=False)
               if "droppedAttributesCount" in rec else 0)
    trace = _hex_id(rec["traceId"], 32, "traceId") if "traceId" in rec else ""
    span = _hex_id(rec["spanId"], 16, "spanId") if "spanId" in rec else ""
    return _new(LogRecordFields, (event, t, sev, sevtext, body, attrs, ot, flags, trace, span, dropped))


# -- the request envelope --------------------------------------------------------------------------


class Scope(NamedTuple):
    """A decoded InstrumentationScope (empty strings and {} when absent)."""

    name: str
    version: str
    attributes: dict[str, Any]


_EMPTY_SCOPE = Scope("", "", {})
_ENVELOPE_SNAKE = {
    "resource_logs": "resourceLogs", "scope_logs": "scopeLogs", "log_records": "logRecords",
    "schema_url": "schemaUrl", "dropped_attributes_count": "droppedAttributesCount",
    "entity_refs": "entityRefs",
}
_REQUEST_FIELDS = frozenset({"resourceLogs"})
_RL_FIELDS = frozenset({"resource", "scopeLogs", "schemaUrl"})
_SL_FIELDS = frozenset({"scope", "logRecords", "schemaUrl"})
_RESOURCE_FIELDS = frozenset({"attributes", "droppedAttributesCount", "entityRefs"})
_SCOPE_FIELDS = frozenset({"name", "version", "attributes", "droppedAttributesCount"})


def _obj(x: Any, path: str, what: str, known: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(x, Mapping):
        raise DecodeError("bad-type", path, f"{what} must be an object, not {_json_type(x)}")
    if not known.issuperset(x):
        try:
            _check_fields(x, known, _ENVELOPE_SNAKE, what, unknown_ok=True)
        except DecodeError as exc:
            raise (exc.within(path) if path else exc) from None
    return x


def _list(obj: Mapping[str, Any], name: str, path: str) -> list[Any]:
    x = obj.get(name, _ABSENT)
    if x is _ABSENT:
        return []
    if type(x) is not list:
        at = f"{path}.{name}" if path else name
        raise DecodeError("bad-type", at, f"{name} must be an array, not {_json_type(x)}")
    return x


def _attrs_of(obj: Mapping[str, Any], path: str) -> dict[str, Any]:
    if "attributes" not in obj:
        return {}
    try:
        return _key_values(obj["attributes"], 0)
    except DecodeError as exc:
        raise exc.within(f"{path}.attributes") from None


def _scope(x: Any, path: str) -> Scope:
    if x is _ABSENT:
        return _EMPTY_SCOPE
    sc = _obj(x, path, "scope", _SCOPE_FIELDS)
    name, version = sc.get("name", ""), sc.get("version", "")
    for k, val in (("name", name), ("version", version)):
        if type(val) is not str:
            raise DecodeError("bad-type", f"{path}.{k}", f"scope {k} holds {_json_type(val)}, not a string")
    if "droppedAttributesCount" in sc:
        _integer(sc["droppedAttributesCount"], 0, UINT32_MAX, f"{path}.droppedAttributesCount", strings=False)
    return Scope(name, version, _attrs_of(sc, path))


_ABSENT: Any = object()


def iter_request(doc: Any) -> Iterator[tuple[dict[str, Any], Scope, Mapping[str, Any]]]:
    """``(resource attributes, scope, raw logRecord)`` for every record of an ExportLogsServiceRequest.

    The envelope is checked as it is walked (DecodeError paths from the request, e.g.
    ``resourceLogs[0].scopeLogs[1].scope.attributes[2].key``); records are yielded raw, for
    :func:`decode_log_record`. Resource attributes are decoded (duplicate keys rejected).
    """
    for _rl, _sl, resource, scope, records in walk_request(doc):
        for rec in records:
            yield resource, scope, rec


def walk_request(doc: Any) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any], dict[str, Any], Scope, list[Any]]]:
    """As iter_request, one item per scopeLogs: ``(raw resourceLogs, raw scopeLogs, resource attributes,
    scope, the raw logRecords list)``; the verifier's loop over records is then its own."""
    req = _obj(doc, "", "an ExportLogsServiceRequest", _REQUEST_FIELDS)
    for i, rl in enumerate(_list(req, "resourceLogs", "")):
        rp = f"resourceLogs[{i}]"
        _obj(rl, rp, "resourceLogs item", _RL_FIELDS)
        res = rl.get("resource", _ABSENT)
        if res is _ABSENT:
            resource: dict[str, Any] = {}
        else:
            _obj(res, rp + ".resource", "resource", _RESOURCE_FIELDS)
            if "droppedAttributesCount" in res:
                _integer(res["droppedAttributesCount"], 0, UINT32_MAX, rp + ".resource.droppedAttributesCount",
                         strings=False)
            resource = _attrs_of(res, rp + ".resource")
        if "schemaUrl" in rl and type(rl["schemaUrl"]) is not str:
            raise DecodeError("bad-type", rp + ".schemaUrl", "schemaUrl must be a string")
        for j, sl in enumerate(_list(rl, "scopeLogs", rp)):
            sp = f"{rp}.scopeLogs[{j}]"
            _obj(sl, sp, "scopeLogs item", _SL_FIELDS)
            scope = _scope(sl.get("scope", _ABSENT), sp + ".scope")
            if "schemaUrl" in sl and type(sl["schemaUrl"]) is not str:
                raise DecodeError("bad-type", sp + ".schemaUrl", "schemaUrl must be a string")
            yield rl, sl, resource, scope, _list(sl, "logRecords", sp)


# -- duplicate JSON object members -----------------------------------------------------------------

_dumps = orjson.dumps
# Every JSON string token, scanned left to right: what is left between them holds one ':' per member.
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


_EOL = (b"\n", b"\r\n")
#: the number token -0 (no fraction, no exponent) outside strings: orjson reads the integer 0
_NEG_ZERO = re.compile(rb"(?<![0-9.eE+-])-0(?![0-9.eE])")


def _members(x: Any) -> int:
    n = 0
    stack = [x]
    pop, push = stack.pop, stack.extend
    while stack:
        y = pop()
        t = type(y)
        if t is dict:
            n += len(y)
            push(y.values())
        elif t is list:
            push(y)
    return n


def check_members(line: bytes, doc: Any) -> None:
    """Raise DecodeError("duplicate-member") if the JSON text `line` (which parsed to `doc` with orjson)
    has an object with a member name twice. A line that is exactly orjson's encoding of `doc` (what
    our file exporter writes) has none and costs one re-encoding; others are counted."""
    try:
        again = _dumps(doc)
    except TypeError:  # orjson writes at most 255 levels: no record of ours is that deep; count instead
        again = b""
    n = len(again)
    if n and line.startswith(again) and (len(line) == n or line[n:] in _EOL):  # no copy of a long line
        return
    body = line.rstrip(b"\r\n")
    bare = _STRINGS.sub(b"", body)
    if _NEG_ZERO.search(bare):
        raise DecodeError("non-canonical-double", "", "the JSON number -0 without a fraction: some decoders read "
                          "the integer 0, others (pdata, protojson) the double -0.0; write 0 or -0.0")
    if bare.count(b":") == _members(doc):
        return
    try:
        _find_duplicate(body)
    except RecursionError:
        raise DecodeError("too-deep", "", "JSON nested too deep to read for repeated members") from None


class _Dup(dict[str, Any]):
    dup: str


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                out = _Dup(d)
                out.dup = k
                return out
            seen.add(k)
    return d


def _find_duplicate(text: bytes | str) -> None:
    doc = json.loads(text, object_pairs_hook=_pairs)
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        y, path = stack.pop()
        if isinstance(y, dict):
            if isinstance(y, _Dup):
                raise DecodeError("duplicate-member", f"{path}.{y.dup}" if path else y.dup,
                                  f"the member {y.dup!r} is given more than once in one object; "
                                  "decoders disagree on which counts (or read both)")
            stack.extend((v, f"{path}.{k}" if path else k) for k, v in reversed(list(y.items())))
        elif isinstance(y, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(y))))
    raise DecodeError("duplicate-member", "", "an object has a member name twice")  # not reached


def loads(text: bytes | str) -> Any:
    """Parse one JSON text strictly: DecodeError("not-json") or ("duplicate-member")."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("not-json", "", str(exc)) from None
    check_members(data, doc)
    return doc


# -- embedded canonical content ------------------------------------------------------------------


def _untag(x: Any, path: str) -> Any:
    t = type(x)
    if t is str or t is int or t is bool or x is None:
        return x
    if t is list:
        return [_untag(v, f"{path}[{i}]") for i, v in enumerate(x)]
    if t is dict and len(x) == 1:
        ((tag, v),) = x.items()
        if tag == "double" and type(v) is str:
            try:
                return float(v)
            except ValueError:
                pass
        elif tag == "bytes" and type(v) is str:
            try:
                if sys.version_info >= (3, 11):
                    return binascii.a2b_base64(v.encode("ascii"), strict_mode=True)
                return _a2b_base64_checked(v.encode("ascii"))  # pragma: no cover - Python 3.10
            except (UnicodeEncodeError, binascii.Error, ValueError):
                pass
        elif tag == "map" and type(v) is dict:
            return {k: _untag(w, f"{path}.{k}") for k, w in v.items()}
    raise DecodeError("non-canonical-content", path, f"{_json_type(x)} is no type-tagged canonical value")


def decode_canonical_content(text: Any) -> tuple[str, int, int, str, Any, dict[str, Any]]:
    """The canonical content array (`audit.integrity.record`: event name, time, severity number and
    text, body, attributes) decoded; DecodeError unless `text` is exactly its canonical bytes."""
    path = canonical.RECORD
    if type(text) is not str:
        raise DecodeError("bad-type", path, f"{path} holds {_json_type(text)}, not a string")
    try:
        raw = text.encode("utf-8")
        item = orjson.loads(raw)
    except (UnicodeEncodeError, orjson.JSONDecodeError) as exc:
        raise DecodeError("not-json", path, str(exc)) from None
    if type(item) is not list or len(item) != 6:
        raise DecodeError("non-canonical-content", path, "not a content array of 6 elements")
    event, t_text, sev, sevtext, body, attrs = item
    if type(event) is not str or type(t_text) is not str or type(sev) is not int or type(sevtext) is not str \
            or type(attrs) is not dict:
        raise DecodeError("non-canonical-content", path, "an element has the wrong type")
    t = _integer(t_text, 0, UINT64_MAX, f"{path}[1]")
    body_v = _untag(body, f"{path}[4]")
    attrs_v = {k: _untag(v, f"{path}[5].{k}") for k, v in attrs.items()}
    try:
        again = canonical.content_bytes(event, t, sev, sevtext, body_v, attrs_v)
    except canonical.CanonicalError as exc:
        raise DecodeError("non-canonical-content", path, str(exc)) from None
    if again != raw:
        raise DecodeError("non-canonical-content", path, "the bytes are not the canonical encoding of their "
                          "content (key order, spacing, escaping, number or value forms, integrity keys)")
    return event, t, sev, sevtext, body_v, attrs_v


# -- a whole line ------------------------------------------------------------------------------------


def decode_line(line: bytes | str) -> list[tuple[dict[str, Any], Scope, LogRecordFields]]:
    """Every record of one OTLP/JSON line (an ExportLogsServiceRequest), fully decoded: the reference of
    what a verifier reads from a line. DecodeError paths are from the request root
    (``resourceLogs[0].scopeLogs[0].logRecords[2].attributes[1].key``)."""
    doc = loads(line)
    out = []
    for _rl, _sl, resource, scope, records in walk_request(doc):
        for k, rec in enumerate(records):
            try:
                out.append((resource, scope, decode_log_record(rec)))
            except DecodeError as exc:
                raise exc.within(f"{_record_path(doc, records)}.logRecords[{k}]") from None
    return out


def _record_path(doc: Mapping[str, Any], records: list[Any]) -> str:
    for i, rl in enumerate(doc.get("resourceLogs") or ()):
        for j, sl in enumerate(rl.get("scopeLogs") or ()):
            if sl.get("logRecords") is records:
                return f"resourceLogs[{i}].scopeLogs[{j}]"
    return "resourceLogs[?].scopeLogs[?]"  # not reached
