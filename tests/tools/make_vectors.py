"""Write otel_audit/testvectors/canonical-v1.json and merkle.json.

Run:  python tests/tools/make_vectors.py [--check]

The expected bytes come from a second, independent implementation written from
docs/canonical-form.md alone (no orjson, no otel_audit.canonical): `ref_canonical` below. The
script refuses to write vectors where it disagrees with otel_audit.canonical, so a vector is
only published when two implementations of the spec agree. The Merkle vectors likewise come
from the recursive definitions of RFC 6962 section 2.1 and are checked against the published
roots of the eight classic test leaves.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import math
import sys
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "otel_audit" / "testvectors"
INTEGRITY_KEYS = ("audit.stream.id", "audit.stream.seq", "audit.integrity.prev", "audit.integrity.digest")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# -- the reference canonical form, from docs/canonical-form.md -------------------------------------


class RefError(ValueError):
    """The value has no canonical form."""


def ref_string(s: str) -> str:
    """A JSON string as RFC 8785 writes it: only '"', '\\' and C0 controls are escaped."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if 0xD800 <= o <= 0xDFFF:
            raise RefError("lone surrogate")
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20:
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _shortest_digits(x: float) -> tuple[str, int]:
    """Digits d1..dn (no trailing zeros) and exponent e with |x| = 0.d1..dn * 10**e, shortest that round-trips.

    Among the shortest strings that read back as x, the one nearest to x is chosen; on a tie,
    the one with an even last digit (round half to even, as correct rounding gives).
    """
    x = abs(x)
    exact = Decimal(x)
    for p in range(1, 18):
        base = Decimal(f"{x:.{p - 1}e}")
        sign, digits, exp = base.as_tuple()
        ulp = Decimal((0, (1,), exp))
        best = None
        for cand in (base, base - ulp, base + ulp):  # on a tie the correctly rounded one (even digit) wins
            nearer = best is None or abs(cand - exact) < abs(best - exact)
            if cand > 0 and float(cand) == x and nearer:
                best = cand
        if best is not None:
            t = best.normalize().as_tuple()
            ds = "".join(map(str, t.digits))
            return ds, len(ds) + int(t.exponent)
    raise AssertionError("17 digits always round-trip")


def ref_format_double(x: float) -> str:
    """Python's repr of a float, written out as rules."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    if x == 0:
        return sign + "0.0"
    digits, e = _shortest_digits(x)
    sci_exp = e - 1  # x = d1.d2...dn * 10**sci_exp
    if -4 <= sci_exp < 16:
        if e <= 0:
            body = "0." + "0" * (-e) + digits
        elif e >= len(digits):
            body = digits + "0" * (e - len(digits)) + ".0"
        else:
            body = digits[:e] + "." + digits[e:]
    else:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        body = f"{mant}e{'-' if sci_exp < 0 else '+'}{abs(sci_exp):02d}"
    return sign + body


def ref_value(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        if not INT64_MIN <= v <= INT64_MAX:
            raise RefError("int outside int64")
        return str(v)
    if isinstance(v, float):
        return '{"double":' + ref_string(ref_format_double(v)) + "}"
    if isinstance(v, str):
        return ref_string(v)
    if isinstance(v, (bytes, bytearray)):
        return '{"bytes":' + ref_string(base64.b64encode(bytes(v)).decode("ascii")) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(ref_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return '{"map":' + ref_object(v) + "}"
    raise RefError(f"not an AnyValue: {type(v).__name__}")


def ref_object(m: Mapping[str, Any]) -> str:
    items = sorted(m.items(), key=lambda kv: kv[0].encode("utf-8", "surrogatepass"))
    return "{" + ",".join(ref_string(k) + ":" + ref_value(v) for k, v in items) + "}"


def ref_canonical(
    stream_id: str, seq: int, event_name: str | None, time_unix_nano: int | None,
    severity_number: int | None, severity_text: str | None, body: Any, attributes: Mapping[str, Any] | None,
) -> bytes:
    attrs = {k: v for k, v in (attributes or {}).items() if k not in INTEGRITY_KEYS}
    parts = [
        '"v1"',
        ref_string(stream_id),
        str(seq),
        ref_string(event_name or ""),
        ref_string(str(time_unix_nano or 0)),
        str(severity_number or 0),
        ref_string(severity_text or ""),
        ref_value(body),
        ref_object(attrs),
    ]
    return ("[" + ",".join(parts) + "]").encode("utf-8")


def ref_digest(prev: bytes, canonical: bytes) -> bytes:
    """The record digest, which is also its Merkle leaf hash: SHA-256(0x00 || prev || canonical)."""
    return hashlib.sha256(b"\x00" + prev + canonical).digest()


# -- decoding a vector input (the OTLP/JSON forms), independent of the package ---------------------


def ref_decode(v: Mapping[str, Any] | None) -> Any:
    if not v:
        return None
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "doubleValue" in v:
        x = v["doubleValue"]
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}[x] if isinstance(x, str) else float(x)
    if "bytesValue" in v:
        return base64.b64decode(v["bytesValue"])
    if "arrayValue" in v:
        return [ref_decode(x) for x in (v["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in v:
        return {kv["key"]: ref_decode(kv.get("value")) for kv in (v["kvlistValue"] or {}).get("values", [])}
    return None


def ref_input_canonical(inp: Mapping[str, Any]) -> bytes:
    attrs = {kv["key"]: ref_decode(kv.get("value")) for kv in inp["attributes"]}
    return ref_canonical(
        inp["stream_id"], inp["seq"], inp["event_name"], int(inp["time_unix_nano"]), inp["severity_number"],
        inp["severity_text"], ref_decode(inp["body"]), attrs,
    )


# -- the cases -------------------------------------------------------------------------------------

SID = "0123456789abcdef0123456789abcdef"
T = "1700000000123456789"


def S(x: str) -> dict[str, Any]:
    return {"stringValue": x}


def I(x: int) -> dict[str, Any]:  # noqa: E743 - short names keep the table readable
    return {"intValue": str(x)}


def D(x: float | str) -> dict[str, Any]:
    return {"doubleValue": x}


def B(x: bool) -> dict[str, Any]:
    return {"boolValue": x}


def Y(x: bytes) -> dict[str, Any]:
    return {"bytesValue": base64.b64encode(x).decode()}


def A(*xs: dict[str, Any]) -> dict[str, Any]:
    return {"arrayValue": {"values": list(xs)}}


def M(*kvs: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"kvlistValue": {"values": [{"key": k, "value": v} for k, v in kvs]}}


def KV(*kvs: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"key": k, "value": v} for k, v in kvs]


PREV = hashlib.sha256(b"the digest of the record before").hexdigest()


def case(name: str, *, body: dict[str, Any] | None = None, attributes: list[dict[str, Any]] | None = None,
         event_name: str = "user.login", time: str = T, severity_number: int = 9, severity_text: str = "INFO",
         seq: int = 7, stream_id: str = SID, prev: str = PREV) -> dict[str, Any]:
    return {"name": name, "input": {
        "stream_id": stream_id, "seq": seq, "event_name": event_name, "time_unix_nano": time,
        "severity_number": severity_number, "severity_text": severity_text, "body": body,
        "attributes": attributes or [], "prev": prev,
    }}


CHECKPOINT_NOTE = (
    "otel-audit/" + SID + "\n50\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
    "chain AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntime 1700000000123456789\nkind size\n"
    'producer {"host.name":"h","process.pid":1}\n\n\u2014 k AAAAAAAA\n'
)

CASES: list[dict[str, Any]] = [
    case("empty record: no event name, time 0, no severity, no body, no attributes",
         event_name="", time="0", severity_number=0, severity_text="", seq=0, prev="00" * 32),
    case("string body", body=S("hello")),
    case("int body 1", body=I(1)),
    case("string body \"1\"", body=S("1")),
    case("double body 1.0", body=D(1.0)),
    case("bool body true", body=B(True)),
    case("attributes 1, \"1\", 1.0, true and false differ",
         attributes=KV(("a", I(1)), ("b", S("1")), ("c", D(1.0)), ("d", B(True)), ("e", B(False)))),
    case("int64 extremes and neighbours",
         attributes=KV(("max", I(INT64_MAX)), ("min", I(INT64_MIN)), ("zero", I(0)), ("neg", I(-1)),
                       ("js_unsafe", I(2**53 + 1))),
         body=A(I(INT64_MAX), I(INT64_MIN))),
    case("negative zero and zero", attributes=KV(("negzero", D(-0.0)), ("zero", D(0.0)), ("int_zero", I(0)))),
    case("NaN and infinities (OTLP/JSON spells them as strings)",
         attributes=KV(("nan", D("NaN")), ("inf", D("Infinity")), ("ninf", D("-Infinity")))),
    case("doubles in Python repr form",
         body=A(D(0.1), D(1e16), D(1e15), D(1e-7), D(0.0001), D(5e-324), D(1.7976931348623157e308),
                D(123456789.125), D(1e22), D(100.0), D(-2.5), D(2.0**53), D(0.30000000000000004))),
    case("integral double 1e16 differs from int 10000000000000000",
         attributes=KV(("d", D(1e16)), ("i", I(10**16)))),
    case("combining accent (NFD) is kept as is", body=S("e\u0301")),
    case("precomposed accent (NFC) differs from NFD", body=S("\u00e9")),
    case("astral emoji in a value and a key", body=S("\U0001f600\U0001f468\u200d\U0001f469\u200d\U0001f467"),
         attributes=KV(("\U0001f511", S("\U0001f600")))),
    case("right-to-left text and bidi overrides are literal",
         body=S("\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u202eabc\u202c")),
    case("NUL and C0 control characters are escaped",
         body=S("\u0000\u0001\u0007\b\t\n\u000b\f\r\u000e\u001b\u001f")),
    case("DEL, U+2028, U+2029, quote, backslash and slash",
         body=S("\u007f\u2028\u2029\"\\/</script>")),
    case("attribute keys sorted by UTF-8 bytes (not UTF-16 units)",
         attributes=KV(("\uffff", I(1)), ("\U0001f600", I(2)), ("b", I(3)), ("B", I(4)), ("\u00e9", I(5)),
                       ("a.b", I(6)), ("a_b", I(7)), ("a", I(8)), ("", I(9)))),
    case("keys that need escaping", attributes=KV(("q\"uote", S("x")), ("new\nline", S("y")), ("\u0000", S("z")))),
    case("nested maps and arrays",
         body=M(("z", A(I(1), M(("b", Y(b"\x00")), ("a", A())), S("s"))), ("a", M(("y", M()), ("x", D(0.5)))),
                ("m", A(A(A(B(False))))))),
    case("map keys inside the body are sorted",
         body=M(("b", I(1)), ("a", I(2)), ("A", I(3)), ("aa", I(4)))),
    case("bytes body", body=Y(b"\x00\x01\x02\xff\xfe")),
    case("empty bytes", body=Y(b"")),
    case("empty string body", body=S("")),
    case("empty array body", body=A()),
    case("empty map body", body=M()),
    case("empty AnyValue body is null, as no body", body={}),
    case("empty AnyValue in an attribute and an array is null",
         attributes=KV(("none", {})), body=A({}, S(""), {})),
    # Duplicate keys (formerly "the last wins" here) are refused by strict decoding: decoding-v1.json.
    case("integrity attributes are left out",
         attributes=KV(("user.id", S("u1")), ("audit.stream.id", S(SID)), ("audit.stream.seq", I(7)),
                       ("audit.integrity.prev", S("00" * 32)), ("audit.integrity.digest", S("ff" * 32)))),
    case("same record without the integrity attributes", attributes=KV(("user.id", S("u1")))),
    case("checkpoint record with a signed note as body", event_name="audit.checkpoint", seq=50,
         body=S(CHECKPOINT_NOTE),
         attributes=KV(("audit.category", S("integrity")), ("audit.action", S("checkpoint")),
                       ("audit.outcome", S("success")), ("audit.checkpoint.kind", S("size")),
                       ("audit.checkpoint.size", I(50)), ("audit.checkpoint.key", S("k")))),
    case("severity ERROR, largest timestamp, large seq",
         severity_number=17, severity_text="ERROR", time="18446744073709551615", seq=2**53 + 1),
    case("timestamp is a decimal string, not a number", time="1", body=I(1)),
]

# Inputs without a canonical form: a producer must not sign them, a verifier must not accept them.
INVALID: list[dict[str, Any]] = [
    {**case("int attribute above int64 (uint64 range)", attributes=KV(("a", I(2**63)))), "error": "int64"},
    {**case("int attribute above int64 next to a double", attributes=KV(("a", I(2**63)), ("b", D(1.5)))),
     "error": "int64"},
    {**case("int attribute below int64", attributes=KV(("a", I(-(2**63) - 1)))), "error": "int64"},
    {**case("int attribute above uint64", attributes=KV(("a", I(2**64)))), "error": "int64"},
    {**case("int body above int64", body=I(2**63)), "error": "int64"},
    {**case("int above int64 nested in an array", body=A(I(1), I(2**63))), "error": "int64"},
]


def build_canonical() -> dict[str, Any]:
    from otel_audit import canonical
    from otel_audit.verify import decode_value

    out = []
    for c in CASES:
        inp = c["input"]
        ref = ref_input_canonical(inp)
        attrs = {kv["key"]: decode_value(kv["value"]) for kv in inp["attributes"]}
        body = None if inp["body"] is None else decode_value(inp["body"])
        got = canonical.canonical_bytes(inp["stream_id"], inp["seq"], inp["event_name"], int(inp["time_unix_nano"]),
                                        inp["severity_number"], inp["severity_text"], body, attrs)
        if got != ref:
            raise SystemExit(f"implementations disagree on {c['name']!r}:\n  ref {ref!r}\n  pkg {got!r}")
        prev = bytes.fromhex(inp["prev"])
        digest = ref_digest(prev, ref)
        if canonical.record_digest(prev, got) != digest:
            raise SystemExit(f"record digests disagree on {c['name']!r}")
        out.append({**c, "canonical": ref.decode("utf-8"), "canonical_hex": ref.hex(),
                    "leaf_sha256": digest.hex()})
    return {
        "format": "otel-audit canonical form v1 test vectors",
        "spec": "docs/canonical-form.md",
        "notes": [
            "input.body and input.attributes use the OTLP/JSON AnyValue and KeyValue forms; body null means no body",
            "canonical is the exact UTF-8 text; canonical_hex the same bytes in hex",
            "leaf_sha256 = SHA-256(0x00 || prev || canonical): the record's chained digest, which is also "
            "its RFC 6962 Merkle leaf hash; input.prev is the digest of the record before (hex)",
            "invalid lists inputs that have no canonical form and must be refused",
        ],
        "vectors": out,
        "invalid": INVALID,
    }


def ref_record_canonical(doc: Mapping[str, Any]) -> bytes:
    """The canonical bytes of the one record of a plain (encoder-form) OTLP/JSON request, by the reference."""
    rec = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    attrs = {kv["key"]: ref_decode(kv.get("value")) for kv in rec.get("attributes", [])}
    sid, seq = attrs.pop("audit.stream.id"), attrs.pop("audit.stream.seq")
    return ref_canonical(sid, seq, rec.get("eventName", ""), int(rec.get("timeUnixNano", 0)),
                         rec.get("severityNumber", 0), rec.get("severityText", ""), ref_decode(rec.get("body")), attrs)


def build_decoding() -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).parent))
    from decoding_vectors import build

    from otel_audit import canonical, decoding

    return build(ref_record_canonical, decoding.decode_line, canonical.canonical_bytes)


# -- Merkle reference (RFC 6962 section 2.1) -------------------------------------------------------

LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
# Published roots of the classic leaves (certificate-transparency test data), sizes 1..8.
PUBLISHED_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) <= 1:
        return []
    k = _k(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True) if 0 < m < len(d) else []


def build_merkle() -> dict[str, Any]:
    data = [bytes.fromhex(x) for x in LEAVES]
    roots = [ref_mth(data[:n]).hex() for n in range(1, 9)]
    if roots != PUBLISHED_ROOTS:
        raise SystemExit("reference Merkle roots differ from the published ones")
    inclusion = [
        {"index": i, "size": n, "leaf_hash": ref_mth(data[i:i + 1]).hex(),
         "path": [h.hex() for h in ref_path(i, data[:n])], "root": roots[n - 1]}
        for n in range(1, 9) for i in range(n)
    ]
    consistency = [
        {"old_size": m, "new_size": n, "old_root": roots[m - 1], "new_root": roots[n - 1],
         "proof": [h.hex() for h in ref_proof(m, data[:n])]}
        for n in range(1, 9) for m in range(1, n + 1)
    ]
    return {
        "format": "RFC 6962 Merkle tree test vectors (leaf hash SHA-256(0x00||d), node SHA-256(0x01||l||r))",
        "leaves": LEAVES,
        "empty_root": hashlib.sha256(b"").hexdigest(),
        "roots": roots,
        "inclusion": inclusion,
        "consistency": consistency,
    }


def dump(doc: Any) -> bytes:
    import json

    return (json.dumps(doc, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    files = {VECTORS / "canonical-v1.json": dump(build_canonical()), VECTORS / "merkle.json": dump(build_merkle()),
             VECTORS / "decoding-v1.json": dump(build_decoding())}
    stale = False
    for path, data in files.items():
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                print(f"{path} is stale; run {Path(__file__).name}", file=sys.stderr)
                stale = True
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            print(f"wrote {path}")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
