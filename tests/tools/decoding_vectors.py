"""The cases of otel_audit/testvectors/decoding-v1.json (strict OTLP/JSON decoding, docs/canonical-form.md §7).

Written as JSON *text*, since several inputs (a member name twice in one object) cannot be held
as a parsed JSON document. `make_vectors.py` builds the file from these cases: a rejected line
must be refused by the package with its rule and path; an accepted line must give the canonical
bytes that the spec-derived reference implementation computes from its plain twin (the same
record in the form our encoder writes), which must decode to the same bytes too.
"""

from __future__ import annotations

import json
from typing import Any

SID = "0123456789abcdef0123456789abcdef"
T = "1700000000123456789"
R = "resourceLogs[0].scopeLogs[0].logRecords[0]"


def _attr(key: str, value: str) -> str:
    return f'{{"key":{json.dumps(key)},"value":{value}}}'


INTEGRITY = ",".join([_attr("audit.stream.id", f'{{"stringValue":"{SID}"}}'),
                      _attr("audit.stream.seq", '{"intValue":"7"}')])


def record(*, fields: str | None = None, attrs: str | None = None, body: str | None = None) -> str:
    """A record's JSON text: time, severity, event name, the integrity attributes, then what is given."""
    f = fields if fields is not None else f'"timeUnixNano":"{T}","severityNumber":9,"severityText":"INFO"'
    a = INTEGRITY + ("," + attrs if attrs else "")
    parts = [f, f'"attributes":[{a}]', '"eventName":"user.login"']
    if body is not None:
        parts.append(f'"body":{body}')
    return "{" + ",".join(p for p in parts if p) + "}"


def line(rec: str | None = None, *, resource: str = '{"attributes":[]}', sl_extra: str = "",
         rl_extra: str = "") -> str:
    r = rec if rec is not None else record()
    return ('{"resourceLogs":[{"resource":' + resource + rl_extra + ',"scopeLogs":[{"scope":{"name":"s"}'
            + sl_extra + ',"logRecords":[' + r + "]}]}]}")


def value(v: str, key: str = "v") -> str:
    """A line whose record has one more attribute `key` with the AnyValue text `v`."""
    return line(record(attrs=_attr(key, v)))


def _nest(n: int) -> str:
    v = '{"intValue":"1"}'
    for _ in range(n):
        v = '{"arrayValue":{"values":[' + v + "]}}"
    return v


A = f"{R}.attributes[2].value"  # the path of the one attribute that value() adds

# (name, line, rule, path from the request root)
REJECTED: list[tuple[str, str, str, str]] = [
    ("a record member given twice (orjson keeps the last, others may keep the first)",
     line(record(fields=f'"timeUnixNano":"{T}","timeUnixNano":"1","severityNumber":9')), "duplicate-member",
     f"{R}.timeUnixNano"),
    ("logRecords given twice in one scopeLogs (pdata appends both lists)",
     line(sl_extra=',"logRecords":[' + record() + "]"), "duplicate-member", "resourceLogs[0].scopeLogs[0].logRecords"),
    ("an AnyValue member given twice", value('{"stringValue":"a","stringValue":"b"}'), "duplicate-member",
     f"{A}.stringValue"),
    ("an attribute key given twice with different values",
     line(record(attrs=_attr("user.id", '{"stringValue":"alice"}') + "," + _attr("user.id", '{"stringValue":"bob"}'))),
     "duplicate-key", f"{R}.attributes[3].key"),
    ("a kvlist key given twice (formerly 'the last wins' in canonical-v1)",
     line(record(body='{"kvlistValue":{"values":[{"key":"k","value":{"intValue":"1"}},'
                      '{"key":"k","value":{"doubleValue":2.5}}]}}')),
     "duplicate-key", f"{R}.body.kvlistValue.values[1].key"),
    ("a resource attribute key given twice",
     line(resource='{"attributes":[' + _attr("service.name", '{"stringValue":"a"}') + ","
          + _attr("service.name", '{"stringValue":"b"}') + "]}"),
     "duplicate-key", "resourceLogs[0].resource.attributes[1].key"),
    ("an AnyValue with two value fields", value('{"stringValue":"a","intValue":"1"}'), "two-value-fields", A),
    ("severityNumber and severity_number",
     line(record(fields=f'"timeUnixNano":"{T}","severityNumber":9,"severity_number":17')), "both-spellings",
     f"{R}.severity_number"),
    ("eventName and event_name",
     line(record(fields=f'"timeUnixNano":"{T}","event_name":"user.logout"')), "both-spellings", f"{R}.event_name"),
    ("event_name alone (OTLP/JSON keys are lowerCamelCase only)",
     line(record(fields=f'"timeUnixNano":"{T}","event_name":"x"').replace(',"eventName":"user.login"', "")),
     "snake-case", f"{R}.event_name"),
    ("string_value in an AnyValue", value('{"string_value":"x"}'), "snake-case", f"{A}.string_value"),
    ("scope_logs in a resourceLogs", line().replace('"scopeLogs"', '"scope_logs"'), "snake-case",
     "resourceLogs[0].scope_logs"),
    ("an unknown field in a record", line(record(fields=f'"timeUnixNano":"{T}","note":"x"')), "unknown-field",
     f"{R}.note"),
    ("stringValueStrindex (a dictionary index, not a value of the record)", value('{"stringValueStrindex":1}'),
     "unknown-field", f"{A}.stringValueStrindex"),
    ("keyStrindex in a KeyValue", line(record(attrs='{"key":"k","keyStrindex":1,"value":{"stringValue":"x"}}')),
     "unknown-field", f"{R}.attributes[2].keyStrindex"),
    ("body null", line(record(body="null")), "bad-type", f"{R}.body"),
    ("stringValue holding a number", value('{"stringValue":5}'), "bad-type", f"{A}.stringValue"),
    ("intValue holding true", value('{"intValue":true}'), "bad-type", f"{A}.intValue"),
    ("a KeyValue without its key", line(record(attrs='{"value":{"stringValue":"x"}}')), "bad-type",
     f"{R}.attributes[2]"),
    ("intValue 6.9 (pdata reads 6)", value('{"intValue":6.9}'), "non-canonical-int", f"{A}.intValue"),
    ("intValue \"6.9\"", value('{"intValue":"6.9"}'), "non-canonical-int", f"{A}.intValue"),
    ("intValue 1e3 (a JSON number with an exponent)", value('{"intValue":1e3}'), "non-canonical-int", f"{A}.intValue"),
    ("intValue with a leading zero", value('{"intValue":"007"}'), "non-canonical-int", f"{A}.intValue"),
    ("intValue with a plus sign", value('{"intValue":"+7"}'), "non-canonical-int", f"{A}.intValue"),
    ("intValue with a space", value('{"intValue":" 7"}'), "non-canonical-int", f"{A}.intValue"),
    ("intValue with an underscore (Python's int() reads 1000)", value('{"intValue":"1_000"}'), "non-canonical-int",
     f"{A}.intValue"),
    ("intValue -0", value('{"intValue":"-0"}'), "non-canonical-int", f"{A}.intValue"),
    ("timeUnixNano in Arabic-Indic digits (Python's int() reads them, Go does not)",
     line(record(fields='"timeUnixNano":"\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660",'
                        '"severityNumber":9')), "non-canonical-int", f"{R}.timeUnixNano"),
    ("timeUnixNano in fullwidth digits", line(record(fields='"timeUnixNano":"\uff11\uff17"')), "non-canonical-int",
     f"{R}.timeUnixNano"),
    ("timeUnixNano as a JSON number with a fraction", line(record(fields='"timeUnixNano":1.7e18')),
     "non-canonical-int", f"{R}.timeUnixNano"),
    ("severityNumber as a string", line(record(fields=f'"timeUnixNano":"{T}","severityNumber":"9"')),
     "non-canonical-int", f"{R}.severityNumber"),
    ("severityNumber as an enum name",
     line(record(fields=f'"timeUnixNano":"{T}","severityNumber":"SEVERITY_NUMBER_INFO"')),
     "non-canonical-int", f"{R}.severityNumber"),
    ("intValue above int64", value('{"intValue":"9223372036854775808"}'), "int-out-of-range", f"{A}.intValue"),
    ("intValue below int64", value('{"intValue":"-9223372036854775809"}'), "int-out-of-range", f"{A}.intValue"),
    ("intValue above uint64 as a JSON number", value('{"intValue":18446744073709551616}'), "int-out-of-range",
     f"{A}.intValue"),
    ("timeUnixNano above uint64", line(record(fields='"timeUnixNano":"18446744073709551616"')), "int-out-of-range",
     f"{R}.timeUnixNano"),
    ("severityNumber above int32", line(record(fields=f'"timeUnixNano":"{T}","severityNumber":2147483648')),
     "int-out-of-range", f"{R}.severityNumber"),
    ("boolValue \"false\" (bool('false') is True)", value('{"boolValue":"false"}'), "non-canonical-bool",
     f"{A}.boolValue"),
    ("boolValue 0", value('{"boolValue":0}'), "non-canonical-bool", f"{A}.boolValue"),
    ("doubleValue as a decimal string", value('{"doubleValue":"2.5"}'), "non-canonical-double", f"{A}.doubleValue"),
    ("doubleValue as the JSON integer -0 (orjson: 0; pdata, protojson: -0.0)", value('{"doubleValue":-0}'),
     "non-canonical-double", ""),
    ("doubleValue \"nan\" (only NaN, Infinity, -Infinity)", value('{"doubleValue":"nan"}'), "non-canonical-double",
     f"{A}.doubleValue"),
    ("bytesValue with data after the padding", value('{"bytesValue":"AA==AAAA"}'), "bad-base64", f"{A}.bytesValue"),
    ("bytesValue in the URL-safe alphabet", value('{"bytesValue":"-_8="}'), "bad-base64", f"{A}.bytesValue"),
    ("bytesValue without padding", value('{"bytesValue":"AAE"}'), "bad-base64", f"{A}.bytesValue"),
    ("bytesValue with non-zero padding bits", value('{"bytesValue":"AB=="}'), "bad-base64", f"{A}.bytesValue"),
    ("bytesValue with a space", value('{"bytesValue":"AA =="}'), "bad-base64", f"{A}.bytesValue"),
    ("traceId in upper case", line(record(fields=f'"timeUnixNano":"{T}","traceId":"' + "AB" * 16 + '"')),
     "bad-hex", f"{R}.traceId"),
    ("spanId of the wrong length", line(record(fields=f'"timeUnixNano":"{T}","spanId":"abcd"')), "bad-hex",
     f"{R}.spanId"),
    ("arrays nested 66 deep (the canonical form stops at 65)", value(_nest(66)), "too-deep",
     A + ".arrayValue.values[0]" * 65 + ".arrayValue"),
    ("a lone surrogate", value('{"stringValue":"\\ud800"}'), "not-json", ""),
]

# (name, edge line, its plain twin): both must decode to the same canonical bytes.
ACCEPTED: list[tuple[str, str, str]] = [
    ("intValue as a JSON integer", value('{"intValue":42}'), value('{"intValue":"42"}')),
    ("intValue at the int64 bounds", line(record(attrs=_attr("lo", '{"intValue":-9223372036854775808}') + ","
                                                 + _attr("hi", '{"intValue":"9223372036854775807"}'))),
     line(record(attrs=_attr("lo", '{"intValue":"-9223372036854775808"}') + ","
                 + _attr("hi", '{"intValue":"9223372036854775807"}')))),
    ("timeUnixNano as a JSON integer",
     line(record(fields=f'"timeUnixNano":{T},"severityNumber":9,"severityText":"INFO"')),
     line()),
    ("timeUnixNano at the uint64 bound", line(record(fields='"timeUnixNano":"18446744073709551615"')),
     line(record(fields='"timeUnixNano":"18446744073709551615"'))),
    ("doubleValue 1 as a JSON integer", value('{"doubleValue":1}'), value('{"doubleValue":1.0}')),
    ("subnormal, negative zero and the special doubles",
     line(record(attrs=",".join([_attr("a", '{"doubleValue":1e-320}'), _attr("b", '{"doubleValue":-0.0}'),
                                 _attr("c", '{"doubleValue":"NaN"}'), _attr("d", '{"doubleValue":"-Infinity"}')]))),
     line(record(attrs=",".join([_attr("a", '{"doubleValue":1e-320}'), _attr("b", '{"doubleValue":-0.0}'),
                                 _attr("c", '{"doubleValue":"NaN"}'), _attr("d", '{"doubleValue":"-Infinity"}')])))),
    ("empty containers written as {}", line(record(attrs=_attr("a", '{"arrayValue":{}}') + ","
                                                   + _attr("m", '{"kvlistValue":{}}'))),
     line(record(attrs=_attr("a", '{"arrayValue":{"values":[]}}') + ","
                 + _attr("m", '{"kvlistValue":{"values":[]}}')))),
    ("a KeyValue without value is the empty value", line(record(attrs='{"key":"none"}')),
     line(record(attrs='{"key":"none","value":{}}'))),
    ("empty bytes", value('{"bytesValue":""}'), value('{"bytesValue":""}')),
    ("strings with escapes, quotes and colons (the member count must see through them)",
     value('{"stringValue":"a\\":\\"b\\\\\\":c \\u00e9 \\ud83d\\ude00"}'),
     value('{"stringValue":"a\\":\\"b\\\\\\":c \u00e9 \U0001f600"}')),
    ("whitespace between tokens (not orjson's form: members are counted)",
     line().replace(",", ", ").replace('":', '" : '), line()),
    ("unknown envelope fields are ignored, as OTLP asks of receivers",
     line(sl_extra=',"futureField":{"a":1}', rl_extra=',"entityRefs":[]'), line()),
    ("fields absent: their zero values", line(record(fields="")), line(record(fields=""))),
]


def build(ref_canonical_of: Any, package_decode_line: Any, canonical_bytes: Any) -> dict[str, Any]:
    """The document; checks the package against every case (and the twin against the reference)."""
    rejected = []
    for name, text, rule, path in REJECTED:
        try:
            package_decode_line(text.encode("utf-8", "surrogatepass"))
        except ValueError as exc:
            got = (getattr(exc, "rule", None), getattr(exc, "path", None))
            if got != (rule, path):
                raise SystemExit(f"{name!r}: the package says {got}, the vector {rule, path}") from None
        else:
            raise SystemExit(f"{name!r}: the package accepts it")
        rejected.append({"name": name, "line": text, "rule": rule, "path": path})
    accepted = []
    for name, edge, twin in ACCEPTED:
        ref = ref_canonical_of(json.loads(twin))
        for text in (edge, twin):
            ((_, _, f),) = package_decode_line(text.encode("utf-8"))
            attrs = dict(f.attributes)
            sid, seq = attrs.pop("audit.stream.id"), attrs.pop("audit.stream.seq")
            got = canonical_bytes(sid, seq, f.event_name, f.time_unix_nano, f.severity_number, f.severity_text,
                                  f.body, attrs)
            if got != ref:
                raise SystemExit(f"{name!r}: the package gives {got!r}, the reference {ref!r}")
        accepted.append({"name": name, "line": edge, "plain": twin, "canonical": ref.decode("utf-8")})
    return {
        "format": "otel-audit strict OTLP/JSON decoding v1 test vectors",
        "spec": "docs/canonical-form.md section 7",
        "notes": [
            "line is one OTLP/JSON ExportLogsServiceRequest as UTF-8 text (kept as text: some repeat a member)",
            "rejected: a verifier MUST refuse the line; rule is the rule id, path the JSON path of the fault "
            "from the request root ('' for the whole line)",
            "accepted: line and plain MUST both decode to the record whose canonical bytes (section 1) are "
            "canonical",
        ],
        "rejected": rejected,
        "accepted": accepted,
    }
