"""Signing at ingest: a producer that is NOT this library — a plain OpenTelemetry SDK app (LoggerProvider +
OTLPLogExporter, no otel-audit processor) — sends through the stock collector into the service, which chains and
checkpoints its records with its own key as a service-side stream per producer (docs/service.md §2a).

Everything is a real process: the app, the collector built by collector-config/build.sh, `otel-audit serve`,
`otel-audit verify --store`, `otel-audit verify` of an OTLP/JSON export and `otel-audit prove`."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from collector import Collector, free_port
from service_support import CLI, ServiceProcess, write_config

from otel_audit import canonical, keys
from otel_audit.errors import ConfigError
from otel_audit.keys import Keyring
from otel_audit.service.config import from_mapping

PRODUCER = "plain-gateway"
INSTANCE = "gw-7"

#: the producer: the OpenTelemetry SDK alone; it fails if anything of otel-audit was imported
PLAIN_APP = r'''
import sys, time
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

endpoint, first, n, pause_every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
provider = LoggerProvider(resource=Resource.create({"service.name": "plain-gateway", "service.instance.id": "gw-7"}))
provider.add_log_record_processor(BatchLogRecordProcessor(
    OTLPLogExporter(endpoint=f"http://{endpoint}/v1/logs", timeout=30), max_queue_size=100000,
    max_export_batch_size=50, schedule_delay_millis=50))
logger = provider.get_logger("plain.gateway")
for i in range(first, first + n):
    logger.emit(event_name="authentication.login.succeeded", body=f"login {i}", severity_number=SeverityNumber.INFO,
                attributes={"user.id": f"user-{i % 5}", "i": i, "client.address": "203.0.113.7"})
    if pause_every and i % pause_every == pause_every - 1:
        time.sleep(0.05)
provider.shutdown()
assert not [m for m in sys.modules if m == "otel_audit" or m.startswith("otel_audit.")], "otel-audit was imported"
print("sent", n)
'''

FORWARD = """
extensions:
  health_check:
  file_storage:
    directory: ${env:QUEUE_DIR}
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${env:OTLP_HTTP}
processors:
  batch:
    timeout: 200ms
    send_batch_size: 100
exporters:
  otlphttp/service:
    endpoint: http://${env:SERVICE_HTTP}
    compression: gzip
    retry_on_failure:
      enabled: true
      initial_interval: 100ms
      max_interval: 1s
      max_elapsed_time: 0
    sending_queue:
      enabled: true
      storage: file_storage
service:
  extensions: [health_check, file_storage]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [otlphttp/service]
"""


@pytest.fixture(scope="module")
def key_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The producers' keyring (a signing producer's), the service's keys, and a folder with both keyrings (what an
    auditor verifies with)."""
    base = tmp_path_factory.mktemp("sign-at-ingest-keys")
    out = {"producers": base / "producers", "service": base / "service", "both": base / "both"}
    keys.generate(out["producers"], "gateway")
    keys.generate(out["service"], "service")
    out["both"].mkdir()
    shutil.copy(out["producers"] / "keyring.json", out["both"] / "producers.json")
    shutil.copy(out["service"] / "keyring.json", out["both"] / "service.json")
    return out


def _service(folder: Path, key_dirs: dict[str, Path], port: int = 0, **sign: Any) -> ServiceProcess:
    cfg = write_config(folder, key_dirs["producers"], witness_keys=str(key_dirs["service"]),
                       sign_at_ingest={"checkpoint_every": 50, "checkpoint_interval": "500ms", **sign})
    cfg.write_text(cfg.read_text().replace("127.0.0.1:0", f"127.0.0.1:{port}"))
    return ServiceProcess(cfg)


def _collector(folder: Path, service_port: int) -> Collector:
    (folder / "queue").mkdir(exist_ok=True)
    return Collector(FORWARD, endpoints=("OTLP_HTTP",), workdir=folder / "collector",
                     env={"SERVICE_HTTP": f"127.0.0.1:{service_port}", "QUEUE_DIR": str(folder / "queue")})


def _plain_app(folder: Path, endpoint: str, first: int, n: int, pause_every: int = 0) -> subprocess.Popen[str]:
    script = folder / "plain_app.py"
    script.write_text(PLAIN_APP)
    return subprocess.Popen([sys.executable, str(script), endpoint, str(first), str(n), str(pause_every)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(app: subprocess.Popen[str], timeout: float = 180) -> None:
    out, _ = app.communicate(timeout=timeout)
    assert app.returncode == 0 and "sent" in out, out


def _ingest_streams(svc: ServiceProcess) -> list[dict[str, Any]]:
    return [s for s in svc.get("/v1/streams").json()["streams"] if s["signed"] == "at ingest"]


def _wait_sealed(svc: ServiceProcess, bodies: set[str], timeout: float = 120) -> list[dict[str, Any]]:
    """Wait until every body arrived and every stream signed at ingest is proven to its last record."""
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            got = svc.events({"service": PRODUCER, "order": "ingest"})
            streams = _ingest_streams(svc)
        except requests.RequestException:
            time.sleep(0.3)
            continue
        have = {e["body"] for e in got if e["event"] != "audit.checkpoint"}
        # the two reads agree (no periodic checkpoint landed between them): a consistent view to return
        per: dict[str, int] = {}
        for e in got:
            if e["stream"] is not None:
                per[e["stream"]["id"]] = per.get(e["stream"]["id"], 0) + 1
        if (bodies <= have and streams and all(s["proven"] == s["linked"] == s["records"] for s in streams)
                and all(per.get(s["id"], 0) == s["records"] for s in streams if s["service"] == PRODUCER)):
            return got
        time.sleep(0.3)
    raise AssertionError(f"not sealed in {timeout}s: {len(bodies - {e['body'] for e in got})} bodies missing; "
                         f"{svc.log.read_text()[-2000:]}")


def _verify_store(db: Path, keyring: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """verify --store with --allow-open for the service's OWN stream only: its end checkpoint is made at shutdown,
    after its HTTP side stopped, and waits in its spool for the next start (test_service.py says the same); every
    stream signed at ingest is checked closed by the callers."""
    return subprocess.run([CLI, "verify", "--keys", str(keyring), "--store", f"sqlite:///{db}", "--allow-open",
                           *extra], capture_output=True, text=True, timeout=180)


def _ours_closed(db: Path, keyring: Path) -> list[dict[str, Any]]:
    """The verification report's streams signed at ingest, each verified and closed (no --allow-open needed)."""
    rep = orjson.loads(_verify_store(db, keyring, "--format", "json").stdout)
    ours = [s for s in rep["streams"] if s["signed"] == "ingest"]
    assert ours and all(s["status"] == "verified" and s["state"] == "closed" and not s["problems"]
                        for s in ours), ours
    return ours


def _export(db: Path, out: Path) -> int:
    """The stored rows signed at ingest as an OTLP/JSON lines file (the collector file exporter's form), one line per
    row."""
    from otel_audit.service.store import open_store

    store = open_store(f"sqlite:///{db}", readonly=True)
    n = 0
    with out.open("wb") as fh:
        for row in store.iter_rows():
            if row["columns"]["signed"] != "ingest":
                continue
            doc = {"resourceLogs": [{"resource": orjson.loads(row["resource"]), "scopeLogs": [
                {"scope": orjson.loads(row["scope"]), "logRecords": [orjson.loads(row["record"])]}]}]}
            fh.write(orjson.dumps(doc) + b"\n")
            n += 1
    store.close()
    return n


def _insider(db: Path, sql: str) -> None:
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER events_no_update")
    con.execute(sql)
    con.commit()
    con.close()


# -- the whole trail: collector, chain, checkpoints, proofs, verify --------------------------------------------


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory, key_dirs: dict[str, Path]) -> dict[str, Any]:
    """300 records of the plain SDK app through the stock collector into a service that signs at ingest; the
    service answered queries and proofs while up, then stopped (SIGTERM)."""
    folder = tmp_path_factory.mktemp("sign-at-ingest-trail")
    port = free_port()
    svc = _service(folder, key_dirs, port)
    out: dict[str, Any] = {"folder": folder, "db": folder / "audit.db"}
    with svc, _collector(folder, port) as col:
        _finish(_plain_app(folder, col.endpoint("OTLP_HTTP"), 0, 300))
        events = _wait_sealed(svc, {f"login {i}" for i in range(300)})
        out["events"] = events
        out["streams"] = _ingest_streams(svc)
        out["checkpoints"] = svc.get("/v1/checkpoints").json()["checkpoints"]
        some = [e for e in events if e["event"] != "audit.checkpoint"][::37]
        out["proofs"] = {}
        for e in some:
            proc = subprocess.run([CLI, "prove", e["id"], "--url", svc.url, "--keys", str(key_dirs["both"]),
                                   "--witness-keys", str(key_dirs["service"] / "keyring.json"),
                                   "--out", str(folder / f"{e['id']}.tlog-proof")],
                                  capture_output=True, text=True, timeout=60)
            out["proofs"][e["id"]] = proc
        out["proof_json"] = svc.get(f"/v1/events/{some[0]['id']}/proof", Accept="application/json").json()
        out["health"] = svc.get("/healthz").json()
    return out


def test_the_plain_apps_records_are_chained_in_one_stream_of_its_producer(trail: dict[str, Any]) -> None:
    events = trail["events"]
    logins = [e for e in events if e["event"] != "audit.checkpoint"]
    assert len(logins) == 300 and {e["body"] for e in logins} == {f"login {i}" for i in range(300)}
    (s,) = trail["streams"]
    assert s["service"] == PRODUCER and s["signed"] == "at ingest" and s["failed"] == 0
    sid = s["id"]
    assert all(e["stream"]["id"] == sid for e in events)
    seqs = sorted(e["stream"]["seq"] for e in events)
    assert seqs == list(range(len(events)))  # no hole: every seq from the start checkpoint on
    for e in events:
        assert e["signed"] == "at ingest" and e["status"] == "proven", e
        assert e["attributes"]["audit.signed_by"] == "ingest"  # inside the signed content
        assert e["id"] == f"{sid}-{e['stream']['seq']}"
    first = min(events, key=lambda e: e["stream"]["seq"])
    assert first["event"] == "audit.checkpoint" and first["attributes"]["audit.checkpoint.kind"] == "start"
    # the plain app's own fields survive as it sent them
    e = next(x for x in logins if x["body"] == "login 12")
    assert e["user_id"] == "user-2" and e["client_address"] == "203.0.113.7" and e["attributes"]["i"] == 12
    assert trail["health"]["signed_at_ingest"] == 300


def test_checkpoints_every_n_records_signed_by_the_service_and_witnessed(trail: dict[str, Any]) -> None:
    cps = [c for c in trail["checkpoints"] if c["stream"] == trail["streams"][0]["id"]]
    kinds = [c["kind"] for c in cps]
    assert kinds[0] == "start" and kinds.count("size") >= 300 // 50
    sizes = [c["size"] for c in cps]
    assert all(b - a <= 51 for a, b in zip(sizes, sizes[1:], strict=False))  # every 50 records at most
    for c in cps:
        assert "\u2014 service " in c["note"] and c["cosignature"]  # the service's key; its witness cosignature
        assert '"audit.signed_by":"ingest"' in c["note"]  # the signed producer line says so
        assert f'"service.instance.id":"{INSTANCE}"' in c["note"]


def test_every_event_has_a_proof_that_otel_audit_prove_checks(trail: dict[str, Any]) -> None:
    assert len(trail["proofs"]) >= 8
    for eid, proc in trail["proofs"].items():
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.startswith(f"PROVEN: {eid}:") and "signed at ingest" in proc.stdout, proc.stdout
        assert "witnessed by: service" in proc.stdout
    assert trail["proof_json"]["signed"] == "at ingest"
    # a saved proof checks offline, and not with a keyring that lacks the service's key
    eid = next(iter(trail["proofs"]))
    saved = trail["folder"] / f"{eid}.tlog-proof"
    ok = subprocess.run([CLI, "prove", "--file", str(saved), "--keys", str(trail["folder"].parent)], text=True,
                        capture_output=True)
    assert ok.returncode != 0


def test_verify_store_proves_the_trail_and_says_signed_at_ingest(trail: dict[str, Any],
                                                                key_dirs: dict[str, Path]) -> None:
    r = _verify_store(trail["db"], key_dirs["both"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "result: VERIFIED" in r.stdout and "signed at ingest" in r.stdout
    r = _verify_store(trail["db"], key_dirs["both"], "--format", "json")
    rep = orjson.loads(r.stdout)
    (s,) = [x for x in rep["streams"] if x["producer"].get("service.name") == PRODUCER]
    assert s["signed"] == "ingest" and s["status"] == "verified" and s["state"] == "closed"
    assert s["keys"] == ["service"] and s["sealed"] == s["records"] == len(trail["events"]) + 1  # + the end one
    # the producers' keyring alone does not hold the service's key: nothing of the stream is proven
    r = _verify_store(trail["db"], key_dirs["producers"])
    assert r.returncode == 1


def test_an_otlp_json_export_of_the_rows_verifies_with_otel_audit_verify(trail: dict[str, Any],
                                                                        key_dirs: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    n = _export(trail["db"], path)
    assert n >= len(trail["events"])
    r = subprocess.run([CLI, "verify", "--keys", str(key_dirs["both"]), str(path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "signed at ingest" in r.stdout


def test_an_edited_row_is_named_by_verify_store(trail: dict[str, Any], key_dirs: dict[str, Path],
                                                tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    shutil.copy(trail["db"], db)
    e = next(x for x in trail["events"] if x["body"] == "login 77")
    con = sqlite3.connect(db)
    (rec,) = con.execute("SELECT record FROM events WHERE id = ?", (e["id"],)).fetchone()
    con.close()
    doc = orjson.loads(rec)
    doc["body"] = {"stringValue": "login 77 (as the insider would have it)"}
    _insider(db, f"UPDATE events SET record = x'{orjson.dumps(doc).hex()}' WHERE id = '{e['id']}'")
    r = _verify_store(db, key_dirs["both"])
    assert r.returncode == 1, r.stdout
    assert e["id"] in r.stdout and "FAILED" in r.stdout
    # an edited column is named too
    shutil.copy(trail["db"], db)
    _insider(db, f"UPDATE events SET signed = 'source' WHERE id = '{e['id']}'")
    r = _verify_store(db, key_dirs["both"], "--format", "json")
    assert r.returncode == 1
    assert any(e["id"] in p and "signed" in p for p in orjson.loads(r.stdout)["problems"])


# -- restarts: a clean one, and kill -9 mid-stream ----------------------------------------------------------------


def test_restart_and_kill_mid_stream_lose_nothing_and_leave_no_hole(tmp_path: Path,
                                                                    key_dirs: dict[str, Path]) -> None:
    """The plain app sends 1,500 records through the collector (its queue on disk) while the service is killed
    with SIGKILL once and restarted cleanly once: every record is stored, the chain continues (the crashed stream
    in place, the cleanly stopped one by a successor naming it), and verify --store proves all of it."""
    port = free_port()
    svc = _service(tmp_path, key_dirs, port)
    n = 1500
    with _collector(tmp_path, port) as col:
        svc.start()
        app = _plain_app(tmp_path, col.endpoint("OTLP_HTTP"), 0, n, pause_every=10)  # ~8 s

        def stored() -> int:
            try:
                return int(svc.get("/healthz").json()["signed_at_ingest"])
            except requests.RequestException:
                return 0

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and stored() < 200:
            time.sleep(0.05)
        svc.kill()  # mid-stream: records acknowledged so far are on disk; the collector retries the rest
        time.sleep(1.0)
        svc.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and stored() < 200:
            time.sleep(0.05)
        svc.stop()  # a clean restart: the stream ends, the next one names it
        svc.start()
        _finish(app)
        events = _wait_sealed(svc, {f"login {i}" for i in range(n)}, timeout=180)
        streams = _ingest_streams(svc)
        svc.stop()
    logins = [e for e in events if e["event"] != "audit.checkpoint"]
    assert {e["body"] for e in logins} == {f"login {i}" for i in range(n)}  # nothing acknowledged is lost
    # the crash did not start a stream (the chain went on in place); the clean restart did, naming the first
    assert len(streams) == 2 and all(s["failed"] == 0 for s in streams) and app.returncode == 0
    for s in streams:  # no hole in any stream
        seqs = sorted(e["stream"]["seq"] for e in events if e["stream"]["id"] == s["id"])
        assert seqs == list(range(s["records"])), s
    r = _verify_store(tmp_path / "audit.db", key_dirs["both"], "--format", "json")
    rep = orjson.loads(r.stdout)
    assert r.returncode == 0, rep["problems"] + [p for s in rep["streams"] for p in s["problems"]]
    ours = [s for s in rep["streams"] if s["signed"] == "ingest"]
    assert len(ours) == len(streams) and all(s["state"] == "closed" for s in ours)
    linked = [s for s in ours if s["predecessor"]]
    assert linked and all(s["predecessor"] in {x["stream_id"] for x in ours} for s in linked)


# -- racing requests for one producer --------------------------------------------------------------------------


def _request(body: str, n: int, **resource: Any) -> bytes:
    res = {"service.name": PRODUCER, "service.instance.id": INSTANCE, **resource}
    return orjson.dumps({"resourceLogs": [{
        "resource": {"attributes": [{"key": k, "value": {"stringValue": v}} for k, v in res.items()]},
        "scopeLogs": [{"scope": {"name": "racer"}, "logRecords": [
            {"timeUnixNano": str(time.time_ns()), "severityNumber": 9, "body": {"stringValue": f"{body} {i}"},
             "attributes": [{"key": "user.id", "value": {"stringValue": "alice"}}]} for i in range(n)]}]}]})


def test_racing_requests_for_one_producer_never_fork_its_chain(tmp_path: Path, key_dirs: dict[str, Path]) -> None:
    errors: list[str] = []
    with _service(tmp_path, key_dirs) as svc:

        def send(k: int) -> None:
            for j in range(10):
                r = svc.post_json(_request(f"race {k}-{j}", 7))
                if r.status_code != 200 or r.content.strip() != b"{}":
                    errors.append(r.text)

        threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        bodies = {f"race {k}-{j} {i}" for k in range(8) for j in range(10) for i in range(7)}
        events = _wait_sealed(svc, bodies)
        (s,) = _ingest_streams(svc)
        assert sorted(e["stream"]["seq"] for e in events) == list(range(s["records"]))
        assert svc.get("/v1/findings").json()["findings"] == []
    r = _verify_store(tmp_path / "audit.db", key_dirs["both"])
    assert r.returncode == 0, r.stdout
    assert len(_ours_closed(tmp_path / "audit.db", key_dirs["both"])) == 1


# -- attacks: claiming to be signed at ingest, or writing into a stream the service signs ----------------------------


def _kv(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": {"intValue": str(value)} if type(value) is int else {"stringValue": value}}


def _forged(stream: str, seq: int, prev: str, body: str, *, claim: bool) -> bytes:
    """A record with integrity attributes made by the client: its digest is right for its content."""
    attrs: dict[str, Any] = {"user.id": "mallory", **({"audit.signed_by": "ingest"} if claim else {})}
    t = time.time_ns()
    content = canonical.content_bytes("authentication.login.succeeded", t, 9, "", body, attrs)
    digest = canonical.record_digest(bytes.fromhex(prev), canonical.join(stream, seq, content)).hex()
    rec = {"timeUnixNano": str(t), "severityNumber": 9, "body": {"stringValue": body},
           "eventName": "authentication.login.succeeded",
           "attributes": [_kv(k, v) for k, v in attrs.items()] + [
               _kv("audit.stream.id", stream), _kv("audit.stream.seq", seq), _kv("audit.integrity.prev", prev),
               _kv("audit.integrity.digest", digest)]}
    res = {"attributes": [_kv("service.name", PRODUCER), _kv("service.instance.id", INSTANCE)]}
    return orjson.dumps({"resourceLogs": [{"resource": res, "scopeLogs": [{"logRecords": [rec]}]}]})


def test_a_client_cannot_pass_as_signed_at_ingest_or_write_into_a_service_stream(
        tmp_path: Path, key_dirs: dict[str, Path]) -> None:
    with _service(tmp_path, key_dirs) as svc:
        assert svc.post_json(_request("genuine", 5)).content.strip() == b"{}"
        _wait_sealed(svc, {f"genuine {i}" for i in range(5)})
        (s,) = _ingest_streams(svc)
        last = max(svc.events({"stream": s["id"]}), key=lambda e: e["stream"]["seq"])
        sid, nxt, head = s["id"], last["stream"]["seq"] + 1, last["digest"]
        attempts = {
            # an unsigned record claiming it was signed at ingest
            "claim": _request("x", 1).replace(b'"attributes":[{"key":"user.id"',
                                              b'"attributes":[{"key":"audit.signed_by","value":{"stringValue":'
                                              b'"ingest"}},{"key":"user.id"'),
            # the service's stream continued by the client, with and without the claim
            "next": _forged(sid, nxt, head, "forged next", claim=False),
            "next+claim": _forged(sid, nxt, head, "forged next claiming", claim=True),
            "later": _forged(sid, nxt + 5, "00" * 32, "forged later", claim=False),
            # a stream of its own claiming to be signed at ingest
            "own+claim": _forged("ab" * 16, 0, "00" * 32, "own stream claiming", claim=True),
            # integrity attributes with empty values on an unsigned record (never chained twice, never a 503)
            "empty id": _request("x", 1).replace(b'"attributes":[{"key":"user.id"',
                                                 b'"attributes":[{"key":"audit.stream.id","value":{}},'
                                                 b'{"key":"user.id"'),
            "empty digest": _request("x", 1).replace(b'"attributes":[{"key":"user.id"',
                                                     b'"attributes":[{"key":"audit.integrity.digest","value":{}},'
                                                     b'{"key":"user.id"'),
        }
        for name, body in attempts.items():
            r = svc.post_json(body)
            assert r.status_code == 200, (name, r.text)
            doc = orjson.loads(r.content)
            assert doc["partialSuccess"]["rejectedLogRecords"] == "1", (name, doc)
        # nothing of theirs is stored, in any form
        everything = svc.events({"order": "ingest"})
        assert not [e for e in everything if e["body"] in ("x 0", "forged next", "forged next claiming",
                                                            "forged later", "own stream claiming")]
        findings = svc.get("/v1/findings").json()["findings"]
        assert sum(1 for f in findings if f["kind"] == "forged") == len(attempts)
        # the service's stream goes on from where the service left it, and no genuine record is marked failed
        assert svc.post_json(_request("after", 3)).content.strip() == b"{}"
        events = _wait_sealed(svc, {f"after {i}" for i in range(3)} | {f"genuine {i}" for i in range(5)})
        ours = [e for e in events if e["stream"]["id"] == sid]
        assert sorted(e["stream"]["seq"] for e in ours) == list(range(len(ours)))
        assert all(e["status"] == "proven" and e["signed"] == "at ingest" for e in ours)
    r = _verify_store(tmp_path / "audit.db", key_dirs["both"])
    assert r.returncode == 0, r.stdout
    _ours_closed(tmp_path / "audit.db", key_dirs["both"])


def test_a_signed_producer_is_untouched_and_stays_signed_at_source(tmp_path: Path,
                                                                  key_dirs: dict[str, Path]) -> None:
    """Records signed at their source are verified as before and shown `at source`; the library's signing processor
    renames an audit.signed_by its caller set, so a record signed at source never claims to be signed at ingest."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    from otel_audit.exporters.file import FileLogRecordExporter
    from otel_audit.processors.signing import SigningProcessor

    path = tmp_path / "archive.jsonl"
    resource = Resource.create({"service.name": "signed-gateway"})
    provider = LoggerProvider(resource=resource)
    sp = SigningProcessor(key_dirs["producers"], downstream=SimpleLogRecordProcessor(FileLogRecordExporter(str(path))),
                          resource=resource, handle_signals=False)
    provider.add_log_record_processor(sp)
    provider.get_logger("t").emit(event_name="authentication.login.succeeded", body="signed",
                                  attributes={"audit.signed_by": "ingest", "user.id": "bob"})
    provider.shutdown()
    with _service(tmp_path, key_dirs) as svc:
        for line in path.read_bytes().splitlines():
            assert svc.post_json(line).content.strip() == b"{}"
        (e,) = [x for x in svc.events({"order": "ingest"}) if x["body"] == "signed"]
        assert e["signed"] == "at source" and e["status"] == "proven"
        assert e["attributes"]["audit.signed_by.claimed"] == "ingest" and "audit.signed_by" not in e["attributes"]
        streams = svc.get("/v1/streams").json()["streams"]
        (s,) = [x for x in streams if x["service"] == "signed-gateway"]
        assert s["signed"] == "at source" and all(x["signed"] == "at source" for x in streams)  # the own one too


# -- the switch ---------------------------------------------------------------------------------------------------


def test_sign_at_ingest_is_on_by_default_with_a_key_and_can_be_turned_off(tmp_path: Path,
                                                                         key_dirs: dict[str, Path]) -> None:
    base = {"keys": str(key_dirs["producers"])}
    assert not from_mapping(base, tmp_path).sign_at_ingest.enabled
    on = from_mapping({**base, "witness_keys": str(key_dirs["service"])}, tmp_path).sign_at_ingest
    assert on.enabled and on.checkpoint_every == 1000 and on.checkpoint_interval == 5.0
    off = from_mapping({**base, "witness_keys": str(key_dirs["service"]), "sign_at_ingest": False}, tmp_path)
    assert not off.sign_at_ingest.enabled
    with pytest.raises(ConfigError, match="witness_keys"):
        from_mapping({**base, "sign_at_ingest": True}, tmp_path)
    for bad, key in (({"checkpoint_every": 0}, "checkpoint_every"), ({"checkpoint_interval": "soon"},
                                                                     "checkpoint_interval"), ("yes", "sign_at_ingest")):
        with pytest.raises(ConfigError, match=key):
            from_mapping({**base, "witness_keys": str(key_dirs["service"]), "sign_at_ingest": bad}, tmp_path)
    # off: an unsigned record is stored as received, unsigned, as before
    with _service(tmp_path, key_dirs, enabled=False) as svc:
        assert svc.post_json(_request("plain", 2)).content.strip() == b"{}"
        got = [e for e in svc.events({"order": "ingest"}) if e["body"].startswith("plain")]
        assert len(got) == 2 and all(e["signed"] == "no" and e["status"] == "unsigned" for e in got)
        assert all(e["id"].startswith("u-") for e in got)
    assert Keyring.load(key_dirs["both"])  # the auditor's keyring folder loads


def test_a_rogue_checkpoint_claiming_to_be_signed_at_ingest_proves_nothing(tmp_path: Path,
                                                                           key_dirs: dict[str, Path]) -> None:
    """A client makes its own stream look like a service-side one: origin otel-audit-ingest/<id>, a producer line
    saying audit.signed_by=ingest, signed by a key of its own. Its records are stored as what they are (signed at
    source, never proven), the checkpoint is a finding, and verify proves nothing of that stream."""
    from otel_audit.keys import Signer
    from otel_audit.note import Checkpoint, format_note

    rogue = Signer.generate("service")  # even the service key's name
    sid, t = "cd" * 16, time.time_ns()
    cp = Checkpoint(f"otel-audit-ingest/{sid}", 0, bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), bytes(32), t, "start",
        {"service.name": PRODUCER, "audit.signed_by": "ingest"})
    note = format_note(cp.body(), [rogue.sign(cp.body().encode())])
    attrs: dict[str, Any] = {"audit.category": "integrity", "audit.action": "checkpoint", "audit.outcome": "success",
                             "audit.checkpoint.kind": "start", "audit.checkpoint.size": 0,
                             "audit.checkpoint.key": "service"}
    content = canonical.content_bytes("audit.checkpoint", t, 9, "INFO", note, attrs)
    digest = canonical.record_digest(bytes(32), canonical.join(sid, 0, content)).hex()
    rec = {"timeUnixNano": str(t), "severityNumber": 9, "severityText": "INFO", "body": {"stringValue": note},
           "eventName": "audit.checkpoint", "attributes": [_kv(k, v) for k, v in attrs.items()] + [
               _kv("audit.stream.id", sid), _kv("audit.stream.seq", 0), _kv("audit.integrity.prev", "00" * 32),
               _kv("audit.integrity.digest", digest)]}
    body = orjson.dumps({"resourceLogs": [{"resource": {"attributes": [_kv("service.name", PRODUCER)]},
                                           "scopeLogs": [{"logRecords": [rec]}]}]})
    with _service(tmp_path, key_dirs) as svc:
        assert svc.post_json(body).status_code == 200
        assert svc.post_json(_forged(sid, 1, digest, "rogue event", claim=False)).content.strip() == b"{}"
        rows = svc.events({"stream": sid})
        assert len(rows) == 2 and all(e["signed"] == "at source" and e["status"] != "proven" for e in rows)
        (s,) = [x for x in svc.get("/v1/streams").json()["streams"] if x["id"] == sid]
        assert s["signed"] == "at source" and s["proven"] == 0
        assert any(f["kind"] == "checkpoint" and f["stream"] == sid for f in svc.get("/v1/findings").json()["findings"])
    rep = orjson.loads(_verify_store(tmp_path / "audit.db", key_dirs["both"], "--format", "json").stdout)
    (v,) = [x for x in rep["streams"] if x["stream_id"] == sid]
    assert v["status"] == "failed" and v["sealed"] == 0 and v["signed"] == "source"
