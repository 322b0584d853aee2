"""Attacks on `otel-audit serve` from the outside: a hostile client, a forger on the wire, an insider with the
SQLite file, a reader without the right token, a dying process, and tampered proofs.

Every test starts the real service as a process on a loopback port and talks to it over real sockets.
Records are signed by a small producer written here from docs/canonical-form.md alone (canonical bytes,
chain, RFC 6962 tree, C2SP signed-note checkpoints, Ed25519 with the test key's PEM), so that a test can
sign whatever a compromised producer would: a fork, a wrong root, a wrong size, a checkpoint by an unknown
key. A clean stream of that producer is proven by the service (test_own_producer_is_proven), which shows
the producer follows the spec.

Each test encodes what a user would expect; a failing test is a finding.
"""

from __future__ import annotations

import base64
import concurrent.futures
import gzip
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from otel_audit import keys as keys_mod

sys.path.insert(0, str(Path(__file__).parent))
from service_support import CLI, ServiceProcess, write_config  # noqa: E402

KEY = "test-key"
ZERO = bytes(32)

# -- a producer written from docs/canonical-form.md -------------------------------------------------


def _cstr(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _cval(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _cstr(v)
    if isinstance(v, list):
        return "[" + ",".join(_cval(x) for x in v) + "]"
    if isinstance(v, dict):
        return '{"map":' + _cobj(v) + "}"
    raise TypeError(v)


def _cobj(d: dict[str, Any]) -> str:
    items = sorted(d.items(), key=lambda kv: kv[0].encode())
    return "{" + ",".join(_cstr(k) + ":" + _cval(v) for k, v in items) + "}"


def _otlp_value(v: Any) -> dict[str, Any]:
    if v is None:
        return {}
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [_otlp_value(x) for x in v]}}
    if isinstance(v, dict):
        return {"kvlistValue": {"values": [{"key": k, "value": _otlp_value(x)} for k, x in v.items()]}}
    raise TypeError(v)


def _sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return _sha(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


def key_id(name: str, pub: bytes) -> bytes:
    return _sha(name.encode() + b"\n\x01" + pub)[:4]


def load_signer(keys_dir: Path, name: str = KEY) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key((keys_dir / "private" / f"{name}.pem").read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


class Producer:
    """One stream, signed as docs/canonical-form.md says. `records` are OTLP/JSON log records (dicts)."""

    def __init__(self, signer: Ed25519PrivateKey, name: str = KEY, stream: str | None = None,
                 service: str = "forge") -> None:
        self.signer, self.name = signer, name
        self.stream = stream or os.urandom(16).hex()
        self.service = service
        self.digests: list[bytes] = []
        self.records: list[dict[str, Any]] = []
        self.t = time.time_ns()
        self.checkpoint("start")

    @property
    def seq(self) -> int:
        return len(self.digests)

    def _record(self, event: str, attrs: dict[str, Any], body: Any, *, sev: int = 9, sev_text: str = "INFO",
                digest_override: bytes | None = None, same_time: bool = False) -> dict[str, Any]:
        seq, prev = self.seq, (self.digests[-1] if self.digests else ZERO)
        if not same_time:
            self.t += 1000
        canonical = (f'["v1",{_cstr(self.stream)},{seq},{_cstr(event)},"{self.t}",{sev},{_cstr(sev_text)},'
                     f"{_cval(body)},{_cobj(attrs)}]").encode()
        digest = _sha(b"\x00" + prev + canonical)
        self.digests.append(digest)
        claimed = digest_override or digest
        rec_attrs = [{"key": k, "value": _otlp_value(v)} for k, v in attrs.items()]
        rec_attrs += [
            {"key": "audit.stream.id", "value": {"stringValue": self.stream}},
            {"key": "audit.stream.seq", "value": {"intValue": str(seq)}},
            {"key": "audit.integrity.prev", "value": {"stringValue": prev.hex()}},
            {"key": "audit.integrity.digest", "value": {"stringValue": claimed.hex()}},
        ]
        rec: dict[str, Any] = {"timeUnixNano": str(self.t), "severityNumber": sev, "severityText": sev_text,
                               "eventName": event, "attributes": rec_attrs}
        if body is not None:
            rec["body"] = _otlp_value(body)
        self.records.append(rec)
        return rec

    def event(self, event: str = "authentication.login.succeeded", **attrs: Any) -> dict[str, Any]:
        body = attrs.pop("body", f"event {self.seq}")
        attrs.setdefault("user.id", "alice")
        attrs.setdefault("audit.category", "authentication")
        attrs.setdefault("audit.outcome", "success")
        return self._record(event, attrs, body)

    def note(self, kind: str, *, size: int | None = None, root: bytes | None = None, chain: bytes | None = None,
             signer: Ed25519PrivateKey | None = None, name: str | None = None, stream: str | None = None) -> str:
        n = self.seq if size is None else size
        root = mth(self.digests[:n]) if root is None else root
        chain = (self.digests[n - 1] if n else ZERO) if chain is None else chain
        self.t += 1000
        producer = json.dumps({"service.name": self.service}, separators=(",", ":"), sort_keys=True)
        text = (f"otel-audit/{stream or self.stream}\n{n}\n{base64.b64encode(root).decode()}\n"
                f"chain {base64.b64encode(chain).decode()}\ntime {self.t}\nkind {kind}\n"
                f"interval 3600000000000\nproducer {producer}\n" + ("end\n" if kind == "end" else ""))
        signer = signer or self.signer
        name = name or self.name
        pub = signer.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        sig = base64.b64encode(key_id(name, pub) + signer.sign(text.encode())).decode()
        return f"{text}\n\u2014 {name} {sig}\n"

    def checkpoint(self, kind: str = "size", *, note: str | None = None, size: int | None = None,
                   **kw: Any) -> dict[str, Any]:
        body = note or self.note(kind, size=size, **kw)
        n = self.seq if size is None else size
        attrs = {"audit.category": "integrity", "audit.action": "checkpoint", "audit.outcome": "success",
                 "audit.checkpoint.kind": kind, "audit.checkpoint.size": n,
                 "audit.checkpoint.key": kw.get("name") or self.name}
        return self._record("audit.checkpoint", attrs, body, same_time=True)

    def request(self, records: list[dict[str, Any]] | None = None) -> bytes:
        recs = self.records if records is None else records
        return json.dumps({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": self.service}}]},
            "scopeLogs": [{"scope": {"name": "forge"}, "logRecords": recs}]}]}).encode()

    def id(self, seq: int) -> str:
        return f"{self.stream}-{seq}"


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("attack-keys")
    keys_mod.generate(d / "producer", KEY)
    keys_mod.generate(d / "witness", "witness")
    keys_mod.generate(d / "rogue", KEY)  # same name, another key: not in the service's keyring
    return {"producer": d / "producer", "witness": d / "witness", "rogue": d / "rogue"}


@pytest.fixture
def signer(keyset: dict[str, Path]) -> Ed25519PrivateKey:
    return load_signer(keyset["producer"])


def make_service(folder: Path, keyset: dict[str, Path], **extra: Any) -> ServiceProcess:
    folder.mkdir(parents=True, exist_ok=True)
    extra.setdefault("witness_keys", str(keyset["witness"]))
    # written before signing at ingest (on by default with a witness key): these attacks are on records stored
    # unsigned, as received; tests/test_service_sign_at_ingest.py attacks signing at ingest
    extra.setdefault("sign_at_ingest", False)
    return ServiceProcess(write_config(folder, keyset["producer"], **extra))


@pytest.fixture
def svc(tmp_path: Path, keyset: dict[str, Path]):
    s = make_service(tmp_path / "svc", keyset, limits={"max_request_bytes": 1 << 20, "max_inflight": 4})
    with s:
        yield s


@pytest.fixture(scope="module")
def shared_svc(tmp_path_factory: pytest.TempPathFactory, keyset: dict[str, Path]):
    """One service for the tests that only read and must get the same answer whatever it holds."""
    s = make_service(tmp_path_factory.mktemp("shared-svc"), keyset,
                     limits={"max_request_bytes": 1 << 20, "max_inflight": 4})
    with s:
        yield s


def post(svc: ServiceProcess, body: bytes, **headers: str) -> requests.Response:
    return svc.post_json(body, **headers)


def ok(r: requests.Response) -> dict[str, Any]:
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def clean_stream(signer: Ed25519PrivateKey, n: int = 6, *, end: bool = True) -> Producer:
    p = Producer(signer)
    for i in range(n):
        p.event(i=i)
        if i == 2:
            p.checkpoint("size")
    if end:
        p.checkpoint("end")
    return p


def status_of(svc: ServiceProcess, eid: str) -> str | None:
    r = svc.get(f"/v1/events/{eid}")
    if r.status_code == 404:
        return None
    return ok(r)["status"]


def findings(svc: ServiceProcess) -> list[dict[str, Any]]:
    return ok(svc.get("/v1/findings"))["findings"]


def stream_row(svc: ServiceProcess, sid: str) -> dict[str, Any] | None:
    for s in ok(svc.get("/v1/streams"))["streams"]:
        if s["id"] == sid:
            return s
    return None


def assert_json_error(r: requests.Response, *codes: int) -> None:
    assert r.status_code in codes, (r.status_code, r.text[:500])
    body = r.json()
    assert "Traceback" not in r.text
    assert body, r.text


def alive(svc: ServiceProcess) -> None:
    assert svc.proc is not None and svc.proc.poll() is None, svc.log.read_text()[-3000:]
    assert svc.get("/healthz").status_code == 200


def log_text(svc: ServiceProcess) -> str:
    return svc.log.read_text(errors="replace")


# == 0. the producer follows the spec ==============================================================


def test_own_producer_is_proven(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """Baseline: a clean stream signed by the spec-only producer is proven whole and the stream closed."""
    p = clean_stream(signer)
    assert ok(post(svc, p.request())) == {}
    st = stream_row(svc, p.stream)
    assert st is not None and st["state"] == "closed", st
    assert st["proven"] == p.seq and st["failed"] == 0, st
    assert all(e["status"] == "proven" for e in svc.events({"stream": p.stream}))
    assert findings(svc) == []


# == 1. hostile client: the receiver ================================================================


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"null", b'{"resourceLogs": 5}', b"\xff\xfe\x00",
                                  b'{"resourceLogs":[],"resourceLogs":[]}'])
def test_malformed_json_is_400(svc: ServiceProcess, body: bytes) -> None:
    """A malformed OTLP/JSON request is a 400 with a google.rpc.Status JSON message, never a 500."""
    r = post(svc, body)
    assert_json_error(r, 400)
    assert r.json().get("message")
    alive(svc)


def test_gzip_bomb_is_413(svc: ServiceProcess) -> None:
    """A 1 KB-ish gzip that inflates to 200 MB (limit 1 MB) is refused with 413 quickly, memory stays bounded."""
    bomb = gzip.compress(b"{" + b" " * (200 << 20) + b"}", 9)
    t0 = time.monotonic()
    r = requests.post(svc.url + "/v1/logs", data=bomb, timeout=60,
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert r.status_code == 413, (r.status_code, r.text[:300])
    assert time.monotonic() - t0 < 20
    alive(svc)


def test_gzip_garbage_is_400(svc: ServiceProcess) -> None:
    """Content-Encoding: gzip with a body that is not gzip (or truncated gzip) is a 400, not a 500."""
    for data in (b"not gzip at all", gzip.compress(b'{"resourceLogs":[]}')[:-6]):
        r = requests.post(svc.url + "/v1/logs", data=data, timeout=30,
                          headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
        assert_json_error(r, 400)
    alive(svc)


def test_unknown_content_encoding_refused(svc: ServiceProcess) -> None:
    """Content-Encoding: br / deflate / 'gzip, gzip' is refused (4xx), never stored as if plain."""
    body = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"enc"}}]}]}]}'
    for enc in ("br", "deflate", "gzip, gzip", "identity, gzip"):
        r = requests.post(svc.url + "/v1/logs", data=body, timeout=30,
                          headers={"Content-Type": "application/json", "Content-Encoding": enc})
        assert 400 <= r.status_code < 500, (enc, r.status_code, r.text)
    alive(svc)


def test_oversized_plain_body_is_413(svc: ServiceProcess) -> None:
    """A plain body over max_request_bytes (1 MB here) is 413, and a lying Content-Length is not trusted."""
    r = post(svc, b"{" + b" " * (2 << 20) + b"}")
    assert r.status_code == 413, (r.status_code, r.text[:200])
    alive(svc)


def test_deeply_nested_json_is_400(svc: ServiceProcess) -> None:
    """100,000 nested arrays in a body are refused with 400 (too deep), not a RecursionError / 500 / crash."""
    deep = '{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":' + '{"arrayValue":{"values":[' * 3000 \
        + "]}}" * 3000 + "}]}]}]}"
    r = post(svc, deep.encode())
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])
    if r.status_code == 200:
        assert r.json().get("partialSuccess", {}).get("rejectedLogRecords") in (1, "1"), r.text
    raw = b"[" * 100_000 + b"]" * 100_000
    assert_json_error(post(svc, raw), 400)
    alive(svc)


def test_deeply_nested_protobuf_is_400_or_refused(svc: ServiceProcess) -> None:
    """An AnyValue nested 5,000 levels in protobuf is refused (400 or partialSuccess), never a 500 or crash."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    # build the bytes by hand: AnyValue{array_value(5)=ArrayValue{values(1)=AnyValue{...}}}
    def varint(n: int) -> bytes:
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                out += bytes([b | 0x80])
            else:
                return out + bytes([b])

    inner = AnyValue(string_value="x").SerializeToString()
    for _ in range(5000):
        arr = b"\x0a" + varint(len(inner)) + inner          # ArrayValue.values = 1
        inner = b"\x2a" + varint(len(arr)) + arr              # AnyValue.array_value = 5
    rec = b"\x2a" + varint(len(inner)) + inner               # LogRecord.body = 5
    scope_logs = b"\x12" + varint(len(rec)) + rec           # ScopeLogs.log_records = 2
    res_logs = b"\x12" + varint(len(scope_logs)) + scope_logs  # ResourceLogs.scope_logs = 2
    req = b"\x0a" + varint(len(res_logs)) + res_logs        # ExportLogsServiceRequest.resource_logs = 1
    assert ExportLogsServiceRequest  # the schema the bytes follow
    r = requests.post(svc.url + "/v1/logs", data=req, timeout=60,
                      headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])
    stored = svc.events({"status": "unsigned"})
    assert not any(isinstance(e.get("body"), list) for e in stored), "a 5000-deep body was stored"
    alive(svc)


@pytest.mark.parametrize("ct", ["application/x-protobuf", "application/json"])
def test_truncated_protobuf_or_json_is_400(svc: ServiceProcess, ct: str) -> None:
    """Random bytes as protobuf, a JSON body labelled protobuf, and a truncated message are each a 400."""
    for data in (os.urandom(512), b'{"resourceLogs":[]}' if ct.endswith("protobuf") else b"\x0a\x05\x12",
                 b"\x0a\xff\xff\xff\x0f\x12"):
        r = requests.post(svc.url + "/v1/logs", data=data, headers={"Content-Type": ct}, timeout=30)
        assert r.status_code == 400, (data[:20], r.status_code, r.text[:200])
    alive(svc)


def test_lone_surrogate_and_nul(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A lone surrogate in an unsigned record is refused (no canonical form) and never stored mangled;
    NUL in a string is stored exactly and found again."""
    body = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"a\\ud800b"}}]}]}]}'
    r = post(svc, body)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json().get("partialSuccess"), f"lone surrogate accepted silently: {r.text}"
    nul = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"nul\\u0000here"}}]}]}]}'
    assert ok(post(svc, nul)) == {}
    bodies = [e["body"] for e in svc.events({"status": "unsigned"})]
    assert "nul\x00here" in bodies, bodies
    assert not any(isinstance(b, str) and ("\ufffd" in b or "\ud800" in b) for b in bodies), bodies
    alive(svc)


def test_huge_attribute_count(svc: ServiceProcess) -> None:
    """A record with 20,000 attributes (under 1 MB) is stored or refused within seconds, never a 500."""
    attrs = [{"key": f"k{i}", "value": {"stringValue": "v"}} for i in range(20000)]
    body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": attrs}]}]}]}).encode()
    assert len(body) < 1 << 20
    t0 = time.monotonic()
    r = post(svc, body)
    assert r.status_code in (200, 400, 413), (r.status_code, r.text[:300])
    assert time.monotonic() - t0 < 30
    alive(svc)


def test_many_records_in_one_request_all_or_counted(svc: ServiceProcess) -> None:
    """5,000 unsigned records in one request: either every one is stored (200 {}) or the refusal is counted."""
    recs = [{"body": {"stringValue": f"bulk {i}"}} for i in range(5000)]
    body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": recs}]}]}).encode()
    r = post(svc, body)
    assert r.status_code == 200, r.text[:300]
    stored = len(svc.events({"q": "bulk"}))
    rejected = int(r.json().get("partialSuccess", {}).get("rejectedLogRecords", 0))
    assert stored + rejected == 5000, (stored, rejected)


def _raw(svc: ServiceProcess, data: bytes, timeout: float = 10) -> bytes:
    host, port = svc.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


def test_header_tricks(svc: ServiceProcess) -> None:
    """Two Content-Length headers, a negative one, chunked + Content-Length, and a chunked body: no 5xx,
    no request smuggling (the second request is not executed as part of the first body)."""
    ep = svc.url.removeprefix("http://")
    body = b'{"resourceLogs":[]}'
    cases = [
        b"POST /v1/logs HTTP/1.1\r\nHost: " + ep.encode() + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: 19\r\nContent-Length: 5\r\nConnection: close\r\n\r\n" + body,
        b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -1\r\n"
        b"Connection: close\r\n\r\n" + body,
        b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n13\r\n" + body + b"\r\n0\r\n\r\n",
    ]
    for raw in cases:
        out = _raw(svc, raw)
        status = out.split(b"\r\n", 1)[0]
        assert not status.startswith(b"HTTP/1.1 5"), out[:300]
    chunked = (b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n13\r\n" + body + b"\r\n0\r\n\r\n")
    out = _raw(svc, chunked)
    assert out.startswith(b"HTTP/1.1 200") or out.startswith(b"HTTP/1.1 4"), out[:300]
    alive(svc)


def test_slowloris_does_not_block_others(svc: ServiceProcess) -> None:
    """40 connections that send headers promising a body and then stall do not stop other clients:
    /healthz and an ingest still answer within seconds, and the stalled ones are eventually dropped."""
    host, port = svc.url.removeprefix("http://").rsplit(":", 1)
    socks = []
    try:
        for _ in range(40):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100000\r\n\r\n{\"resourceLogs\":")
            socks.append(s)
        t0 = time.monotonic()
        r = requests.get(svc.url + "/healthz", timeout=10)
        assert r.status_code == 200
        r = post(svc, b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"after"}}]}]}]}')
        assert r.status_code == 200, r.text
        assert time.monotonic() - t0 < 10
    finally:
        for s in socks:
            s.close()
    alive(svc)


def test_flood_of_requests_never_500(svc: ServiceProcess) -> None:
    """200 concurrent ingests (max_inflight 4): each is 200 or 503 with Retry-After, none 500; every 200's
    record is stored (acknowledged means stored)."""
    def one(i: int) -> tuple[int, str | None, int]:
        body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [
            {"body": {"stringValue": f"flood-{i}"}}]}]}]}).encode()
        r = requests.post(svc.url + "/v1/logs", data=body, headers={"Content-Type": "application/json"},
                          timeout=60)
        return r.status_code, r.headers.get("Retry-After"), i

    with concurrent.futures.ThreadPoolExecutor(64) as ex:
        results = list(ex.map(one, range(200)))
    codes = {c for c, _, _ in results}
    assert codes <= {200, 503}, codes
    assert all(ra for c, ra, _ in results if c == 503)
    acked = {f"flood-{i}" for c, _, i in results if c == 200}
    stored = {e["body"] for e in svc.events({"q": "flood"})}
    assert acked <= stored, acked - stored


# == 1b. hostile client: the query API ==============================================================


BAD_PARAMS = [
    {"limit": "0"}, {"limit": "1001"}, {"limit": "abc"}, {"limit": "1e3"}, {"limit": "-1"},
    {"limit": "99999999999999999999999"}, {"limit": " 5"}, {"from": "yesterday"},
    {"from": "2024-01-01T00:00:00"}, {"to": "1e400"}, {"from": "nan"}, {"to": "99999999999999999999"},
    {"from": "2024-13-45T99:00:00Z"}, {"client.address": "999.1.1.1"}, {"client.address": "10.0.0.0/33"},
{"client.address": "::ffff:1.2.3.4/200"}, {"client.address": "a" * 5000},
    {"status": "proven'--"}, {"order": "random"}, {"format": "xml"}, {"cursor": "A" * 10000},
    {"cursor": "eyJ0IjoxfQ=="}, {"cursor": "\x00"}, {"filter": "user.id eq"}, {"filter": "("},
    {"filter": "(" * 5000 + 'user.id eq "a"' + ")" * 5000}, {"filter": 'nosuch.field eq "a"'},
    {"filter": 'user.id eq "a" or ' * 3000 + 'user.id eq "b"'}, {"filter": "user.id eq 'a'"},
    {"filter": 'user.id eq "a\\"'}, {"filter": "user.id pr and"}, {"nosuch": "1"},
    {"order": ["asc", "desc"]}, {"limit": ["1", "2"]},
]


@pytest.mark.parametrize("params", BAD_PARAMS, ids=[str(i) for i in range(len(BAD_PARAMS))])
def test_hostile_query_params_are_400(shared_svc: ServiceProcess, params: dict[str, Any]) -> None:
    """Every bad query parameter is a 400 whose JSON message names the parameter; never a 500."""
    r = shared_svc.get("/v1/events", params)
    assert r.status_code == 400, (params if len(str(params)) < 200 else str(params)[:200], r.status_code,
                                  r.text[:300])
    msg = r.json()["error"]["message"]
    name = next(iter(params))
    assert name in msg, msg[:300]


@pytest.mark.parametrize("q", ['"', "*", "a OR b", "NEAR(a b)", "^a", "user.id:alice", "' OR 1=1 --",
                               "a\x00b", "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),
                               "-alice", "ali*", "{user.id}: alice", "alice NOT event", "\u200b", "", " " * 10])
def test_fts_syntax_in_q_is_quoted(svc: ServiceProcess, signer: Ed25519PrivateKey, q: str) -> None:
    """FTS5 syntax and SQL-shaped strings in q are words, not query syntax: a 200 (or a 400 naming q),
    never a 500; `' OR 1=1 --`, `*` and the prefix `ali*` match nothing, `-alice` is the word alice (not
    NOT alice), `alice NOT event` needs the word NOT."""
    p = clean_stream(signer, 3)
    ok(post(svc, p.request()))
    r = svc.get("/v1/events", {"q": q})
    assert r.status_code in (200, 400), (q, r.status_code, r.text[:300])
    if r.status_code == 400:
        assert "q" in r.json()["error"]["message"]
    elif q in ("' OR 1=1 --", "*", "ali*", "a OR b", "alice NOT event"):
        assert r.json()["events"] == [], (q, len(r.json()["events"]))
    elif q == "-alice":
        assert len(r.json()["events"]) == 3, r.text[:300]


def test_sql_shaped_values_in_every_field(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """SQL-shaped strings as values of every equality parameter match nothing (no injection), and
    repeated parameters OR together as documented."""
    p = clean_stream(signer, 3)
    ok(post(svc, p.request()))
    inj = "x' OR '1'='1"
    for name in ("actor", "user", "category", "outcome", "target.type", "target.id", "service", "stream",
                 "session", "trace", "action", "status"):
        r = svc.get("/v1/events", {name: inj})
        assert r.status_code in (200, 400), (name, r.status_code, r.text[:300])
        if r.status_code == 200:
            assert r.json()["events"] == [], name
    both = svc.events([("user", "alice"), ("user", inj)])
    assert len(both) == 3


def test_cursor_bound_to_query(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A cursor of one query is refused by another (400 naming cursor); an edited cursor is refused."""
    p = clean_stream(signer, 6)
    ok(post(svc, p.request()))
    page = ok(svc.get("/v1/events", {"limit": 2, "user": "alice"}))
    cur = page["next_cursor"]
    assert cur
    r = svc.get("/v1/events", {"limit": 2, "user": "bob", "cursor": cur})
    assert r.status_code == 400 and "cursor" in r.json()["error"]["message"], r.text
    r = svc.get("/v1/events", {"limit": 3, "user": "alice", "cursor": cur})
    assert r.status_code in (200, 400), r.text
    flipped = cur[:-2] + ("A" if cur[-2] != "A" else "B") + cur[-1]
    r = svc.get("/v1/events", {"limit": 2, "user": "alice", "cursor": flipped})
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("eid", ["..%2f..%2fetc%2fpasswd", "../../etc/passwd", "%00", "x" * 5000, "u-", "-1",
                                 "u-%27%20OR%201=1--", "%E2%80%AE", "%ff%fe", "abc-99999999999999999999999"])
def test_path_traversal_and_odd_ids(shared_svc: ServiceProcess, eid: str) -> None:
    """Odd event ids in /v1/events/{id} and /proof are a 404 (or 400) JSON error; never a 500 or a file."""
    for suffix in ("", "/proof"):
        r = requests.get(f"{shared_svc.url}/v1/events/{eid}{suffix}", timeout=30)
        assert r.status_code in (400, 404), (eid[:40], suffix, r.status_code, r.text[:200])
        assert "root:" not in r.text
        r.json()


@pytest.mark.parametrize("size", ["9223372036854775808", "9999999999999999999", "-1", "1e3", "18446744073709551616"])
def test_proof_size_out_of_range_is_400(shared_svc: ServiceProcess, size: str) -> None:
    """Found by the fuzz run (tests/test_service_fuzz.py): ?size=2^63 passed the 19-digit check and overflowed
    the store's 64-bit integer (a plain-text 500). Any size that is not a tree size is a 400 naming it."""
    r = shared_svc.get("/v1/events/0123456789abcdef0123456789abcdef-1/proof", {"size": size})
    assert r.status_code == 400, (size, r.status_code, r.text[:200])
    assert "size" in r.json()["error"]["message"]


def test_other_methods_and_paths(svc: ServiceProcess) -> None:
    """DELETE/PUT on the API, GET on /v1/logs, unknown paths: 404/405 JSON, never 500; nothing deleted."""
    for method, path in [("DELETE", "/v1/events"), ("PUT", "/v1/events"), ("GET", "/v1/logs"),
                         ("POST", "/v1/events"), ("DELETE", "/v1/findings"), ("GET", "/v1/../healthz"),
                         ("GET", "/v1/nosuch"), ("OPTIONS", "/v1/logs"), ("TRACE", "/v1/events")]:
        r = requests.request(method, svc.url + path, timeout=30)
        assert r.status_code < 500, (method, path, r.status_code, r.text[:200])


# == 2. forger on the wire / compromised producer ===================================================


def test_wrong_digest_is_failed_not_proven(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A record whose content does not give its digest (edited after signing) is failed with a digest
    finding; the checkpoint above it does not make it proven (the stream summary: see
    test_stream_summary_counts_digest_failure)."""
    p = clean_stream(signer, 6)
    rec = p.records[2]
    rec["body"] = {"stringValue": "edited in transit"}
    r = ok(post(svc, p.request()))
    assert r == {} or r.get("partialSuccess") is not None
    assert status_of(svc, p.id(2)) == "failed"
    kinds = [f.get("kind") or f.get("type") for f in findings(svc)]
    assert any("digest" in str(k) for k in kinds), findings(svc)
    assert not any(e["status"] == "proven" and e["stream"]["seq"] == 2 for e in svc.events({"status": "proven"}))


def test_claims_signed_but_no_digest(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A record carrying audit.stream.id/seq but no digest or prev is not 'unsigned' and not 'proven': it is
    refused or failed with a finding."""
    p = clean_stream(signer, 3)
    ok(post(svc, p.request()))
    forged = {"timeUnixNano": str(time.time_ns()), "eventName": "authorization.granted", "attributes": [
        {"key": "audit.stream.id", "value": {"stringValue": p.stream}},
        {"key": "audit.stream.seq", "value": {"intValue": str(p.seq)}},
        {"key": "user.id", "value": {"stringValue": "mallory"}}]}
    r = post(svc, p.request([forged]))
    assert r.status_code in (200, 400)
    st = status_of(svc, p.id(p.seq))
    assert st in (None, "failed"), st
    bad = svc.events({"user": "mallory"})
    assert all(e["status"] not in ("proven", "unsigned") for e in bad), bad


def test_checkpoint_by_unknown_key(svc: ServiceProcess, signer: Ed25519PrivateKey,
                                   keyset: dict[str, Path]) -> None:
    """A producer writing records signed with a key not in the keyring (same name, other key): nothing is
    proven, a finding names the checkpoint."""
    rogue = load_signer(keyset["rogue"])
    p = Producer(rogue)
    for i in range(4):
        p.event(i=i)
    p.checkpoint("end")
    ok(post(svc, p.request()))
    st = stream_row(svc, p.stream)
    assert st is not None and st["proven"] == 0, st
    assert all(e["status"] != "proven" for e in svc.events({"stream": p.stream}))
    assert any(f.get("stream") == p.stream for f in findings(svc)), findings(svc)


def test_mixed_good_and_rogue_signature(svc: ServiceProcess, signer: Ed25519PrivateKey,
                                        keyset: dict[str, Path]) -> None:
    """A checkpoint of a stream that starts with the real key, then one signed by a rogue key of the same
    name: the rogue checkpoint is named, records under it are not proven."""
    rogue = load_signer(keyset["rogue"])
    p = Producer(signer)
    for i in range(3):
        p.event(i=i)
    p.checkpoint("size")
    for i in range(3):
        p.event(i=10 + i)
    p.checkpoint("end", signer=rogue)
    ok(post(svc, p.request()))
    for seq in range(5, 8):
        assert status_of(svc, p.id(seq)) != "proven", seq
    assert any(f.get("stream") == p.stream for f in findings(svc))


def test_checkpoint_wrong_root_is_fork(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A validly signed checkpoint whose root is not the tree the service received is a fork finding
    (logged as a SECURITY error); the records under it are not proven."""
    p = Producer(signer)
    for i in range(4):
        p.event(i=i)
    p.checkpoint("end", root=_sha(b"another tree"))
    ok(post(svc, p.request()))
    fs = [f for f in findings(svc) if f.get("stream") == p.stream]
    assert any("fork" in json.dumps(f) for f in fs), fs
    for seq in range(1, 5):
        assert status_of(svc, p.id(seq)) != "proven"
    assert "SECURITY" in log_text(svc)


def test_checkpoint_wrong_size(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A validly signed checkpoint at seq 5 that claims size 3 (with the root of 3) is named and does not
    prove seq 3..4."""
    p = Producer(signer)
    for i in range(4):
        p.event(i=i)
    p.checkpoint("end", size=3)
    ok(post(svc, p.request()))
    assert any(f.get("stream") == p.stream for f in findings(svc)), findings(svc)
    assert status_of(svc, p.id(4)) != "proven"
    assert status_of(svc, p.id(3)) != "proven"


def test_checkpoint_attrs_disagree_with_note(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A checkpoint record whose audit.checkpoint.size attribute disagrees with its signed note is named."""
    p = Producer(signer)
    for i in range(3):
        p.event(i=i)
    rec = p.checkpoint("end")
    for kv in rec["attributes"]:
        if kv["key"] == "audit.checkpoint.size":
            kv["value"] = {"intValue": "999"}
    # re-sign nothing: the digest now no longer matches either, so also rebuild it honestly
    p2 = Producer(signer)
    for i in range(3):
        p2.event(i=i)
    note = p2.note("end")
    attrs = {"audit.category": "integrity", "audit.action": "checkpoint", "audit.outcome": "success",
             "audit.checkpoint.kind": "end", "audit.checkpoint.size": 999, "audit.checkpoint.key": KEY}
    p2._record("audit.checkpoint", attrs, note, same_time=True)
    ok(post(svc, p2.request()))
    assert any(f.get("stream") == p2.stream for f in findings(svc)), findings(svc)
    assert status_of(svc, p2.id(4)) != "proven"


def test_checkpoint_for_other_stream(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A checkpoint note naming another stream's origin does not prove this stream."""
    p = Producer(signer)
    for i in range(3):
        p.event(i=i)
    p.checkpoint("end", stream=os.urandom(16).hex())
    ok(post(svc, p.request()))
    assert status_of(svc, p.id(2)) != "proven"
    assert any(f.get("stream") == p.stream for f in findings(svc)), findings(svc)


def _fork_pair(signer: Ed25519PrivateKey) -> tuple[Producer, Producer]:
    a = Producer(signer)
    for i in range(3):
        a.event(i=i)
    a.checkpoint("size")
    b = Producer(signer, stream=a.stream)
    b.records, b.digests, b.t = list(a.records), list(a.digests), a.t
    for i in range(3):
        a.event(i=100 + i, **{"user.id": "alice"})
        b.event(i=200 + i, **{"user.id": "mallory"})
    a.checkpoint("end")
    b.checkpoint("end")
    return a, b


def test_fork_second_history_is_named(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A second, different, validly signed history of a stored stream (a fork) is named in findings; the
    stored events stay as they were and no event of the second history is shown proven."""
    a, b = _fork_pair(signer)
    ok(post(svc, a.request()))
    before = {e["id"]: e["digest"] for e in svc.events({"stream": a.stream})}
    r = post(svc, b.request(b.records[5:]))
    assert r.status_code == 200
    assert r.json().get("partialSuccess"), f"variants refused in partialSuccess expected: {r.text}"
    after = {e["id"]: e["digest"] for e in svc.events({"stream": a.stream})}
    assert after == before
    assert not svc.events({"user": "mallory"})
    fs = [f for f in findings(svc) if f.get("stream") == a.stream]
    assert fs, "a fork/variant of a closed stream left no finding"


def test_fork_tail_of_open_stream(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A producer that sends history B's tail first, then A's (each validly signed on its own): the service
    keeps the first, names the second as variants/fork; the stream is not 'closed' and clean."""
    a, b = _fork_pair(signer)
    ok(post(svc, a.request(a.records[:5])))
    ok(post(svc, b.request(b.records[5:])))
    r = post(svc, a.request(a.records[5:]))
    assert r.status_code == 200
    fs = [f for f in findings(svc) if f.get("stream") == a.stream]
    assert fs, "fork left no finding"
    st = stream_row(svc, a.stream)
    assert st is not None
    assert not (st["failed"] == 0 and st["state"] == "closed" and not fs)


def test_records_out_of_order_wait_then_prove(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """Records sent in reverse order, one per request: every one is pending until its turn, then all are
    proven; no finding."""
    p = clean_stream(signer, 5)
    for rec in reversed(p.records[1:]):
        ok(post(svc, p.request([rec])))
    assert status_of(svc, p.id(3)) == "pending"
    ok(post(svc, p.request([p.records[0]])))
    assert all(e["status"] == "proven" for e in svc.events({"stream": p.stream}))
    assert findings(svc) == []


def test_deleted_in_transit_never_proven(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A record removed in transit: the records after it are never proven (pending, waiting for the seq), the
    stream is not closed, and the missing seq shows in the stream state."""
    p = clean_stream(signer, 6)
    gone = 4
    ok(post(svc, p.request(p.records[:gone] + p.records[gone + 1:])))
    assert status_of(svc, p.id(gone)) is None
    for seq in range(gone + 1, p.seq):
        assert status_of(svc, p.id(seq)) == "pending", seq
    st = stream_row(svc, p.stream)
    assert st is not None and st["state"] != "closed" and st["linked"] == gone, st


def test_replay_is_duplicate_not_stored_twice(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """The same request replayed 3 times: acknowledged, stored once, counted as duplicates."""
    p = clean_stream(signer, 3)
    for _ in range(3):
        assert ok(post(svc, p.request())) == {}
    assert len(svc.events({"stream": p.stream})) == p.seq
    assert ok(svc.get("/healthz"))["duplicates"] >= 2 * p.seq


def test_variant_refused_and_kept_as_evidence(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A different record at a stored (stream, seq), even with a self-consistent digest, is refused in
    partialSuccess and kept in findings; the stored event is unchanged (its status: see
    test_variant_does_not_discredit_proven_event)."""
    p = clean_stream(signer, 3)
    ok(post(svc, p.request()))
    stored = ok(svc.get(f"/v1/events/{p.id(2)}"))
    q = Producer(signer, stream=p.stream)
    q.records, q.digests, q.t = list(p.records[:2]), list(p.digests[:2]), p.t
    q.event(i=99, **{"user.id": "mallory"})
    r = ok(post(svc, q.request([q.records[2]])))
    assert r.get("partialSuccess", {}).get("rejectedLogRecords") in (1, "1"), r
    after = ok(svc.get(f"/v1/events/{p.id(2)}"))
    assert {k: v for k, v in after.items() if k != "status"} == {k: v for k, v in stored.items() if k != "status"}
    assert any("variant" in json.dumps(f) for f in findings(svc)), findings(svc)


def test_unsigned_record_with_spoofed_status_fields(svc: ServiceProcess) -> None:
    """An unsigned record that carries attributes named like the service's own fields ('status', 'signed',
    'audit.checkpoint.*') is still shown unsigned."""
    rec = {"eventName": "audit.checkpoint", "body": {"stringValue": "otel-audit/x\n1\n"}, "attributes": [
        {"key": "status", "value": {"stringValue": "proven"}},
        {"key": "signed", "value": {"stringValue": "at source"}},
        {"key": "audit.checkpoint.kind", "value": {"stringValue": "end"}}]}
    body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [rec]}]}]}).encode()
    post(svc, body)
    own = "otel-audit-service"  # the service's own stream: its checkpoints are proven, rightly
    for e in svc.events({"action": "audit.checkpoint"}):
        if e["service"] != own:
            assert e["status"] == "unsigned" and e["signed"] == "no", e
    assert not [e for e in svc.events({"status": "proven"}) if e["service"] != own]


def test_stream_id_not_hex_or_seq_negative(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """Integrity attributes with a bad stream id (path chars, uppercase) or a negative / huge seq are refused
    or failed; they never make an event id with '/' or '..' in it, and nothing is proven."""
    for sid, seq in [("../../etc", "0"), ("ABCDEF0123456789ABCDEF0123456789", "0"),
                     (os.urandom(16).hex(), "-1"), (os.urandom(16).hex(), "18446744073709551615")]:
        rec = {"timeUnixNano": "1", "eventName": "x", "attributes": [
            {"key": "audit.stream.id", "value": {"stringValue": sid}},
            {"key": "audit.stream.seq", "value": {"intValue": seq}},
            {"key": "audit.integrity.prev", "value": {"stringValue": ZERO.hex()}},
            {"key": "audit.integrity.digest", "value": {"stringValue": ZERO.hex()}}]}
        r = post(svc, json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [rec]}]}]}).encode())
        assert r.status_code in (200, 400), (sid, seq, r.status_code, r.text[:300])
    for e in svc.events():
        assert "/" not in e["id"] and ".." not in e["id"], e["id"]
        if e["service"] != "otel-audit-service":  # the service's own stream is proven, rightly
            assert e["status"] != "proven", e


# == 3. insider with the SQLite file ================================================================


def _db(svc: ServiceProcess) -> Path:
    return svc.config.parent / "audit.db"


def verify_store(svc: ServiceProcess, keyset: dict[str, Path], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "verify", "--keys", str(keyset["producer"]), "--witness-keys", str(keyset["witness"]),
                           "--store", f"sqlite:///{_db(svc)}", "--allow-open", *extra], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def stored(tmp_path: Path, keyset: dict[str, Path], signer: Ed25519PrivateKey):
    """A stopped service whose store holds one clean closed stream of 8 events and one unsigned record;
    verify --store --ignore-unsigned passes on it."""
    s = make_service(tmp_path / "ins", keyset)
    p = clean_stream(signer, 8)
    with s:
        ok(post(s, p.request()))
        ok(post(s, b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"plain"},'
                   b'"attributes":[{"key":"user.id","value":{"stringValue":"carol"}}]}]}]}]}'))
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert r.returncode == 0, r.stdout + r.stderr
    return s, p


def names(r: subprocess.CompletedProcess[str], p: Producer, seq: int) -> bool:
    """verify's output names the event: by its id, or by its stream and 'seq N'."""
    out = r.stdout + r.stderr
    return p.id(seq) in out or (p.stream in out and f"seq {seq}" in out)


def _edit(db: Path, *sql: str) -> None:
    """What an insider does: drop the append-only triggers, run the statements, commit."""
    con = sqlite3.connect(db)
    try:
        for (t,) in con.execute("select name from sqlite_master where type='trigger'").fetchall():
            con.execute(f'drop trigger "{t}"')
        for s in sql:
            con.execute(s)
        con.commit()
    finally:
        con.close()


def _columns(db: Path, table: str) -> dict[str, str]:
    con = sqlite3.connect(db)
    try:
        return {r[1]: r[2].upper() for r in con.execute(f"pragma table_info({table})")}
    finally:
        con.close()


def _one(db: Path, sql: str) -> Any:
    con = sqlite3.connect(db)
    try:
        row = con.execute(sql).fetchone()
        return row[0] if row else None
    finally:
        con.close()


def test_insider_triggers_refuse_update(stored: tuple[ServiceProcess, Producer]) -> None:
    """With triggers in place, UPDATE and DELETE on events, checkpoints and findings are refused by SQLite."""
    s, _p = stored
    con = sqlite3.connect(_db(s))
    try:
        for sql in ("delete from events", "update events set user_id = 'x'", "delete from checkpoints",
                    "update checkpoints set kind = 'x'"):
            with pytest.raises(sqlite3.DatabaseError):
                con.execute(sql)
    finally:
        con.close()


@pytest.mark.parametrize("col", ["user_id", "actor", "outcome", "category", "service", "event", "ts",
                                 "client_address_key", "session_id", "target_id", "severity", "body", "attrs",
                                 "stream_seq"])
def test_insider_edits_filter_column(stored: tuple[ServiceProcess, Producer], keyset: dict[str, Path],
                                     col: str) -> None:
    """Editing only one derived column of one signed row (leaving record/canonical intact) is named by
    verify --store (exit 1, the event id)."""
    s, p = stored
    db = _db(s)
    typ = _columns(db, "events")[col]
    val = "7" if typ == "INTEGER" else "'mallory'"
    if col == "stream_seq":
        val = "999"
    _edit(db, f"update events set {col} = {val} where id = '{p.id(3)}'")
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert r.returncode == 1, (col, r.returncode, r.stdout[-1500:], r.stderr[-1500:])
    assert p.id(3) in r.stdout + r.stderr, (col, r.stdout[-1500:])


@pytest.mark.parametrize("col", ["user_id", "body", "event", "ts"])
def test_insider_edits_unsigned_row_column(stored: tuple[ServiceProcess, Producer], keyset: dict[str, Path],
                                          col: str) -> None:
    """An unsigned row cannot be re-proven, but its filter columns are still derived from its stored record:
    editing only user_id/body/event/ts of an unsigned row (not its record) is named by verify --store
    --ignore-unsigned ('an edited column is named')."""
    s, _p = stored
    db = _db(s)
    typ = _columns(db, "events")[col]
    val = "7" if typ == "INTEGER" else "'mallory'"
    uid = _one(db, "select id from events where id like 'u-%'")
    _edit(db, f"update events set {col} = {val} where id = '{uid}'")
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert r.returncode == 1, (col, r.stdout[-1200:])
    assert uid in r.stdout + r.stderr


def test_insider_unsigned_rows_fail_without_flag(stored: tuple[ServiceProcess, Producer],
                                                 keyset: dict[str, Path]) -> None:
    """Without --ignore-unsigned a store with unsigned rows never verifies (exit 1): a fabricated unsigned row
    can be inserted and edited by an insider undetectably only when the reader opts out of them."""
    s, _p = stored
    r = verify_store(s, keyset)
    assert r.returncode == 1, r.stdout[-800:]


def test_insider_deletes_row(stored: tuple[ServiceProcess, Producer], keyset: dict[str, Path]) -> None:
    """Deleting one signed event row is named by verify --store (exit 1, the seq missing)."""
    s, p = stored
    _edit(_db(s), f"delete from events where id = '{p.id(3)}'")
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert r.returncode == 1, r.stdout[-1500:]
    assert "3" in r.stdout


def test_insider_deletes_tail_and_edits_streams(stored: tuple[ServiceProcess, Producer],
                                                keyset: dict[str, Path]) -> None:
    """Deleting the newest rows (the end checkpoint and the events before it, back to the last size
    checkpoint) and editing the streams table to match: verify --store names it (no end checkpoint; the
    stream is open) since the streams table is derived, not trusted. Run without --allow-open."""
    s, p = stored
    db = _db(s)
    cut = 5  # seq 0..4: start, 3 events, the size checkpoint at 4
    victims = ", ".join(f"'{p.id(q)}'" for q in range(cut, p.seq))
    _edit(db, f"delete from events where id in ({victims})",
          f"update streams set length = {cut}, records = {cut}, proven = {cut}, closed = 1")
    r = subprocess.run([CLI, "verify", "--keys", str(keyset["producer"]), "--store", f"sqlite:///{db}",
                        "--ignore-unsigned"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout[-1500:]


def test_insider_cut_back_to_checkpoint_with_allow_open(stored: tuple[ServiceProcess, Producer],
                                                        keyset: dict[str, Path]) -> None:
    """The same cut checked with --allow-open (a live store): the checkpoints table still holds the removed end
    checkpoint (append-only), so verify --store should name the cut even for an open stream."""
    s, p = stored
    db = _db(s)
    cut = 5
    victims = ", ".join(f"'{p.id(q)}'" for q in range(cut, p.seq))
    _edit(db, f"delete from events where id in ({victims})",
          f"update streams set length = {cut}, records = {cut}, proven = {cut}, closed = 0")
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert r.returncode == 1, r.stdout[-1500:]


def test_insider_cut_back_everywhere(stored: tuple[ServiceProcess, Producer], keyset: dict[str, Path]) -> None:
    """NOT CAUGHT (documented as needing --state): the insider removes the tail rows, the checkpoints above the
    cut, and edits streams. verify --store --allow-open cannot tell this from a live stream; verify --state
    run before would. This test asserts that --state catches it."""
    s, p = stored
    db = _db(s)
    state = s.config.parent / "verify-state.json"
    r = verify_store(s, keyset, "--ignore-unsigned", "--state", str(state))
    assert r.returncode == 0, r.stdout[-800:]
    cut = 5
    victims = ", ".join(f"'{p.id(q)}'" for q in range(cut, p.seq))
    _edit(db, f"delete from events where id in ({victims})", f"delete from checkpoints where size > {cut - 1}",
          f"update streams set length = {cut}, records = {cut}, proven = {cut}, closed = 0")
    r = verify_store(s, keyset, "--ignore-unsigned", "--state", str(state))
    assert r.returncode == 1, r.stdout[-1500:]


def test_insider_streams_claim_more_proven(stored: tuple[ServiceProcess, Producer], keyset: dict[str, Path],
                                           signer: Ed25519PrivateKey) -> None:
    """Editing the streams table to claim an open stream's pending records are proven (proven = length,
    closed = 1): the restarted service shows them proven (its live view trusts the derived row), so verify
    --store must name the lie (exit 1)."""
    s, _p = stored
    q = Producer(signer)
    for i in range(3):
        q.event(i=i)
    with s:
        ok(post(s, q.request()))
        assert status_of(s, q.id(3)) == "pending"
    db = _db(s)
    _edit(db, f"update streams set proven = length, closed = 1 where stream_id = '{q.stream}'")
    with s:
        shown = [e["status"] for e in s.events({"stream": q.stream})]
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert "proven" not in shown or r.returncode == 1, (shown, r.stdout[-800:])


def test_insider_inserts_row(stored: tuple[ServiceProcess, Producer], keyset: dict[str, Path]) -> None:
    """Inserting a copy of a signed row under a new id and seq (a fabricated event) is named by verify --store."""
    s, p = stored
    db = _db(s)
    cols = list(_columns(db, "events"))
    sel = ", ".join({"id": f"'{p.stream}-999'", "stream_seq": "999", "seq": "(select max(seq)+1 from events)"}
                    .get(c, c) for c in cols)
    _edit(db, f"insert into events ({', '.join(cols)}) select {sel} from events where id = '{p.id(2)}'")
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert r.returncode == 1, r.stdout[-1500:]


def test_insider_reorders_ingest(stored: tuple[ServiceProcess, Producer], keyset: dict[str, Path]) -> None:
    """Renumbering one row's ingest order (events.seq) is not an integrity problem (verify orders by stream
    and seq): verify --store still exits 0, it does not claim a problem that is not one."""
    s, p = stored
    _edit(_db(s), f"update events set seq = -seq where id = '{p.id(1)}'")
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert r.returncode == 0, r.stdout[-800:]


@pytest.mark.parametrize("col", ["note", "cosignature", "root", "size", "kind"])
def test_insider_edits_checkpoint_table(stored: tuple[ServiceProcess, Producer], keyset: dict[str, Path],
                                        col: str) -> None:
    """Editing a stored checkpoint row (its note, its witness cosignature, root, size or kind) is named by
    verify --store: the checkpoints table is what /v1/checkpoints and proofs show."""
    s, _p = stored
    db = _db(s)
    change = {"note": "replace(note, 'kind ', 'kind  ')", "cosignature": "replace(cosignature, 'A', 'B')",
              "root": "zeroblob(32)", "size": "size + 100", "kind": "'end'"}[col]
    _edit(db, f"update checkpoints set {col} = {change} where size = 4")
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert r.returncode == 1, (col, r.stdout[-1500:])


def test_insider_deletes_findings(tmp_path: Path, keyset: dict[str, Path], signer: Ed25519PrivateKey) -> None:
    """Deleting the findings rows (hiding that a record was modified after signing) is named by verify
    --store, since the modified record is still stored and re-proven."""
    s = make_service(tmp_path / "fd", keyset)
    p = clean_stream(signer, 5)
    p.records[2]["body"] = {"stringValue": "edited"}
    with s:
        ok(post(s, p.request()))
        assert findings(s)
    _edit(_db(s), "delete from findings")
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert r.returncode == 1, r.stdout[-1500:]
    assert names(r, p, 2), r.stdout[-1500:]


def test_insider_deletes_variant_evidence(tmp_path: Path, keyset: dict[str, Path], signer: Ed25519PrivateKey
                                          ) -> None:
    """NOT CAUGHT: a variant is kept only as evidence in findings (never as an event); deleting that finding
    leaves a store that re-proves. Expect (by the brief): verify --store names the deleted finding. It cannot,
    as findings are not chained; reported as what verify --store does not catch."""
    s = make_service(tmp_path / "fv", keyset)
    p = clean_stream(signer, 3)
    q = Producer(signer, stream=p.stream)
    q.records, q.digests, q.t = list(p.records[:2]), list(p.digests[:2]), p.t
    q.event(i=99, **{"user.id": "mallory"})
    with s:
        ok(post(s, p.request()))
        ok(post(s, q.request([q.records[2]])))
        assert findings(s)
        deadline = time.monotonic() + 30  # the service's own signed event of the finding, through its spool
        while not s.events({"action": "security.integrity.violated"}) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert s.events({"action": "security.integrity.violated"})
    _edit(_db(s), "delete from findings")
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert r.returncode == 1, r.stdout[-1500:]


def test_insider_edits_record_content(stored: tuple[ServiceProcess, Producer], keyset: dict[str, Path]) -> None:
    """Editing the stored record itself consistently in every column that holds it (record, canonical, body,
    the FTS-visible text) is named by verify --store (exit 1, the event id)."""
    s, p = stored
    db = _db(s)
    cols = _columns(db, "events")
    stmts = []
    for c, typ in cols.items():
        if typ == "TEXT" and c != "id":
            stmts.append(f"update events set {c} = replace({c}, 'event 3', 'event 9') where id = '{p.id(3)}'")
        if typ == "BLOB":
            stmts.append(f"update events set {c} = cast(replace(cast({c} as text), 'event 3', 'event 9') as blob)"
                         f" where id = '{p.id(3)}' and {c} is not null")
    _edit(db, *stmts)
    assert "event 9" in str(_one(db, f"select body from events where id = '{p.id(3)}'"))
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert r.returncode == 1, r.stdout[-1500:]
    assert names(r, p, 3), r.stdout[-1500:]


def test_insider_recomputes_digest_and_chain(stored: tuple[ServiceProcess, Producer], keyset: dict[str, Path],
                                             signer: Ed25519PrivateKey) -> None:
    """An insider without the producer key rewrites event 3 and recomputes its digest (and the rest of the
    chain): the signed checkpoints' roots no longer match, so verify --store names it."""
    s, p = stored
    db = _db(s)
    q = Producer(signer, stream=p.stream)
    q.records, q.digests, q.t = list(p.records[:3]), list(p.digests[:3]), p.t
    q.event(i=2, **{"user.id": "mallory"})
    canon = _canonical_of(q, 3, q.records[3])
    _edit(db, f"update events set canonical = x'{canon.hex()}', digest = x'{q.digests[3].hex()}', "
              f"user_id = 'mallory' where id = '{p.id(3)}'")
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert r.returncode == 1, r.stdout[-1500:]


# == 4. tokens and scopes ===========================================================================


def _token(name: str, *scopes: str) -> tuple[str, dict[str, Any]]:
    args = [CLI, "token", "--name", name]
    for sc in scopes:
        args += ["--scope", sc]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    tok = next(w for w in out.split() if w.startswith("oa_"))
    line = next(ln for ln in out.splitlines() if "sha256" in ln).strip().removeprefix("- ")
    return tok, yaml.safe_load(line)


@pytest.fixture
def tsvc(tmp_path: Path, keyset: dict[str, Path]):
    ing, ing_row = _token("collector", "ingest")
    rd, rd_row = _token("auditor", "audit:read")
    adm, adm_row = _token("admin", "audit:admin")
    s = make_service(tmp_path / "tok", keyset, tokens=[ing_row, rd_row, adm_row])
    with s:
        yield s, {"ingest": ing, "read": rd, "admin": adm}


def test_scopes_enforced(tsvc: tuple[ServiceProcess, dict[str, str]], signer: Ed25519PrivateKey) -> None:
    """No token: 401; ingest token on the query API: 403; read token on /v1/logs: 403; admin: both; a
    token with a changed character: 401; 'Bearer' case and spacing tricks do not bypass."""
    s, t = tsvc
    p = clean_stream(signer, 2)
    assert post(s, p.request()).status_code == 401
    assert post(s, p.request(), Authorization=f"Bearer {t['read']}").status_code == 403
    assert post(s, p.request(), Authorization=f"Bearer {t['ingest']}").status_code == 200
    assert s.get("/v1/events").status_code == 401
    assert s.get("/v1/events", Authorization=f"Bearer {t['ingest']}").status_code == 403
    assert s.get("/v1/events", Authorization=f"Bearer {t['read']}").status_code == 200
    assert s.get("/v1/events", Authorization=f"Bearer {t['admin']}").status_code == 200
    bad = t["read"][:-1] + ("A" if t["read"][-1] != "A" else "B")
    for hdr in (f"Bearer {bad}", f"Basic {t['read']}", t["read"], f"Bearer {t['read']} x",
                f"Bearer  {t['read'][:10]}", "Bearer ", f"Bearer {t['read']}\x00"):
        try:
            r = s.get("/v1/events", Authorization=hdr)
        except (ValueError, requests.exceptions.InvalidHeader):
            continue
        assert r.status_code in (400, 401, 403), (hdr[:20], r.status_code)
    for path in ("/v1/streams", "/v1/checkpoints", "/v1/findings", f"/v1/events/{p.id(1)}",
                 f"/v1/events/{p.id(1)}/proof"):
        assert s.get(path).status_code == 401, path
        assert s.get(path, Authorization=f"Bearer {t['ingest']}").status_code == 403, path


def test_healthz_does_not_leak_without_token(tsvc: tuple[ServiceProcess, dict[str, str]]) -> None:
    """/healthz without a token shows at most liveness and counters, never tokens, names or hashes."""
    s, t = tsvc
    r = s.get("/healthz")
    assert r.status_code in (200, 401)
    for secret in t.values():
        assert secret not in r.text
    assert "sha256" not in r.text


def test_tokens_not_in_logs_or_errors(tsvc: tuple[ServiceProcess, dict[str, str]]) -> None:
    """A wrong token, a token sent to the wrong scope, a token in the query string: none is echoed in the
    response or the service log."""
    s, t = tsvc
    wrong = "oa_" + "Z" * 43
    rs = [s.get("/v1/events", Authorization=f"Bearer {wrong}"),
          s.get("/v1/events", Authorization=f"Bearer {t['ingest']}"),
          s.get("/v1/events", {"token": t["read"], "q": t["read"]}, Authorization=f"Bearer {t['read']}"),
          post(s, b"{", Authorization=f"Bearer {t['ingest']}")]
    for r in rs:
        for secret in (*t.values(), wrong):
            assert secret not in r.text, r.text[:300]
    time.sleep(0.3)
    text = log_text(s)
    for secret in (*t.values(), wrong):
        assert secret not in text


def test_token_off_loopback_required(tmp_path: Path, keyset: dict[str, Path]) -> None:
    """Without tokens the service refuses to listen on a non-loopback address (exit 2 naming the key)."""
    folder = tmp_path / "nl"
    folder.mkdir()
    cfg = write_config(folder, keyset["producer"])
    data = yaml.safe_load(cfg.read_text())
    data["http"]["endpoint"] = "0.0.0.0:0"
    cfg.write_text(yaml.safe_dump(data))
    r = subprocess.run([CLI, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "token" in (r.stdout + r.stderr).lower()


def test_token_timing_not_prefix_dependent(tsvc: tuple[ServiceProcess, dict[str, str]]) -> None:
    """Rough timing check: tokens sharing a long prefix with the real one are not measurably slower to
    refuse than random ones (the comparison is by hash, constant time)."""
    s, t = tsvc
    real = t["read"]
    near = real[:-1] + ("A" if real[-1] != "A" else "B")
    far = "oa_" + "Q" * (len(real) - 3)
    sess = requests.Session()

    def timing(tok: str) -> float:
        best = []
        for _ in range(60):
            t0 = time.perf_counter()
            sess.get(s.url + "/v1/streams", headers={"Authorization": f"Bearer {tok}"}, timeout=10)
            best.append(time.perf_counter() - t0)
        best.sort()
        return sum(best[:20]) / 20

    a, b = timing(near), timing(far)
    assert abs(a - b) < max(a, b) * 0.5 + 0.002, (a, b)


# == 5. the disk and the process ====================================================================


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def test_full_disk_is_503(tmp_path: Path, keyset: dict[str, Path]) -> None:
    """A store on a small tmpfs that fills up: ingest answers 503 + Retry-After (never 200 for unstored
    records, never 500), every acknowledged record is stored, and after space returns ingest works again.
    (A store made read-only under the service is not tested: as root a chmod does not stop writes, and Linux
    refuses to remount read-only a file system with files open for writing.)"""
    mnt = tmp_path / "small"
    assert _mount_tmpfs(mnt, "3m"), "cannot mount a tmpfs (the test runs as root, as CI does)"
    try:
        s = make_service(mnt, keyset)
        with s:
            acked: list[str] = []
            codes: set[int] = set()
            filler = "y" * 50_000
            for i in range(200):
                body = json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [
                    {"body": {"stringValue": f"fill-{i} {filler}"}}]}]}]}).encode()
                r = post(s, body)
                codes.add(r.status_code)
                if r.status_code == 200:
                    acked.append(f"fill-{i}")
                elif r.status_code == 503:
                    assert r.headers.get("Retry-After"), r.headers
                    break
                else:
                    raise AssertionError((r.status_code, r.text[:300]))
            assert 503 in codes, f"never refused on a full disk: {codes}, {len(acked)} acked"
            alive(s)
            # free space: nothing of ours to delete inside the store, so grow the tmpfs
            subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
            r = post(s, b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"back"}}]}]}]}')
            assert r.status_code == 200, (r.status_code, r.text)
            bodies = {e["body"].split(" ")[0] for e in s.events({"status": "unsigned"})}
            assert set(acked) <= bodies, set(acked) - bodies
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_kill9_mid_flood_loses_no_acknowledged_record(tmp_path: Path, keyset: dict[str, Path],
                                                      signer: Ed25519PrivateKey) -> None:
    """kill -9 while 8 clients send signed records: after restart every acknowledged record is stored, the
    stream state continues (the rest, resent, is accepted and proven), and verify --store passes."""
    s = make_service(tmp_path / "k9", keyset)
    p = Producer(signer)
    for i in range(400):
        p.event(i=i)
        if i % 50 == 49:
            p.checkpoint("size")
    p.checkpoint("end")
    acked: set[int] = set()
    with s:
        def send(k: int) -> None:
            try:
                r = requests.post(s.url + "/v1/logs", data=p.request([p.records[k]]),
                                  headers={"Content-Type": "application/json"}, timeout=10)
                if r.status_code == 200:
                    acked.add(k)
            except requests.RequestException:
                pass

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            futs = [ex.submit(send, k) for k in range(len(p.records))]
            time.sleep(1.0)
            s.kill()
            for f in futs:
                f.result()
    assert acked, "nothing acknowledged before the kill"
    s.start()
    try:
        present = {e["stream"]["seq"] for e in s.events({"stream": p.stream})}
        assert acked <= present, sorted(acked - present)[:20]
        for k in range(len(p.records)):
            r = post(s, p.request([p.records[k]]))
            assert r.status_code == 200 and r.json() == {}, (k, r.text)
        st = stream_row(s, p.stream)
        assert st and st["state"] == "closed" and st["proven"] == p.seq, st
    finally:
        s.stop()
    r = verify_store(s, keyset)
    assert r.returncode == 0, r.stdout[-1500:]


def test_restart_continues_stream_state(tmp_path: Path, keyset: dict[str, Path], signer: Ed25519PrivateKey
                                        ) -> None:
    """Half a stream, SIGTERM, restart, other half: the stream is proven whole (state lives in the store)."""
    s = make_service(tmp_path / "rs", keyset)
    p = clean_stream(signer, 8)
    half = p.seq // 2
    with s:
        ok(post(s, p.request(p.records[:half])))
    with s:
        ok(post(s, p.request(p.records[half:])))
        st = stream_row(s, p.stream)
        assert st and st["proven"] == p.seq and st["state"] == "closed", st


# == 6. proofs ======================================================================================


@pytest.fixture
def proven(svc: ServiceProcess, signer: Ed25519PrivateKey, tmp_path: Path) -> tuple[ServiceProcess, Producer, Path]:
    p = clean_stream(signer, 6)
    ok(post(svc, p.request()))
    r = svc.get(f"/v1/events/{p.id(2)}/proof")
    assert r.status_code == 200, r.text
    f = tmp_path / "e.tlog-proof"
    f.write_bytes(r.content)
    return svc, p, f


def prove_file(f: Path, keyset: dict[str, Path], witness: bool = True) -> subprocess.CompletedProcess[str]:
    args = [CLI, "prove", "--file", str(f), "--keys", str(keyset["producer"])]
    if witness:
        args += ["--witness-keys", str(keyset["witness"])]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_proof_checks(proven: tuple[ServiceProcess, Producer, Path], keyset: dict[str, Path]) -> None:
    """The baseline: a fetched proof checks with the producer and witness keys (exit 0)."""
    _s, _p, f = proven
    r = prove_file(f, keyset)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PROVEN" in r.stdout


def said_proven(out: str) -> bool:
    return any(ln.startswith("PROVEN:") for ln in out.splitlines())


def _tamper_lines(text: str) -> list[tuple[str, str]]:
    """(what, tampered text) for every part of a tlog-proof file."""
    lines = text.split("\n")
    out = []
    for i, ln in enumerate(lines):
        if not ln:
            continue
        if ln.startswith("extra "):
            raw = base64.b64decode(ln[6:])
            for pos in (0, 31, 32, 40, len(raw) - 2):
                b = bytearray(raw)
                b[pos] ^= 1
                out.append((f"extra byte {pos}", "\n".join(lines[:i] + ["extra " + base64.b64encode(bytes(b)).decode()]
                                                             + lines[i + 1:])))
            out.append(("extra truncated", "\n".join(lines[:i] + ["extra " + base64.b64encode(raw[:-1]).decode()]
                                                      + lines[i + 1:])))
            out.append(("extra appended", "\n".join(lines[:i] + ["extra " + base64.b64encode(raw + b" ").decode()]
                                                     + lines[i + 1:])))
            continue
        if ln.startswith("index "):
            n = int(ln[6:])
            for v in (n + 1, n - 1, n + 2 ** 32, -n if n else -1):
                out.append((f"index {v}", "\n".join(lines[:i] + [f"index {v}"] + lines[i + 1:])))
            continue
        if ln.startswith("c2sp.org"):
            out.append(("header", "\n".join(lines[:i] + [ln + "x"] + lines[i + 1:])))
            continue
        # flip one character (not a structural one)
        j = len(ln) // 2
        ch = ln[j]
        rep = "A" if ch != "A" else "B"
        if ch.isdigit():
            rep = str((int(ch) + 1) % 10)
        out.append((f"line {i}: {ln[:30]}", "\n".join(lines[:i] + [ln[:j] + rep + ln[j + 1:]] + lines[i + 1:])))
    # drop a path hash, duplicate a path hash, drop the witness line
    hashes = [i for i, ln in enumerate(lines) if len(ln) == 44 and ln.endswith("=") and " " not in ln]
    if hashes:
        out.append(("path hash dropped", "\n".join(lines[:hashes[0]] + lines[hashes[0] + 1:])))
        out.append(("path hash doubled", "\n".join(lines[:hashes[0]] + [lines[hashes[0]]] + lines[hashes[0]:])))
    return out


def test_tampered_proof_never_checks(proven: tuple[ServiceProcess, Producer, Path], keyset: dict[str, Path],
                                     tmp_path: Path) -> None:
    """Every one-place tamper of a proof file (header, extra bytes, index, each path hash, each note line, the
    producer signature, the witness cosignature, a dropped/doubled path hash) fails `otel-audit prove`
    (exit 1, or 2 for an unreadable file), never PROVEN."""
    _s, _p, f = proven
    text = f.read_text()
    passed = []
    for what, bad in _tamper_lines(text):
        g = tmp_path / "bad.tlog-proof"
        g.write_text(bad)
        r = prove_file(g, keyset)
        if r.returncode == 0 or said_proven(r.stdout):
            passed.append(what)
        assert "Traceback" not in r.stderr, (what, r.stderr[-800:])
    assert not passed, passed


def test_proof_without_witness_line_with_witness_keys(proven: tuple[ServiceProcess, Producer, Path],
                                                      keyset: dict[str, Path], tmp_path: Path) -> None:
    """A proof with the witness cosignature removed fails when --witness-keys is given."""
    _s, _p, f = proven
    text = "\n".join(ln for ln in f.read_text().split("\n") if not ln.startswith("\u2014 witness"))
    g = tmp_path / "nw.tlog-proof"
    g.write_text(text)
    assert prove_file(g, keyset).returncode == 1
    assert prove_file(g, keyset, witness=False).returncode == 0


def test_proof_for_pending_unsigned_failed(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A proof is refused (4xx JSON) for a pending event, an unsigned event and a failed event."""
    p = clean_stream(signer, 6)
    p.records[4]["body"] = {"stringValue": "edited"}
    ok(post(svc, p.request(p.records[:-1])))  # end checkpoint withheld
    ok(post(svc, b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"u"}}]}]}]}'))
    uid = svc.events({"status": "unsigned"})[0]["id"]
    assert status_of(svc, p.id(4)) == "failed"
    for eid in (p.id(p.seq - 2), uid, p.id(4)):
        r = svc.get(f"/v1/events/{eid}/proof")
        assert 400 <= r.status_code < 500, (eid, r.status_code, r.text[:300])
        r.json()


def test_prove_cli_for_pending_and_unknown(svc: ServiceProcess, signer: Ed25519PrivateKey,
                                           keyset: dict[str, Path]) -> None:
    """`otel-audit prove ID --url` for a pending or unknown event exits 1 with a message, no traceback."""
    p = clean_stream(signer, 3, end=False)
    ok(post(svc, p.request()))
    for eid in (p.id(p.seq - 1), "f" * 32 + "-0", "u-nope", "../x"):
        r = subprocess.run([CLI, "prove", eid, "--url", svc.url, "--keys", str(keyset["producer"])],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode in (1, 2), (eid, r.returncode, r.stdout)
        assert "Traceback" not in r.stderr and not said_proven(r.stdout), (eid, r.stderr[-500:])


def _proof_text(extra: bytes, index: int, path: list[bytes], note: str) -> str:
    return ("c2sp.org/tlog-proof@v1\nextra " + base64.b64encode(extra).decode() + f"\nindex {index}\n"
            + "".join(base64.b64encode(h).decode() + "\n" for h in path) + "\n" + note)


def _path(leaves: list[bytes], m: int) -> list[bytes]:
    if len(leaves) <= 1:
        return []
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    if m < k:
        return _path(leaves[:k], m) + [mth(leaves[k:])]
    return _path(leaves[k:], m - k) + [mth(leaves[:k])]


def test_own_proof_format_matches(svc: ServiceProcess, signer: Ed25519PrivateKey, keyset: dict[str, Path],
                                  tmp_path: Path) -> None:
    """Baseline for the next tests: a proof built here from the spec (extra = prev || canonical, RFC 9162 path,
    the producer's note) checks with `otel-audit prove --file` (no witness)."""
    p = clean_stream(signer, 6)
    note = p.records[-1]["body"]["stringValue"]
    n = p.seq - 1
    leaf = 3
    prev = p.digests[leaf - 1]
    rec = p.records[leaf]
    canonical = _canonical_of(p, leaf, rec)
    assert _sha(b"\x00" + prev + canonical) == p.digests[leaf]
    f = tmp_path / "own.tlog-proof"
    f.write_text(_proof_text(prev + canonical, leaf, _path(p.digests[:n], leaf), note))
    r = prove_file(f, keyset, witness=False)
    assert r.returncode == 0, r.stdout + r.stderr


def _canonical_of(p: Producer, seq: int, rec: dict[str, Any]) -> bytes:
    def dec(v: dict[str, Any]) -> Any:
        if "stringValue" in v:
            return v["stringValue"]
        if "intValue" in v:
            return int(v["intValue"])
        if "boolValue" in v:
            return v["boolValue"]
        raise TypeError(v)
    attrs = {kv["key"]: dec(kv["value"]) for kv in rec["attributes"]
             if not kv["key"].startswith(("audit.stream.", "audit.integrity."))}
    body = dec(rec["body"]) if "body" in rec else None
    return (f'["v1",{_cstr(p.stream)},{seq},{_cstr(rec["eventName"])},"{rec["timeUnixNano"]}",'
            f'{rec["severityNumber"]},{_cstr(rec["severityText"])},{_cval(body)},{_cobj(attrs)}]').encode()


def test_proof_leaf_claiming_other_seq(keyset: dict[str, Path], signer: Ed25519PrivateKey,
                                       tmp_path: Path) -> None:
    """A compromised producer signs a tree whose leaf 4 holds a record that claims to be seq 7 of another
    stream. `otel-audit prove` must not say 'record 4 of stream X' for content that names another stream
    and seq: it fails (the canonical bytes disagree with the index and the origin)."""
    p = Producer(signer)
    other = os.urandom(16).hex()
    for i in range(3):
        p.event(i=i)
    # seq 3: content naming another stream and seq 7, chained normally
    prev = p.digests[-1]
    canonical = (f'["v1",{_cstr(other)},7,"authorization.granted","{p.t + 1}",9,"INFO","forged",'
                 '{"user.id":"mallory"}]').encode()
    p.digests.append(_sha(b"\x00" + prev + canonical))
    p.records.append({})
    for i in range(2):
        p.event(i=10 + i)
    note = p.note("end")
    f = tmp_path / "x.tlog-proof"
    f.write_text(_proof_text(prev + canonical, 4, _path(p.digests, 4), note))
    r = prove_file(f, keyset, witness=False)
    assert r.returncode == 1 and not said_proven(r.stdout), r.stdout


def test_proof_extra_with_wrong_prev(keyset: dict[str, Path], signer: Ed25519PrivateKey, tmp_path: Path) -> None:
    """A proof whose extra prev is the chain's real prev but the note's 'chain' line is for another size is not
    accepted as a proof for a tree it does not match: a proof for a size-5 note but the path of size 4."""
    p = clean_stream(signer, 6)
    note = p.records[-1]["body"]["stringValue"]
    n = p.seq - 1
    leaf = 3
    prev = p.digests[leaf - 1]
    canonical = _canonical_of(p, leaf, p.records[leaf])
    f = tmp_path / "w.tlog-proof"
    f.write_text(_proof_text(prev + canonical, leaf, _path(p.digests[: n - 1], leaf), note))
    r = prove_file(f, keyset, witness=False)
    assert r.returncode == 1, r.stdout


def test_proof_for_checkpoint_record(proven: tuple[ServiceProcess, Producer, Path], keyset: dict[str, Path],
                                     tmp_path: Path) -> None:
    """A checkpoint record under a later checkpoint has a proof that checks; the end checkpoint (nothing above
    it) answers 409 with a message, not a proof."""
    s, p, _f = proven
    cp = next(i for i, r in enumerate(p.records) if i and r["eventName"] == "audit.checkpoint")
    r = s.get(f"/v1/events/{p.id(cp)}/proof")
    assert r.status_code == 200, r.text
    g = tmp_path / "cp.tlog-proof"
    g.write_bytes(r.content)
    assert prove_file(g, keyset).returncode == 0
    r = s.get(f"/v1/events/{p.id(p.seq - 1)}/proof")
    assert r.status_code == 409, r.text


# == 7. more forgeries and the stream summary =======================================================


def test_stream_summary_counts_digest_failure(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """After a record arrives modified after signing (digest finding, event shown failed), /v1/streams must
    tell the truth: failed >= 1 and proven < records. Showing 'proven: all, failed: 0' for the stream hides
    the modification from anyone reading the summary."""
    p = clean_stream(signer, 6)
    p.records[2]["body"] = {"stringValue": "edited in transit"}
    ok(post(svc, p.request()))
    assert status_of(svc, p.id(2)) == "failed"
    st = stream_row(svc, p.stream)
    assert st is not None
    assert st["failed"] >= 1 and st["proven"] < st["records"], st
    page = ok(svc.get("/v1/events", {"stream": p.stream}))
    assert page["streams"][0]["proven"] < len(page["events"]), page["streams"]


def test_variant_does_not_discredit_proven_event(svc: ServiceProcess, signer: Ed25519PrivateKey,
                                                 tmp_path: Path, keyset: dict[str, Path]) -> None:
    """A proven event (its digest under a valid signed checkpoint) stays proven when someone with ingest access
    later sends a self-consistent variant at its seq: the variant cannot be in the signed tree, so the service
    knows which one is genuine. Its proof is still served and checks."""
    p = clean_stream(signer, 3)
    ok(post(svc, p.request()))
    assert status_of(svc, p.id(2)) == "proven"
    q = Producer(signer, stream=p.stream)
    q.records, q.digests, q.t = list(p.records[:2]), list(p.digests[:2]), p.t
    q.event(i=99, **{"user.id": "mallory"})
    r = ok(post(svc, q.request([q.records[2]])))
    assert r.get("partialSuccess")
    assert status_of(svc, p.id(2)) == "proven", "a forged variant turned a proven event into 'failed'"
    st = stream_row(svc, p.stream)
    assert st and st["proven"] == p.seq, st
    pr = svc.get(f"/v1/events/{p.id(2)}/proof")
    assert pr.status_code == 200, pr.text
    f = tmp_path / "v.tlog-proof"
    f.write_bytes(pr.content)
    assert prove_file(f, keyset).returncode == 0


def test_forged_record_first_never_proven(svc: ServiceProcess, signer: Ed25519PrivateKey,
                                          keyset: dict[str, Path], tmp_path: Path) -> None:
    """A forger on the wire sends its own self-consistent record at seq 2 before the genuine one (the service
    keeps the first received). When the signed checkpoint arrives, its root does not match: the forged event
    must never be shown proven, nor get a proof, and a finding names the stream."""
    p = clean_stream(signer, 6)
    q = Producer(signer, stream=p.stream)
    q.records, q.digests, q.t = list(p.records[:2]), list(p.digests[:2]), p.t
    q.event(i=2, **{"user.id": "mallory"})
    ok(post(svc, q.request([q.records[2]])))
    ok(post(svc, p.request()))
    ev = ok(svc.get(f"/v1/events/{p.id(2)}"))
    if ev.get("user_id") == "mallory":
        assert ev["status"] != "proven", ev
        pr = svc.get(f"/v1/events/{p.id(2)}/proof")
        if pr.status_code == 200:
            f = tmp_path / "forged.tlog-proof"
            f.write_bytes(pr.content)
            assert prove_file(f, keyset).returncode == 1, "a proof of the forged event checks"
    assert not any(e["status"] == "proven" for e in svc.events({"user": "mallory"}))
    assert any(f.get("stream") == p.stream for f in findings(svc)), findings(svc)


def test_recomputed_digest_in_transit_never_proven(svc: ServiceProcess, signer: Ed25519PrivateKey) -> None:
    """A record rewritten in transit with its digest recomputed (self-consistent), the rest untouched: the next
    record no longer links to it and the checkpoint root differs; the rewritten record is never proven."""
    p = clean_stream(signer, 6)
    q = Producer(signer, stream=p.stream)
    q.records, q.digests, q.t = list(p.records[:2]), list(p.digests[:2]), p.t
    q.event(i=2, **{"user.id": "mallory"})
    recs = list(p.records)
    recs[2] = q.records[2]
    ok(post(svc, p.request(recs)))
    assert status_of(svc, p.id(2)) != "proven"
    assert not any(e["status"] == "proven" for e in svc.events({"user": "mallory"}))
    assert findings(svc)


def test_grpc_hostile(tmp_path: Path, keyset: dict[str, Path], signer: Ed25519PrivateKey) -> None:
    """OTLP/gRPC: garbage bytes are INVALID_ARGUMENT, an oversized message RESOURCE_EXHAUSTED, no token
    UNAUTHENTICATED, a read-only token PERMISSION_DENIED; a valid export is OK and stored."""
    import grpc

    ing, ing_row = _token("collector", "ingest")
    rd, rd_row = _token("auditor", "audit:read")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    gport = sock.getsockname()[1]
    sock.close()
    s = make_service(tmp_path / "grpc", keyset, grpc={"endpoint": f"127.0.0.1:{gport}"},
                     tokens=[ing_row, rd_row], limits={"max_request_bytes": 1 << 20})
    method = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
    with s:
        ch = grpc.insecure_channel(f"127.0.0.1:{gport}", options=[("grpc.max_send_message_length", 64 << 20)])
        call = ch.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)

        def code(data: bytes, token: str | None) -> grpc.StatusCode:
            md = [("authorization", f"Bearer {token}")] if token else None
            try:
                call(data, metadata=md, timeout=30)
                return grpc.StatusCode.OK
            except grpc.RpcError as e:
                return e.code()

        assert code(b"\x0a\xff\xff\xff\x0f\x12", ing) == grpc.StatusCode.INVALID_ARGUMENT
        assert code(os.urandom(300), ing) == grpc.StatusCode.INVALID_ARGUMENT
        assert code(b"\x0a" + b"\x80\x80\x80\x01" + b"\x00" * (2 << 20), ing) in (
            grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT)
        assert code(b"", None) == grpc.StatusCode.UNAUTHENTICATED
        assert code(b"", rd) == grpc.StatusCode.PERMISSION_DENIED
        assert code(b"", "oa_" + "x" * 43) == grpc.StatusCode.UNAUTHENTICATED
        assert code(b"", ing) == grpc.StatusCode.OK
        ch.close()
        alive(s)


# == 8. what the attack found in the service itself =================================================


def test_every_lazy_import_of_the_service_is_preloaded_before_threads_serve() -> None:
    """Two request threads importing otel_audit.verify's modules at once saw each other's half-initialised
    module (ImportError -> a 500 on GET /v1/events?to=..., a 503 for ingest). The service imports, before it
    serves, every module its code imports inside a function; this lists any it would still import late."""
    import ast

    root = Path(__file__).resolve().parent.parent / "otel_audit" / "service"
    lazy: set[str] = set()
    for f in root.rglob("*.py"):
        tree = ast.parse(f.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    lazy.add(node.module)
                elif isinstance(node, ast.Import):
                    lazy.update(a.name for a in node.names)
    code = ("import sys\nfrom otel_audit.service import app\napp.preload()\n"
            f"late = sorted(m for m in {sorted(lazy)!r} if m not in sys.modules)\nprint(' '.join(late))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    # imported by serve() or the config loader before any server thread starts
    allowed = {"uvicorn", "socket", "yaml", "importlib", "otel_audit.service.grpc_receiver",
               # a PostgreSQL store's: open_store imports them in build(), before any thread
               "otel_audit.service.store.postgres", "psycopg"}
    late = set(r.stdout.split()) - allowed
    assert not late, f"imported lazily by the service but not preloaded (otel_audit.service.app._PRELOAD): {late}"
