"""OTLP/protobuf logs requests to the OTLP/JSON form the integrity core reads, as the collector reads them.

The audit service receives ``ExportLogsServiceRequest`` bodies (gRPC, and HTTP with
``application/x-protobuf``) and verifies them with ``otel_audit.decoding``, which reads OTLP/JSON.
:func:`request_from_protobuf` gives, as plain dicts and lists, exactly the document the stock
collector's ``file`` exporter (pdata's JSON marshaler) writes for the same bytes, so that what the
service proves is what every reader behind a collector sees. ``tests/test_service_otlp_proto.py``
checks that against a real collector, case by case.

What pdata writes, and so what this module gives:

* ``resource``, ``scope``, a record's ``body`` and a KeyValue's ``value`` are always present
  (``{}`` when unset); every other field that holds its proto3 zero value (``0``, ``""``, an empty
  list) is left out, as are all-zero trace and span ids.
* lowerCamelCase keys; 64-bit integers (``timeUnixNano``, ``observedTimeUnixNano``, ``intValue``)
  as decimal strings; ``severityNumber`` (any int32, named or not), ``flags`` and
  ``droppedAttributesCount`` as integers; ``traceId``/``spanId`` as lowercase hex; ``bytesValue``
  as standard padded base64; ``doubleValue`` as a float, NaN and the infinities as the strings
  ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; an empty ``arrayValue``/``kvlistValue`` as ``{}``.
* A KeyValue list keeps every item in wire order, a key given twice included (the strict decoder
  then refuses the record: ``duplicate-key``); an empty key is left out, as pdata leaves it out
  (the strict decoder refuses a KeyValue without key).

Wire forms that protobuf libraries read differently are read as pdata reads them: a scalar given
twice, the last one; a message field (``resource``, ``scope``, ``body``, ``value``) given twice,
merged; a oneof member of AnyValue given twice, the last one, a container member replacing the
earlier container (not merged, as upb would); a varint of ten bytes keeps its low 64 bits; an int32
(``severityNumber``) its low 32 bits.

Decisions:

* **Unknown fields are ignored**, in every message, as the collector ignores them: they are not in
  what it forwards to any exporter, and no canonical content can hold them. Fields newer than the
  collector's pdata count as unknown too (AnyValue ``string_value_strindex``, KeyValue
  ``key_strindex``: an AnyValue with only the former is the empty ``{}``). A *known* field with the
  wrong wire type is a :class:`ProtoError`, as the collector answers 400.
* **Refused** (:class:`ProtoError`), where the collector also refuses: truncated or malformed wire
  data, a wrong wire type, field number 0, a group (wire types 3 and 4, even in an unknown field: pdata
  cannot skip one), a varint longer than 10 bytes, a trace id not 0 or 16 bytes, a span id not 0 or 8.
  Refused where the collector accepts: a string that is not valid UTF-8 (the collector copies the
  bytes into its JSON line, which is then no valid JSON: the strict decoder refuses the whole line)
  and AnyValue containers nested deeper than the strict decoder allows (``too-deep``, more than
  ``MAX_DEPTH + 1`` levels below a value), refused here before any deeper recursion.

Two paths, one result: the request is parsed with the official ``opentelemetry-proto`` messages
(upb, in C) and walked directly; when those bytes are not exactly what the parsed message encodes
to (unknown fields, a field given twice, non-minimal varints, ...), or upb refuses them (its depth
limit of 100 messages, bad UTF-8), a small wire reader with the rules above decides instead, and
says where a problem is (``truncated message at byte 812``). The tests run both on the same inputs.
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.message import DecodeError as _PbDecodeError  # type: ignore[import-untyped,unused-ignore]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import EntityRef

from otel_audit import decoding

__all__ = ["ProtoError", "request_from_protobuf", "request_to_protobuf"]

MAX_DEPTH = decoding.MAX_DEPTH
_WHAT = "not an ExportLogsServiceRequest"
_Z16 = bytes(16)
_Z8 = bytes(8)
_b64 = binascii.b2a_base64


class ProtoError(ValueError):
    """Bytes that are not an ExportLogsServiceRequest the integrity core can read; says what and where."""


# -- the fast path: upb messages, walked directly --------------------------------------------------


def _double(x: float) -> float | str:
    if x - x == 0.0:  # finite
        return x
    if x != x:
        return "NaN"
    return "Infinity" if x > 0 else "-Infinity"


def _av_string(v: Any) -> dict[str, Any]:
    return {"stringValue": v.string_value}


def _av_bool(v: Any) -> dict[str, Any]:
    return {"boolValue": v.bool_value}


def _av_int(v: Any) -> dict[str, Any]:
    return {"intValue": str(v.int_value)}


def _av_double(v: Any) -> dict[str, Any]:
    return {"doubleValue": _double(v.double_value)}


def _av_bytes(v: Any) -> dict[str, Any]:
    return {"bytesValue": _b64(v.bytes_value, newline=False).decode("ascii")}


def _av_array(v: Any) -> dict[str, Any]:
    values = v.array_value.values
    return {"arrayValue": {"values": [_any(x) for x in values]} if values else {}}


def _av_kvlist(v: Any) -> dict[str, Any]:
    values = v.kvlist_value.values
    return {"kvlistValue": {"values": _kvs(values)} if values else {}}


def _av_empty(v: Any) -> dict[str, Any]:
    return {}


_AV: dict[str | None, Callable[[Any], dict[str, Any]]] = {
    "string_value": _av_string, "bool_value": _av_bool, "int_value": _av_int, "double_value": _av_double,
    "bytes_value": _av_bytes, "array_value": _av_array, "kvlist_value": _av_kvlist,
    # unknown to the collector's pdata: read as it reads them, as the empty value
    "string_value_strindex": _av_empty, None: _av_empty,
}


def _any(v: Any) -> dict[str, Any]:
    # upb refuses messages nested more than 100 deep, so this recursion is bounded (about 48 levels)
    return _AV[v.WhichOneof("value")](v)


def _kvs(kvs: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    append = out.append
    for kv in kvs:
        v = kv.value
        k = v.WhichOneof("value")
        key = kv.key
        if not key:  # pdata leaves the empty key out (the strict decoder then refuses the KeyValue)
            append({"value": _AV[k](v)})
        elif k == "string_value":
            append({"key": key, "value": {"stringValue": v.string_value}})
        else:
            append({"key": key, "value": _AV[k](v)})
    return out


def _attrs_dropped(out: dict[str, Any], m: Any) -> None:
    if m.attributes:
        out["attributes"] = _kvs(m.attributes)
    if m.dropped_attributes_count:
        out["droppedAttributesCount"] = m.dropped_attributes_count


def _entity_ref(e: Any) -> dict[str, Any]:
    return _entity_dict(e.schema_url, e.type, list(e.id_keys), list(e.description_keys))


def _entity_dict(schema_url: str, type_: str, id_keys: list[str], description_keys: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if schema_url:
        out["schemaUrl"] = schema_url
    if type_:
        out["type"] = type_
    if id_keys:
        out["idKeys"] = id_keys
    if description_keys:
        out["descriptionKeys"] = description_keys
    return out


def _bad_id(name: str, n: int, want: int) -> ProtoError:
    return ProtoError(f"{_WHAT}: a log record's {name} has {n} bytes; it must have {want} (or none)")


def _record(r: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t = r.time_unix_nano
    if t:
        out["timeUnixNano"] = str(t)
    ot = r.observed_time_unix_nano
    if ot:
        out["observedTimeUnixNano"] = str(ot)
    if r.severity_number:
        out["severityNumber"] = r.severity_number
    if r.severity_text:
        out["severityText"] = r.severity_text
    out["body"] = _any(r.body)
    if r.attributes:
        out["attributes"] = _kvs(r.attributes)
    if r.dropped_attributes_count:
        out["droppedAttributesCount"] = r.dropped_attributes_count
    if r.flags:
        out["flags"] = r.flags
    tid = r.trace_id
    if tid:
        if len(tid) != 16:
            raise _bad_id("trace_id", len(tid), 16)
        if tid != _Z16:
            out["traceId"] = tid.hex()
    sid = r.span_id
    if sid:
        if len(sid) != 8:
            raise _bad_id("span_id", len(sid), 8)
        if sid != _Z8:
            out["spanId"] = sid.hex()
    if r.event_name:
        out["eventName"] = r.event_name
    return out


def _from_message(req: Any) -> dict[str, Any]:
    resource_logs = []
    for rl in req.resource_logs:
        res = rl.resource
        resource: dict[str, Any] = {}
        _attrs_dropped(resource, res)
        if res.entity_refs:
            resource["entityRefs"] = [_entity_ref(e) for e in res.entity_refs]
        rl_out: dict[str, Any] = {"resource": resource}
        scope_logs = []
        for sl in rl.scope_logs:
            sc = sl.scope
            scope: dict[str, Any] = {}
            if sc.name:
                scope["name"] = sc.name
            if sc.version:
                scope["version"] = sc.version
            _attrs_dropped(scope, sc)
            sl_out: dict[str, Any] = {"scope": scope}
            if sl.log_records:
                sl_out["logRecords"] = [_record(r) for r in sl.log_records]
            if sl.schema_url:
                sl_out["schemaUrl"] = sl.schema_url
            scope_logs.append(sl_out)
        if scope_logs:
            rl_out["scopeLogs"] = scope_logs
        if rl.schema_url:
            rl_out["schemaUrl"] = rl.schema_url
        resource_logs.append(rl_out)
    return {"resourceLogs": resource_logs} if resource_logs else {}


def request_from_protobuf(data: bytes) -> dict[str, Any]:
    """The OTLP/JSON document (plain dicts and lists) of a protobuf ``ExportLogsServiceRequest``, field
    for field as the collector's file exporter writes it (see the module docstring for the rules).

    Raises :class:`ProtoError` (a ``ValueError``) for bytes that are no such request, saying what is
    wrong and, from the wire reader, at which byte. Takes any size; the caller bounds it.
    """
    if not isinstance(data, bytes):
        if not isinstance(data, (bytearray, memoryview)):
            raise TypeError(f"request_from_protobuf takes bytes, not {type(data).__name__}")
        data = bytes(data)
    req = ExportLogsServiceRequest()
    try:
        req.ParseFromString(data)
    except (_PbDecodeError, RecursionError, ValueError):
        return _from_wire(data)
    req.DiscardUnknownFields()
    if req.SerializeToString() != data:
        return _from_wire(data)
    return _from_message(req)


# -- the wire reader: pdata's rules, where upb's reading could differ ------------------------------

_MASK64 = (1 << 64) - 1
_unpack_double = struct.Struct("<d").unpack_from


class _Wire:
    """Reads one buffer; every position is absolute, for the messages."""

    __slots__ = ("buf",)

    def __init__(self, buf: bytes) -> None:
        self.buf = buf

    def fail(self, what: str, pos: int) -> ProtoError:
        return ProtoError(f"{_WHAT}: {what} at byte {pos}")

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        buf = self.buf
        result = shift = 0
        start = pos
        while True:
            if shift >= 64:
                raise self.fail("varint longer than 10 bytes (integer overflow)", start)
            if pos >= end:
                raise self.fail("truncated message (a varint runs past the end)", start)
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result & _MASK64, pos
            shift += 7

    def fields(self, pos: int, end: int, known: Mapping[int, int], what: str) -> list[tuple[int, int, Any]]:
        """(field number, wire type, value) of every field of a message in wire order, unknown fields
        skipped; a varint is an int, fixed64/fixed32 bytes, length-delimited a (start, end) pair."""
        out: list[tuple[int, int, Any]] = []
        buf = self.buf
        while pos < end:
            at = pos
            key, pos = self.varint(pos, end)
            fno, wt = key >> 3, key & 7
            if fno == 0:
                raise self.fail(f"field number 0 in {what}", at)
            want = known.get(fno)
            if want is not None and want != wt:
                raise self.fail(f"wrong wire type {wt} for field {fno} of {what} (expected {want})", at)
            v: Any
            if wt == 0:
                v, pos = self.varint(pos, end)
            elif wt == 2:
                n, pos = self.varint(pos, end)
                if n > end - pos:
                    raise self.fail(f"truncated message (field {fno} of {what} has length {n}, "
                                    f"{end - pos} bytes are left)", at)
                v = (pos, pos + n)
                pos += n
            elif wt == 1 or wt == 5:
                n = 8 if wt == 1 else 4
                if n > end - pos:
                    raise self.fail(f"truncated message (field {fno} of {what})", at)
                v = buf[pos:pos + n]
                pos += n
            else:
                # 3 and 4 (groups, deprecated) included: pdata reads no group, not even to skip it
                raise self.fail(f"illegal wire type {wt} (field {fno} of {what})", at)
            if want is not None:
                out.append((fno, wt, v))
        return out

    def string(self, span: tuple[int, int], what: str) -> str:
        try:
            return self.buf[span[0]:span[1]].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what} is not valid UTF-8 (byte {span[0] + exc.start} of the request)",
                            span[0]) from None

    # -- messages --

    def request(self) -> dict[str, Any]:
        rls = [self.resource_logs(v) for _, _, v in self.fields(0, len(self.buf), {1: 2}, "the request")]
        return {"resourceLogs": rls} if rls else {}

    def resource_logs(self, span: tuple[int, int]) -> dict[str, Any]:
        res: dict[str, Any] = {"attributes": [], "dropped": 0, "entities": []}
        scope_logs = []
        schema = ""
        for fno, _, v in self.fields(*span, {1: 2, 2: 2, 3: 2}, "a ResourceLogs"):
            if fno == 1:
                self.resource_into(res, v)
            elif fno == 2:
                scope_logs.append(self.scope_logs(v))
            else:
                schema = self.string(v, "ResourceLogs.schema_url")
        resource: dict[str, Any] = {}
        if res["attributes"]:
            resource["attributes"] = res["attributes"]
        if res["dropped"]:
            resource["droppedAttributesCount"] = res["dropped"]
        if res["entities"]:
            resource["entityRefs"] = res["entities"]
        out: dict[str, Any] = {"resource": resource}
        if scope_logs:
            out["scopeLogs"] = scope_logs
        if schema:
            out["schemaUrl"] = schema
        return out

    def resource_into(self, res: dict[str, Any], span: tuple[int, int]) -> None:
        for fno, _, v in self.fields(*span, {1: 2, 2: 0, 3: 2}, "a Resource"):
            if fno == 1:
                res["attributes"].append(self.key_value(v, 0))
            elif fno == 2:
                res["dropped"] = v & 0xFFFFFFFF
            else:
                res["entities"].append(self.entity_ref(v))

    def entity_ref(self, span: tuple[int, int]) -> dict[str, Any]:
        schema = type_ = ""
        ids: list[str] = []
        descs: list[str] = []
        for fno, _, v in self.fields(*span, {1: 2, 2: 2, 3: 2, 4: 2}, "an EntityRef"):
            s = self.string(v, "an EntityRef string")
            if fno == 1:
                schema = s
            elif fno == 2:
                type_ = s
            elif fno == 3:
                ids.append(s)
            else:
                descs.append(s)
        return _entity_dict(schema, type_, ids, descs)

    def scope_logs(self, span: tuple[int, int]) -> dict[str, Any]:
        sc: dict[str, Any] = {"name": "", "version": "", "attributes": [], "dropped": 0}
        records = []
        schema = ""
        for fno, _, v in self.fields(*span, {1: 2, 2: 2, 3: 2}, "a ScopeLogs"):
            if fno == 1:
                self.scope_into(sc, v)
            elif fno == 2:
                records.append(self.log_record(v))
            else:
                schema = self.string(v, "ScopeLogs.schema_url")
        scope: dict[str, Any] = {}
        if sc["name"]:
            scope["name"] = sc["name"]
        if sc["version"]:
            scope["version"] = sc["version"]
        if sc["attributes"]:
            scope["attributes"] = sc["attributes"]
        if sc["dropped"]:
            scope["droppedAttributesCount"] = sc["dropped"]
        out: dict[str, Any] = {"scope": scope}
        if records:
            out["logRecords"] = records
        if schema:
            out["schemaUrl"] = schema
        return out

    def scope_into(self, sc: dict[str, Any], span: tuple[int, int]) -> None:
        for fno, _, v in self.fields(*span, {1: 2, 2: 2, 3: 2, 4: 0}, "an InstrumentationScope"):
            if fno == 1:
                sc["name"] = self.string(v, "InstrumentationScope.name")
            elif fno == 2:
                sc["version"] = self.string(v, "InstrumentationScope.version")
            elif fno == 3:
                sc["attributes"].append(self.key_value(v, 0))
            else:
                sc["dropped"] = v & 0xFFFFFFFF

    _RECORD = {1: 1, 11: 1, 2: 0, 3: 2, 5: 2, 6: 2, 7: 0, 8: 5, 9: 2, 10: 2, 12: 2}

    def log_record(self, span: tuple[int, int]) -> dict[str, Any]:
        t = ot = sev = dropped = flags = 0
        sevtext = event = ""
        body: dict[str, Any] = {}
        attrs = []
        tid = sid = b""
        for fno, _, v in self.fields(*span, self._RECORD, "a LogRecord"):
            if fno == 1:
                t = int.from_bytes(v, "little")
            elif fno == 11:
                ot = int.from_bytes(v, "little")
            elif fno == 2:
                sev = v & 0xFFFFFFFF
                if sev >= 1 << 31:
                    sev -= 1 << 32
            elif fno == 3:
                sevtext = self.string(v, "LogRecord.severity_text")
            elif fno == 5:
                self.any_value_into(body, v, 0)
            elif fno == 6:
                attrs.append(self.key_value(v, 0))
            elif fno == 7:
                dropped = v & 0xFFFFFFFF
            elif fno == 8:
                flags = int.from_bytes(v, "little")
            elif fno == 9:
                tid = self.buf[v[0]:v[1]]
                if len(tid) not in (0, 16):
                    raise _bad_id("trace_id", len(tid), 16)
            elif fno == 10:
                sid = self.buf[v[0]:v[1]]
                if len(sid) not in (0, 8):
                    raise _bad_id("span_id", len(sid), 8)
            else:
                event = self.string(v, "LogRecord.event_name")
        out: dict[str, Any] = {}
        if t:
            out["timeUnixNano"] = str(t)
        if ot:
            out["observedTimeUnixNano"] = str(ot)
        if sev:
            out["severityNumber"] = sev
        if sevtext:
            out["severityText"] = sevtext
        out["body"] = body
        if attrs:
            out["attributes"] = attrs
        if dropped:
            out["droppedAttributesCount"] = dropped
        if flags:
            out["flags"] = flags
        if tid and tid != _Z16:
            out["traceId"] = tid.hex()
        if sid and sid != _Z8:
            out["spanId"] = sid.hex()
        if event:
            out["eventName"] = event
        return out

    def key_value(self, span: tuple[int, int], depth: int) -> dict[str, Any]:
        key = ""
        value: dict[str, Any] = {}
        for fno, _, v in self.fields(*span, {1: 2, 2: 2}, "a KeyValue"):
            if fno == 1:
                key = self.string(v, "a KeyValue key")
            else:
                self.any_value_into(value, v, depth)
        return {"key": key, "value": value} if key else {"value": value}

    _ANY = {1: 2, 2: 0, 3: 0, 4: 1, 5: 2, 6: 2, 7: 2}

    def any_value_into(self, out: dict[str, Any], span: tuple[int, int], depth: int) -> None:
        """Merge an AnyValue into `out` (its JSON form) as pdata does: each oneof member replaces the
        one before, a container member with a new container. `depth` counts the containers above."""
        for fno, _, v in self.fields(*span, self._ANY, "an AnyValue"):
            out.clear()
            if fno == 1:
                out["stringValue"] = self.string(v, "an AnyValue string_value")
            elif fno == 2:
                out["boolValue"] = v != 0
            elif fno == 3:
                out["intValue"] = str(v - (1 << 64) if v >= 1 << 63 else v)
            elif fno == 4:
                out["doubleValue"] = _double(_unpack_double(v)[0])
            elif fno == 7:
                out["bytesValue"] = _b64(self.buf[v[0]:v[1]], newline=False).decode("ascii")
            else:
                if depth > MAX_DEPTH:
                    raise self.fail(f"AnyValue containers nested more than {MAX_DEPTH + 1} levels deep "
                                    "(the strict decoder's too-deep)", v[0])
                what = "an ArrayValue" if fno == 5 else "a KeyValueList"
                values = []
                for _, _, item in self.fields(v[0], v[1], {1: 2}, what):
                    if fno == 5:
                        x: dict[str, Any] = {}
                        self.any_value_into(x, item, depth + 1)
                        values.append(x)
                    else:
                        values.append(self.key_value(item, depth + 1))
                out["arrayValue" if fno == 5 else "kvlistValue"] = {"values": values} if values else {}


def _from_wire(data: bytes) -> dict[str, Any]:
    try:
        return _Wire(data).request()
    except RecursionError:  # not reached: nesting is bounded by MAX_DEPTH before it recurses
        raise ProtoError(f"{_WHAT}: nested too deep to read") from None


# -- the reverse: OTLP/JSON to protobuf -----------------------------------------------------------


def _set_value(out: Any, value: Any) -> None:
    """Fill the protobuf AnyValue `out` from a decoded Python value (decoding.decode_value's types)."""
    if value is None:
        return
    t = type(value)
    if t is str:
        out.string_value = value
    elif t is bool:
        out.bool_value = value
    elif t is int:
        out.int_value = value
    elif t is float:
        out.double_value = value
    elif t is bytes:
        out.bytes_value = value
    elif t is list:
        arr = out.array_value
        arr.SetInParent()
        for item in value:
            _set_value(arr.values.add(), item)
    elif t is dict:
        kvl = out.kvlist_value
        kvl.SetInParent()
        _set_attributes(kvl.values, value)
    else:  # pragma: no cover - decode_value gives only the types above
        raise TypeError(f"no AnyValue for {t.__name__}")


def _set_attributes(out: Any, attributes: Mapping[str, Any]) -> None:
    for k, v in attributes.items():
        kv = out.add()
        kv.key = k
        _set_value(kv.value, v)


def _envelope_int(obj: Mapping[str, Any], name: str) -> int:
    x = obj.get(name, 0)
    if type(x) is not int or not 0 <= x <= decoding.UINT32_MAX:
        raise decoding.DecodeError("bad-type", name, f"{name} must be a uint32 JSON integer")
    return x


def request_to_protobuf(doc: Mapping[str, Any]) -> bytes:
    """The protobuf ``ExportLogsServiceRequest`` of a strict OTLP/JSON document (the reverse of
    :func:`request_from_protobuf`; for tests and the service's own clients).

    The document is read with the strict decoder (``otel_audit.decoding``): ``DecodeError`` (a
    ``ValueError``) for anything it refuses, a duplicate key included.
    """
    for _ in decoding.walk_request(doc):  # the envelope, checked strictly before it is read below
        pass
    req = ExportLogsServiceRequest()
    for rl in doc.get("resourceLogs") or ():
        rl_pb = req.resource_logs.add()
        res = rl.get("resource") or {}
        _set_attributes(rl_pb.resource.attributes, decoding.decode_attributes(res.get("attributes") or []))
        rl_pb.resource.dropped_attributes_count = _envelope_int(res, "droppedAttributesCount")
        for e in res.get("entityRefs") or ():
            if not isinstance(e, Mapping):
                raise decoding.DecodeError("bad-type", "entityRefs", "an entityRefs item must be an object")
            rl_pb.resource.entity_refs.append(EntityRef(
                schema_url=e.get("schemaUrl", ""), type=e.get("type", ""),
                id_keys=list(e.get("idKeys") or ()), description_keys=list(e.get("descriptionKeys") or ())))
        rl_pb.schema_url = rl.get("schemaUrl", "")
        for sl in rl.get("scopeLogs") or ():
            sl_pb = rl_pb.scope_logs.add()
            sc = sl.get("scope") or {}
            sl_pb.scope.name = sc.get("name", "")
            sl_pb.scope.version = sc.get("version", "")
            _set_attributes(sl_pb.scope.attributes, decoding.decode_attributes(sc.get("attributes") or []))
            sl_pb.scope.dropped_attributes_count = _envelope_int(sc, "droppedAttributesCount")
            sl_pb.schema_url = sl.get("schemaUrl", "")
            for k, rec in enumerate(sl.get("logRecords") or ()):
                try:
                    f = decoding.decode_log_record(rec)
                except decoding.DecodeError as exc:
                    raise exc.within(f"logRecords[{k}]") from None
                r = sl_pb.log_records.add()
                _fill_record(r, f)
    data: bytes = req.SerializeToString()
    return data


def _fill_record(r: Any, f: decoding.LogRecordFields) -> None:
    r.time_unix_nano = f.time_unix_nano
    r.observed_time_unix_nano = f.observed_time_unix_nano
    r.severity_number = f.severity_number  # an open enum: any int32
    r.severity_text = f.severity_text
    _set_value(r.body, f.body)
    _set_attributes(r.attributes, f.attributes)
    r.dropped_attributes_count = f.dropped_attributes_count
    r.flags = f.flags
    if f.trace_id:
        r.trace_id = bytes.fromhex(f.trace_id)
    if f.span_id:
        r.span_id = bytes.fromhex(f.span_id)
    r.event_name = f.event_name

