"""Attacks on several `otel-audit serve` instances sharing ONE PostgreSQL database (docs/service.md §2a, §3
"Several instances on one PostgreSQL"), from the outside: real processes, real sockets on loopback, a real
PostgreSQL server (tests/pg_support.py), `otel-audit verify --store` as the judge.

Each test is one probe; each asserts the correct behaviour. Three found defects, fixed since: a client could
write into the service's own audit stream (P11), an instance frozen while holding the write lock hung every
other (P10), and a PostgreSQL restart logged the store as "<unparsable URL>" and tracebacks (P5)."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from collector import free_port
from conftest import write_archive
from pg_support import OWNER_PASSWORD, SERVICE_PASSWORD
from service_support import CLI, Backend, ServiceProcess, write_config

from otel_audit import canonical, keys

pytestmark = pytest.mark.slow

PRODUCER = "attack-plain"
INSTANCE = "gw-1"


# -- helpers --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ck(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("attack-cluster-keys")
    out = {"producers": base / "producers", "service": base / "service", "both": base / "both"}
    keys.generate(out["producers"], "gateway")
    keys.generate(out["service"], "service")
    out["both"].mkdir()
    shutil.copy(out["producers"] / "keyring.json", out["both"] / "producers.json")
    shutil.copy(out["service"] / "keyring.json", out["both"] / "service.json")
    return out


def _instance(folder: Path, store: Backend, ck: dict[str, Path], interval: str = "1s", every: int = 1000,
              port: int | None = None) -> ServiceProcess:
    folder.mkdir(parents=True, exist_ok=True)
    http = port if port is not None else free_port()
    cfg = write_config(folder, ck["producers"], store=store.url, witness_keys=str(ck["service"]),
                       sign_at_ingest={"checkpoint_every": every, "checkpoint_interval": interval})
    cfg.write_text(cfg.read_text().replace("127.0.0.1:0", f"127.0.0.1:{http}"))
    return ServiceProcess(cfg)


def _kv(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "value": {"intValue": str(value)} if type(value) is int else {"stringValue": value}}


def _req(body: str, n: int, instance: str = INSTANCE, service: str = PRODUCER) -> bytes:
    res = {"service.name": service, "service.instance.id": instance}
    return orjson.dumps({"resourceLogs": [{
        "resource": {"attributes": [_kv(k, v) for k, v in res.items()]},
        "scopeLogs": [{"scope": {"name": "attacker"}, "logRecords": [
            {"timeUnixNano": str(time.time_ns()), "severityNumber": 9, "body": {"stringValue": f"{body} {i}"},
             "attributes": [_kv("user.id", "alice")]} for i in range(n)]}]}]})


def _forged(stream: str, seq: int, prev: str, body: str, *, claim: bool = False, service: str = PRODUCER,
            instance: str = INSTANCE) -> bytes:
    """A record with integrity attributes made by the client; its digest is right for its content."""
    attrs: dict[str, Any] = {"user.id": "mallory", **({"audit.signed_by": "ingest"} if claim else {})}
    t = time.time_ns()
    content = canonical.content_bytes("authentication.login.succeeded", t, 9, "", body, attrs)
    digest = canonical.record_digest(bytes.fromhex(prev), canonical.join(stream, seq, content)).hex()
    rec = {"timeUnixNano": str(t), "severityNumber": 9, "body": {"stringValue": body},
           "eventName": "authentication.login.succeeded",
           "attributes": [_kv(k, v) for k, v in attrs.items()] + [
               _kv("audit.stream.id", stream), _kv("audit.stream.seq", seq), _kv("audit.integrity.prev", prev),
               _kv("audit.integrity.digest", digest)]}
    res = {"attributes": [_kv("service.name", service), _kv("service.instance.id", instance)]}
    return orjson.dumps({"resourceLogs": [{"resource": res, "scopeLogs": [{"logRecords": [rec]}]}]})


def _ok(r: requests.Response) -> bool:
    return r.status_code == 200 and r.content.strip() == b"{}"


def _ingest_streams(svc: ServiceProcess) -> list[dict[str, Any]]:
    return [s for s in svc.get("/v1/streams").json()["streams"] if s["signed"] == "at ingest"]


def _until(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (requests.RequestException, ValueError, KeyError):
            last = None
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout}s (last seen {last!r})")


def _sealed(svc: ServiceProcess, bodies: set[str], service: str = PRODUCER, timeout: float = 60
            ) -> list[dict[str, Any]]:
    """Wait until every body is stored and every at-ingest stream of `service` is proven to its last record."""
    def check() -> list[dict[str, Any]]:
        got = svc.events({"service": service, "order": "ingest"})
        streams = [s for s in _ingest_streams(svc) if s["service"] == service]
        have = {e["body"] for e in got if e["event"] != "audit.checkpoint"}
        per: dict[str, int] = {}
        for e in got:
            if e["stream"] is not None:
                per[e["stream"]["id"]] = per.get(e["stream"]["id"], 0) + 1
        if (bodies <= have and streams and all(s["proven"] == s["linked"] == s["records"] for s in streams)
                and all(per.get(s["id"], 0) == s["records"] for s in streams)):
            return got
        return []
    return list(_until(f"{len(bodies)} bodies stored and sealed", check, timeout))


def _verify(store: Backend, ck: dict[str, Path], *extra: str) -> tuple[int, dict[str, Any]]:
    r = subprocess.run([CLI, "verify", "--keys", str(ck["both"]), "--store", store.verify_url, "--allow-open",
                        "--format", "json", *extra], capture_output=True, text=True, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, orjson.loads(r.stdout)


def _problems(rep: dict[str, Any]) -> list[str]:
    return list(rep["problems"]) + [f'{s["stream_id"]}: {p}' for s in rep["streams"] for p in s["problems"]]


def _no_tracebacks(*svcs: ServiceProcess) -> None:
    """No traceback and no store password in the instances' logs."""
    for s in svcs:
        text = s.log.read_text(errors="replace")
        assert "Traceback" not in text, text[max(0, text.index("Traceback") - 500):][:4000]
        for secret in (SERVICE_PASSWORD, OWNER_PASSWORD):
            assert secret not in text, "a store password in the log"


def _bodies(events: list[dict[str, Any]]) -> list[str]:
    return [e["body"] for e in events if e["event"] != "audit.checkpoint"]


# -- P1: one plain producer, two instances, many threads on both ----------------------------------------------------


def test_p1_concurrent_same_plain_producer_on_two_instances_one_chain_no_fork(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """12 threads (6 on each instance) send the same plain producer's records; checkpoints every 25 records and
    each instance's 1 s clock seal concurrently. Expected: every request 200 `{}`, ONE stream, seqs 0..n-1 each
    once, no findings, both instances give the same /v1/streams, a proof served by B of a record A chained
    checks with `otel-audit prove`, verify --store passes."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck, every=25)
    b = _instance(tmp_path / "b", store, ck, every=25)
    errors: list[str] = []
    sent: dict[str, list[str]] = {"a": [], "b": []}
    with a, b:
        def send(name: str, svc: ServiceProcess, k: int) -> None:
            for j in range(5):
                body = f"race {name}{k}-{j}"
                r = svc.post_json(_req(body, 9))
                if _ok(r):
                    sent[name].extend(f"{body} {i}" for i in range(9))
                else:
                    errors.append(f"{r.status_code} {r.text[:300]}")

        threads = [threading.Thread(target=send, args=(n, s, k)) for k in range(6) for n, s in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:5]
        want = set(sent["a"]) | set(sent["b"])
        assert len(want) == 12 * 5 * 9
        events = _sealed(b, want)
        assert sorted(_bodies(events)) == sorted(want)  # each once
        streams = _ingest_streams(b)
        assert len(streams) == 1, streams
        (s,) = streams
        seqs = sorted(e["stream"]["seq"] for e in events)
        assert seqs == list(range(s["records"])), "a seq repeats or is missing"
        assert s["failed"] == 0, s
        for svc in (a, b):
            assert svc.get("/v1/findings").json()["findings"] == []
        sa = {x["id"]: x for x in _ingest_streams(a)}
        sb = {x["id"]: x for x in _ingest_streams(b)}
        assert sa == sb
        for e in events[:: max(1, len(events) // 20)]:
            ea, eb = a.get(f"/v1/events/{e['id']}").json(), b.get(f"/v1/events/{e['id']}").json()
            assert ea == eb, (ea, eb)
        ca = a.get("/v1/checkpoints", {"stream": s["id"]}).json()
        assert ca == b.get("/v1/checkpoints", {"stream": s["id"]}).json()
        # a record A chained (its body says so), its proof fetched from B
        mine = next(e for e in events if e["body"] and e["body"].startswith("race a0-0"))
        p = subprocess.run([CLI, "prove", "--url", b.url, "--keys", str(ck["both"]), "--witness-keys",
                            str(ck["service"] / "keyring.json"), mine["id"]], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0 and "PROVEN" in p.stdout, p.stdout + p.stderr
        a.stop()
        b.stop()
    _no_tracebacks(a, b)
    rc, rep = _verify(store, ck)
    assert rc == 0, _problems(rep)
    ours = [x for x in rep["streams"] if x["signed"] == "ingest"]
    assert len(ours) == 1 and ours[0]["status"] == "verified" and ours[0]["state"] == "closed", ours


# -- P2: kill -9 mid big request, repeatedly, while the other instance ingests ---------------------------------------


def test_p2_repeated_kill9_mid_big_request_loses_nothing_acknowledged(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """A receives big requests (1500 records) of the plain producer and is killed with SIGKILL at a random moment,
    twice, restarted each time on the same port; B meanwhile keeps ingesting the same producer. Expected:
    every acknowledged record stored exactly once, no record of any request stored twice, the stream sealed,
    no findings, verify --store passes."""
    store = Backend.make("postgres", tmp_path, request)
    port_a = free_port()
    a = _instance(tmp_path / "a", store, ck, port=port_a, every=200)
    b = _instance(tmp_path / "b", store, ck, every=200)
    acked: list[str] = []
    tried: list[str] = []
    stop = threading.Event()
    b_errors: list[str] = []
    rnd = random.Random(7)
    with a, b:
        def b_side() -> None:
            j = 0
            while not stop.is_set():
                body = f"b {j}"
                r = b.post_json(_req(body, 20))
                if _ok(r):
                    acked.extend(f"{body} {i}" for i in range(20))
                else:
                    b_errors.append(f"{r.status_code} {r.text[:200]}")
                j += 1

        def a_side(cycle: int) -> None:
            for j in range(50):
                body = f"a{cycle} {j}"
                tried.extend(f"{body} {i}" for i in range(1500))
                try:
                    r = requests.post(f"http://127.0.0.1:{port_a}/v1/logs", data=_req(body, 1500),
                                      headers={"Content-Type": "application/json"}, timeout=30)
                except requests.RequestException:
                    return
                if _ok(r):
                    acked.extend(f"{body} {i}" for i in range(1500))

        tb = threading.Thread(target=b_side)
        tb.start()
        for cycle in range(2):
            ta = threading.Thread(target=a_side, args=(cycle,))
            ta.start()
            time.sleep(0.6 + rnd.random() * 1.2)
            a.kill()
            ta.join(60)
            a.start()
        stop.set()
        tb.join(60)
        assert not b_errors, b_errors[:5]
        events = _sealed(b, set(acked), timeout=90)
        stored = _bodies(events)
        dup = {x for x in stored if stored.count(x) > 1} if len(stored) != len(set(stored)) else set()
        assert not dup, f"stored twice: {sorted(dup)[:5]}"
        assert set(acked) <= set(stored)
        assert set(stored) <= set(tried) | set(acked)
        for svc in (a, b):
            assert svc.get("/v1/findings").json()["findings"] == []
        b.stop()
        a.stop()
    _no_tracebacks(b)
    rc, rep = _verify(store, ck)
    assert rc == 0, _problems(rep)
    ours = [x for x in rep["streams"] if x["signed"] == "ingest"]
    assert ours and all(x["status"] == "verified" and x["state"] == "closed" for x in ours), ours


# -- P3: stop one instance cleanly while the other ingests the same producer ------------------------------------------


def test_p3_clean_stop_of_one_instance_while_the_other_ingests_the_same_producer(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """B ingests the plain producer from 3 threads without pause; A, which ingested the same producer too, is
    stopped (SIGTERM) in the middle: its end checkpoint ends the stream B writes into. Expected: every acked
    record stored once, nothing chained after the end, the next stream names the ended one, verify --store
    passes with every at-ingest stream closed."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck, every=100)
    b = _instance(tmp_path / "b", store, ck, every=100)
    acked: list[str] = []
    errors: list[str] = []
    stop = threading.Event()
    with a, b:
        assert _ok(a.post_json(_req("a first", 30)))
        acked.extend(f"a first {i}" for i in range(30))

        def b_side(k: int) -> None:
            j = 0
            while not stop.is_set():
                body = f"b{k} {j}"
                r = b.post_json(_req(body, 10))
                if _ok(r):
                    acked.extend(f"{body} {i}" for i in range(10))
                else:
                    errors.append(f"{r.status_code} {r.text[:200]}")
                j += 1

        ts = [threading.Thread(target=b_side, args=(k,)) for k in range(3)]
        for t in ts:
            t.start()
        time.sleep(1.0)
        a.stop()
        time.sleep(1.0)
        stop.set()
        for t in ts:
            t.join(60)
        assert not errors, errors[:5]
        events = _sealed(b, set(acked))
        stored = _bodies(events)
        assert sorted(stored) == sorted(set(stored)) and set(acked) == set(stored)
        streams = _ingest_streams(b)
        assert len(streams) >= 2, streams  # A ended the first one; B's next records started a new one
        assert b.get("/v1/findings").json()["findings"] == []
        b.stop()
    _no_tracebacks(a, b)
    rc, rep = _verify(store, ck)
    assert rc == 0, _problems(rep)
    ours = [x for x in rep["streams"] if x["signed"] == "ingest"]
    assert all(x["status"] == "verified" and x["state"] == "closed" for x in ours), ours
    assert sum(1 for x in ours if not x["predecessor"]) == 1, ours  # one lineage: each later stream names the last


# -- P4: writing into a stream another instance signs ----------------------------------------------------------------


def _head(svc: ServiceProcess, sid: str) -> tuple[int, str]:
    evs = svc.events({"stream": sid, "order": "ingest"})
    last = max(evs, key=lambda e: e["stream"]["seq"])
    return last["stream"]["seq"] + 1, last["digest"]


def test_p4_client_cannot_write_into_a_stream_the_other_instance_signs_while_it_ingests(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """A chains the plain producer continuously; a client sends B records naming A's stream at the next seq with
    the correct prev digest (read from B just before), with and without `audit.signed_by`, and under another
    service's resource. Expected: every one refused (`partialSuccess`), a `forged` finding each, none stored, no
    genuine record failed, verify --store passes."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck, every=20)
    b = _instance(tmp_path / "b", store, ck, every=20)
    stop = threading.Event()
    acked: list[str] = []
    refused: list[str] = []
    accepted: list[str] = []
    with a, b:
        assert _ok(a.post_json(_req("seed", 3)))
        acked.extend(f"seed {i}" for i in range(3))
        (s,) = _until("the stream", lambda: _ingest_streams(b))
        sid = s["id"]

        def a_side() -> None:
            j = 0
            while not stop.is_set():
                if _ok(a.post_json(_req(f"genuine {j}", 3))):
                    acked.extend(f"genuine {j} {i}" for i in range(3))
                j += 1

        t = threading.Thread(target=a_side)
        t.start()
        n = 0
        for k in range(12):
            nxt, head = _head(b, sid)
            for variant in ("plain", "claim", "other-service"):
                body = f"forged {k} {variant}"
                rec = _forged(sid, nxt, head, body, claim=variant == "claim",
                              service="someone-else" if variant == "other-service" else PRODUCER)
                r = b.post_json(rec)
                n += 1
                doc = orjson.loads(r.content)
                if r.status_code == 200 and doc.get("partialSuccess", {}).get("rejectedLogRecords") == "1":
                    refused.append(body)
                else:
                    accepted.append(f"{body}: {r.status_code} {r.text[:200]}")
        stop.set()
        t.join(60)
        assert not accepted, accepted[:5]
        _sealed(a, set(acked))
        everything = b.events({"order": "ingest"})
        assert not [e for e in everything if (e["body"] or "").startswith("forged")]
        findings = b.get("/v1/findings").json()["findings"]
        assert sum(1 for f in findings if f["kind"] == "forged") == n, [f["kind"] for f in findings]
        assert not [f for f in findings if f["kind"] != "forged"], findings[:3]
        a.stop()
        b.stop()
    _no_tracebacks(a, b)
    rc, rep = _verify(store, ck)
    assert rc == 0, _problems(rep)


def test_p4b_forgery_raced_against_stream_creation_on_the_other_instance(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """For 5 fresh producers: A receives the producer's first record (creating its stream) while a client polls
    B's /v1/streams and, the moment the stream id shows, sends B forged records naming it (seq 1 after the start
    checkpoint, with its digest, and later seqs). Expected: all refused, never stored."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck, every=1000)
    b = _instance(tmp_path / "b", store, ck, every=1000)
    accepted: list[str] = []
    seen: set[str] = set()
    with a, b:
        for p in range(5):
            inst = f"fresh-{p}"
            created = threading.Event()

            def create(p: int = p, inst: str = inst, created: threading.Event = created) -> None:
                assert _ok(a.post_json(_req(f"first {p}", 1, instance=inst)))
                created.set()

            t = threading.Thread(target=create)
            t.start()
            sid = None
            deadline = time.monotonic() + 20
            while sid is None and time.monotonic() < deadline:
                found = [x for x in b.get("/v1/streams").json()["streams"]
                         if x["signed"] == "at ingest" and x["id"] not in seen]
                if found:
                    sid = found[0]["id"]
            assert sid is not None
            start = [e for e in b.events({"stream": sid, "order": "ingest"}) if e["stream"]["seq"] == 0]
            prev = start[0]["digest"] if start else "00" * 32
            for seq in (1, 2, 5):
                r = b.post_json(_forged(sid, seq, prev if seq == 1 else "00" * 32, f"forged {p} {seq}",
                                        instance=inst))
                if not (r.status_code == 200 and orjson.loads(r.content).get("partialSuccess", {})
                        .get("rejectedLogRecords") == "1"):
                    accepted.append(f"{p}/{seq}: {r.text[:200]}")
            t.join(30)
            seen = {x["id"] for x in _ingest_streams(b)}
        assert not accepted, accepted
        assert not [e for e in b.events({"order": "ingest"}) if (e["body"] or "").startswith("forged")]
        a.stop()
        b.stop()
    rc, rep = _verify(store, ck)
    assert rc == 0, _problems(rep)


def test_p4c_client_cannot_continue_or_poison_an_ended_service_stream_via_the_other_instance(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """A chains the producer and is stopped (its end checkpoint closes the stream). A client then sends B records
    naming the ENDED stream: right after its end (seq end+1, correct prev digest), and a variant at a stored seq.
    Expected: refused as forged; the ended stream still verifies closed; B's next records of the producer start a
    new stream naming it."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck)
    b = _instance(tmp_path / "b", store, ck)
    with a, b:
        assert _ok(a.post_json(_req("before", 5)))
        _sealed(b, {f"before {i}" for i in range(5)})
        (s,) = _ingest_streams(b)
        sid = s["id"]
        a.stop()
        s = _until("the stream closed", lambda: [x for x in _ingest_streams(b) if x["id"] == sid
                                                   and x["state"] == "closed"])[0]
        nxt, head = _head(b, sid)
        attempts = {"after end": _forged(sid, nxt, head, "forged after end"),
                    "variant of seq 2": _forged(sid, 2, "00" * 32, "forged variant"),
                    "after end, claim": _forged(sid, nxt, head, "forged after end claiming", claim=True)}
        for name, body in attempts.items():
            r = b.post_json(body)
            assert r.status_code == 200, (name, r.text)
            assert orjson.loads(r.content).get("partialSuccess", {}).get("rejectedLogRecords") == "1", (name, r.text)
        assert _ok(b.post_json(_req("after", 5)))
        _sealed(b, {f"after {i}" for i in range(5)})
        b.stop()
    rc, rep = _verify(store, ck)
    assert rc == 0, _problems(rep)
    ours = [x for x in rep["streams"] if x["signed"] == "ingest"]
    assert len(ours) == 2 and all(x["status"] == "verified" and x["state"] == "closed" for x in ours), ours


# -- P5: PostgreSQL restarted while two instances ingest --------------------------------------------------------------


def test_p5_postgres_restart_while_two_instances_ingest(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """Both instances ingest the plain producer (and retry a 503 or a lost answer, as the collector does) while the
    PostgreSQL server is restarted (pg_ctl stop -m fast, 2.5 s, start). Expected: 503s meanwhile (never a 500, never
    a hang), both instances serve again without being restarted, every acked record stored, the chain sealed with no
    finding, verify --store passes — and the outage logged as the one-line errors docs/service.md §3 promises (the
    masked URL, no traceback). Observed: the data holds; the log has a Traceback (StoreUnavailable from the
    periodic checkpoint) and names the store `<unparsable URL>`."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck, every=50)
    b = _instance(tmp_path / "b", store, ck, every=50)
    acked: list[str] = []
    statuses: dict[int, int] = {}
    answers: list[str] = []
    stop = threading.Event()
    with a, b:
        def side(name: str, svc: ServiceProcess) -> None:
            j = 0
            while not stop.is_set():
                body = f"{name} {j}"
                data = _req(body, 10)
                for _attempt in range(200):
                    try:
                        r = svc.post_json(data)
                        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                        if r.status_code != 200:
                            answers.append(r.text)
                        if _ok(r):
                            acked.extend(f"{body} {i}" for i in range(10))
                            break
                    except requests.RequestException:
                        statuses[-1] = statuses.get(-1, 0) + 1
                    time.sleep(0.1)
                j += 1

        ts = [threading.Thread(target=side, args=(n, s)) for n, s in (("a", a), ("b", b), ("a2", a), ("b2", b))]
        for t in ts:
            t.start()
        time.sleep(1.5)
        srv = store.server
        srv.stop("fast")  # pg_ctl stop -m fast; a 2.5 s outage (both instances' 1 s clocks tick into it), then start
        time.sleep(2.5)
        srv.start()
        time.sleep(1)
        stop.set()
        for t in ts:
            t.join(60)
        assert not any(t.is_alive() for t in ts), "a request hangs"
        assert set(statuses) <= {200, 503, -1}, (statuses, answers[:3])
        assert not [x for x in answers if SERVICE_PASSWORD in x], "a store password in an answer"
        print("P5 statuses", statuses, answers[:2])
        assert acked
        events = _sealed(b, set(acked), timeout=60)
        assert set(acked) <= set(_bodies(events))
        for svc in (a, b):
            assert svc.get("/healthz").status_code == 200
            fs = svc.get("/v1/findings").json()["findings"]
            assert fs == [], fs[:3]
        a.stop()
        b.stop()
    rc, rep = _verify(store, ck)
    assert rc == 0, _problems(rep)
    ours = [x for x in rep["streams"] if x["signed"] == "ingest"]
    assert ours and all(x["status"] == "verified" and x["state"] == "closed" for x in ours), ours
    # the data held; now the messages
    logs = "".join(s.log.read_text(errors="replace") for s in (a, b))
    assert "<unparsable URL>" not in logs, [x for x in logs.splitlines() if "<unparsable URL>" in x][:1]
    _no_tracebacks(a, b)


# -- P6: two instances sharing ONE config folder (a misconfiguration) --------------------------------------------------


def test_p6_two_instances_sharing_one_config_folder_refuse_or_stay_verifiable(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """Two `serve` started from the SAME service.yaml (port 0: each its own port), so they share the folder where
    the service's own signed stream keeps its spool and chain state. Expected: the second refuses to start with a
    clear one-line error naming the folder, OR both run and their own signed stream (every read is an audited
    event) still verifies with --witness-keys. Silent corruption of the service's own stream is a break."""
    store = Backend.make("postgres", tmp_path, request)
    folder = tmp_path / "shared"
    folder.mkdir()
    cfg = write_config(folder, ck["producers"], store=store.url, witness_keys=str(ck["service"]),
                       sign_at_ingest={"checkpoint_every": 1000, "checkpoint_interval": "1s"})
    a = ServiceProcess(cfg)
    b = ServiceProcess(cfg)
    a.start()
    try:
        try:
            b.start(timeout=20)
            b_started = True
        except AssertionError as e:
            b_started = False
            refusal = str(e)
        if not b_started:
            assert "Traceback" not in refusal and "state" in refusal, refusal
        else:
            for k in range(3):
                for svc in (a, b):
                    assert svc.post_json(_req(f"r{k}", 2)).status_code == 200
                    assert svc.get("/v1/events", {"limit": "5"}).status_code == 200  # an audited read
            time.sleep(2)
            b.stop()
        a.stop()
    finally:
        for svc in (a, b):
            if svc.proc is not None and svc.proc.poll() is None:
                svc.kill()
    # a restart of one delivers what the shared spool holds
    with ServiceProcess(cfg) as c:
        time.sleep(1)
        c.stop()
    rc, rep = _verify(store, ck, "--witness-keys", str(ck["service"] / "keyring.json"))
    assert rc == 0, (b_started, _problems(rep)[:10])


# -- P7: source-signed records landing on both instances, out of order, with duplicates ---------------------------


def _split(path: Path) -> list[bytes]:
    """An archive of OTLP/JSON lines as one request per record (its resource and scope kept)."""
    out: list[bytes] = []
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        doc = orjson.loads(line)
        for rl in doc["resourceLogs"]:
            for sl in rl["scopeLogs"]:
                for rec in sl["logRecords"]:
                    out.append(orjson.dumps({"resourceLogs": [{**{k: v for k, v in rl.items() if k != "scopeLogs"},
                                                               "scopeLogs": [{**{k: v for k, v in sl.items()
                                                                                 if k != "logRecords"},
                                                                              "logRecords": [rec]}]}]}))
    return out


def test_p7_source_signed_records_shuffled_across_instances_with_duplicates(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """A stream signed at source (150 records, a checkpoint every 30, ended) is cut into one request per record,
    shuffled, and sent from 8 threads to A or B at random; a third of them is also sent to the OTHER instance at the
    same moment (a retry that raced its first delivery). Expected: every record stored once, the duplicates
    counted as redeliveries, the stream proven and closed, no finding, verify --store passes."""
    w = write_archive(tmp_path / "src.jsonl", ck["producers"], 150, checkpoint_every=30)
    reqs = _split(w.path)
    assert len(reqs) == w.length
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck)
    b = _instance(tmp_path / "b", store, ck)
    rnd = random.Random(11)
    order = list(range(len(reqs)))
    rnd.shuffle(order)
    dups = set(rnd.sample(order, len(order) // 3))
    bad: list[str] = []
    with a, b:
        pair = (a, b)

        def worker(chunk: list[int]) -> None:
            for i in chunk:
                first = rnd.randrange(2)
                if i in dups:
                    barrier = threading.Barrier(2)
                    res: list[requests.Response] = []

                    def go(svc: ServiceProcess, barrier: threading.Barrier = barrier,
                           res: list[requests.Response] = res, i: int = i) -> None:
                        barrier.wait()
                        res.append(svc.post_json(reqs[i]))

                    ts = [threading.Thread(target=go, args=(s,)) for s in pair]
                    for t in ts:
                        t.start()
                    for t in ts:
                        t.join(30)
                else:
                    res = [pair[first].post_json(reqs[i])]
                for r in res:
                    if not _ok(r):
                        bad.append(f"{i}: {r.status_code} {r.text[:200]}")

        chunks = [order[k::8] for k in range(8)]
        ts = [threading.Thread(target=worker, args=(c,)) for c in chunks]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        assert not bad, bad[:5]
        s = _until("the stream proven and closed", lambda: [x for x in b.get("/v1/streams").json()["streams"]
                                                            if x["id"] == w.stream_id and x["state"] == "closed"
                                                            and x["proven"] == w.length])[0]
        assert s["records"] == w.length and s["failed"] == 0, s
        evs = b.events({"stream": w.stream_id})
        assert sorted(e["stream"]["seq"] for e in evs) == list(range(w.length))
        for svc in (a, b):
            assert svc.get("/v1/findings").json()["findings"] == []
        dup_count = sum(svc.get("/healthz").json().get("duplicates", 0) for svc in pair)
        assert dup_count == len(dups), dup_count
        a.stop()
        b.stop()
    _no_tracebacks(a, b)
    rc, rep = _verify(store, ck)
    assert rc == 0, _problems(rep)
    (st,) = [x for x in rep["streams"] if x["stream_id"] == w.stream_id]
    assert st["status"] == "verified" and st["state"] == "closed", st


def test_p7b_a_variant_raced_against_the_genuine_record_on_the_other_instance_is_stored_once(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """For every third seq of a source-signed stream (45 records), the genuine record goes to A and an edited copy
    (same stream and seq, another body, so a wrong digest) to B at the same moment. Expected: exactly one row per
    (stream, seq) — never both."""
    w = write_archive(tmp_path / "src.jsonl", ck["producers"], 45, checkpoint_every=15)
    reqs = _split(w.path)
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck)
    b = _instance(tmp_path / "b", store, ck)
    with a, b:
        for i, data in enumerate(reqs):
            doc = orjson.loads(data)
            rec = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
            if i % 3 or rec.get("eventName") == "audit.checkpoint":
                assert _ok(a.post_json(data))
                continue
            rec["body"] = {"stringValue": f"edited {i}"}
            edited = orjson.dumps(doc)
            barrier = threading.Barrier(2)

            def go(svc: ServiceProcess, body: bytes, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                svc.post_json(body)

            ts = [threading.Thread(target=go, args=(a, data)), threading.Thread(target=go, args=(b, edited))]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
        time.sleep(1)
        evs = b.events({"stream": w.stream_id})
        seqs = [e["stream"]["seq"] for e in evs]
        assert sorted(seqs) == sorted(set(seqs)), "a (stream, seq) stored twice"
        assert sorted(seqs) == list(range(w.length))
        a.stop()
        b.stop()
    _no_tracebacks(a, b)


# -- P8: both instances stopped at once, each busy; SIGTERM while requests are in flight -----------------------------


def test_p8_both_instances_sigtermed_at_once_while_busy_end_the_stream_once(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """Both instances receive big requests (400 records) of the plain producer from 2 threads each and are sent
    SIGTERM at the same moment: both race to end the same open stream while requests are in flight. Expected:
    every acknowledged record stored, nothing after an end checkpoint, every stream closed, one lineage (a stream
    started by a request that came after the first end names the ended one), verify --store passes."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck, every=100)
    b = _instance(tmp_path / "b", store, ck, every=100)
    acked: list[str] = []
    with a, b:
        def side(name: str, svc: ServiceProcess) -> None:
            for j in range(100):
                body = f"{name} {j}"
                try:
                    r = svc.post_json(_req(body, 400))
                except requests.RequestException:
                    return
                if _ok(r):
                    acked.extend(f"{body} {i}" for i in range(400))

        ts = [threading.Thread(target=side, args=(n, s)) for n, s in (("a", a), ("b", b), ("a2", a), ("b2", b))]
        for t in ts:
            t.start()
        time.sleep(1.5)
        assert a.proc is not None and b.proc is not None
        a.proc.send_signal(signal.SIGTERM)
        b.proc.send_signal(signal.SIGTERM)
        a.proc.wait(60)
        b.proc.wait(60)
        for t in ts:
            t.join(60)
    assert acked
    _no_tracebacks(a, b)
    rc, rep = _verify(store, ck)
    assert rc == 0, _problems(rep)[:10]
    ours = [x for x in rep["streams"] if x["signed"] == "ingest"]
    assert ours and all(x["status"] == "verified" and x["state"] == "closed" for x in ours), ours
    assert sum(1 for x in ours if not x["predecessor"]) == 1, ours  # one lineage: a later stream names the ended one
    with _instance(tmp_path / "reader", store, ck) as r:
        stored = _bodies(r.events({"service": PRODUCER}))
    assert set(acked) <= set(stored), f"{len(set(acked) - set(stored))} acknowledged records lost"


# -- P9: an instance with sign_at_ingest off (a rolling config change) ----------------------------------------------


def test_p9_an_instance_not_signing_at_ingest_still_refuses_writes_into_a_service_stream(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """A signs the plain producer at ingest; B shares the store with `sign_at_ingest: false` (a rolling config
    change, or a query-only instance). A client sends B a record naming A's stream at the next seq with the right
    prev digest. Expected: refused — it is a stream the service signs — and A's stream goes on unpoisoned;
    verify --store passes."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck)
    (tmp_path / "b").mkdir()
    cfg = write_config(tmp_path / "b", ck["producers"], store=store.url, witness_keys=str(ck["service"]),
                       sign_at_ingest=False)
    b = ServiceProcess(cfg)
    with a, b:
        assert _ok(a.post_json(_req("genuine", 5)))
        _sealed(a, {f"genuine {i}" for i in range(5)})
        (s,) = _ingest_streams(a)
        nxt, head = _head(b, s["id"])
        r = b.post_json(_forged(s["id"], nxt, head, "forged via the non-signing instance"))
        assert r.status_code == 200, r.text
        r2 = b.post_json(_forged(s["id"], nxt + 1, "00" * 32, "forged later via the non-signing instance"))
        stored = [e for e in a.events({"order": "ingest"}) if (e["body"] or "").startswith("forged")]
        assert orjson.loads(r.content).get("partialSuccess", {}).get("rejectedLogRecords") == "1", (r.text, stored)
        assert orjson.loads(r2.content).get("partialSuccess", {}).get("rejectedLogRecords") == "1", (r2.text, stored)
        assert not stored
        assert _ok(a.post_json(_req("after", 5)))
        _sealed(a, {f"after {i}" for i in range(5)})
        a.stop()
        b.stop()
    rc, rep = _verify(store, ck)
    assert rc == 0, _problems(rep)


def _advisory_holders(store: Backend) -> list[Any]:
    """Backends of the store's database holding an advisory lock (read as the superuser: pg_locks)."""
    return list(store.server.admin(
        "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        f"WHERE l.locktype = 'advisory' AND l.granted AND d.datname = '{store.db.name}'"))


# -- P10: a frozen instance (SIGSTOP: a GC pause, a VM freeze) holding the store's one lock --------------------------


def test_p10_a_frozen_instance_does_not_hang_the_others_ingest(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """A receives big requests and is frozen with SIGSTOP at random moments (so, often inside its write
    transaction, holding the store's one advisory lock; what a lost host — power cut, network partition — looks
    like to PostgreSQL until TCP keepalive gives up, hours later). B's ingest must not hang: it stores or answers
    503 + Retry-After (the collector retries), within 10 s. Then SIGCONT: everything acked stored, verify passes."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck, every=500)
    b = _instance(tmp_path / "b", store, ck, every=500)
    hung: list[str] = []
    acked: list[str] = []
    frozen: list[int] = []
    rnd = random.Random(3)
    with a, b:
        assert a.proc is not None
        for cycle in range(1):
            done = threading.Event()

            def a_side(c: int = cycle, done: threading.Event = done) -> None:
                for j in range(30):
                    if done.is_set():
                        return
                    body = f"a{c} {j}"
                    try:
                        r = a.post_json(_req(body, 2000))
                    except requests.RequestException:
                        return
                    if _ok(r):
                        acked.extend(f"{body} {i}" for i in range(2000))

            t = threading.Thread(target=a_side)
            t.start()
            time.sleep(0.3 + rnd.random() * 0.3)
            holding = False
            deadline = time.monotonic() + 20
            while not holding and time.monotonic() < deadline:
                if _advisory_holders(store):
                    a.proc.send_signal(signal.SIGSTOP)
                    time.sleep(0.05)
                    holding = bool(_advisory_holders(store))
                    if not holding:
                        a.proc.send_signal(signal.SIGCONT)
            assert holding, "never caught A inside its write transaction"
            frozen.append(cycle)
            t0 = time.monotonic()
            try:
                r = requests.post(b.url + "/v1/logs", data=_req(f"b{cycle}", 5), timeout=10,
                                  headers={"Content-Type": "application/json"})
                if _ok(r):
                    acked.extend(f"b{cycle} {i}" for i in range(5))
                else:
                    assert r.status_code == 503 and "Retry-After" in r.headers, (r.status_code, r.text)
            except requests.Timeout:
                state = store.server.admin(
                    "SELECT a.state, a.wait_event_type, a.wait_event, now() - a.xact_start FROM pg_stat_activity a "
                    "JOIN pg_locks l ON l.pid = a.pid WHERE l.locktype = 'advisory' AND l.granted")
                hung.append(f"B did not answer within 10 s while A was frozen holding the store's lock "
                            f"(A's session: {state!r}); the whole cluster's ingest waits on one frozen instance")
            finally:
                waited = time.monotonic() - t0
                a.proc.send_signal(signal.SIGCONT)
            done.set()
            t.join(60)
            print(f"cycle {cycle}: B answered after {waited:.1f}s")
        assert not hung, hung
        _sealed(b, set(acked), timeout=60)
        a.stop()
        b.stop()
    rc, rep = _verify(store, ck)
    assert rc == 0, _problems(rep)


# -- P11: a client writing into an instance's own signed stream (its audited reads) -----------------------------


def _own_stream(reader: ServiceProcess, marker: str) -> str:
    """The id of the stream holding the audited read `GET /v1/events?limit=1&q=<marker>` (read through `reader`)."""
    want = f"GET /v1/events?limit=1&q={marker}"

    def find() -> list[str]:
        return [e["stream"]["id"] for e in reader.events({"action": "data_access.logs.queried"})
                if e["attributes"].get("db.query.text") == want]
    return str(_until(f"the audited read {marker}", find, timeout=30)[0])


def test_p11_client_cannot_write_into_an_instances_own_audit_stream(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """Each instance signs its own stream of audited reads (`otel-audit-service`, the service's key). A client with
    an ingest token reads B's own stream THROUGH A (A's reads are audited in A's stream, so B's does not move),
    forges B's next record (right seq, right prev digest, right digest) and sends it to A; then makes an audited read
    on B, whose genuine event needs that seq. The same against A's own stream sent to A itself. Expected: both
    forged records refused (they name streams the service signs), the genuine audit events stored, the service's
    own streams verify with --witness-keys. Observed: both accepted (`{}`), stored as the stream's next record, the
    genuine audit event loses its seq to it, and verify --store fails ("chain broken"). Through the other instance
    it is deterministic: reading B's stream via A does not move it."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck)
    b = _instance(tmp_path / "b", store, ck)
    verdict: dict[str, str] = {}
    with a, b:
        assert b.get("/v1/events", {"limit": "1", "q": "zzmarkb"}).status_code == 200
        assert a.get("/v1/events", {"limit": "1", "q": "zzmarka"}).status_code == 200
        sid_b = _own_stream(a, "zzmarkb")
        sid_a = _own_stream(b, "zzmarka")
        assert sid_a != sid_b
        time.sleep(1.0)  # both streams at rest: every audited read delivered
        for name, target, via, reader in (("B's stream sent to A", sid_b, a, a), ("A's stream sent to A", sid_a, a, b)):
            nxt, head = _head(reader, target)
            r = via.post_json(_forged(target, nxt, head, f"forged audit event {name}", service="otel-audit-service"))
            doc = orjson.loads(r.content)
            verdict[name] = ("refused" if doc.get("partialSuccess", {}).get("rejectedLogRecords") == "1"
                             else f"accepted: {r.status_code} {r.text[:100]}")
            owner = b if target == sid_b else a
            assert owner.get("/v1/events", {"limit": "2"}).status_code == 200  # the owner's next genuine event
            time.sleep(1.0)
        stored = [e["id"] for e in a.events({"q": "forged"}) if (e["body"] or "").startswith("forged")]
        a.stop()
        b.stop()
    rc, rep = _verify(store, ck, "--witness-keys", str(ck["service"] / "keyring.json"))
    print("P11", verdict, stored, *_problems(rep)[:6], sep="\n  ")
    assert verdict == {k: "refused" for k in verdict} and not stored and rc == 0, (
        verdict, stored, _problems(rep)[:4])


# -- P12: both instances killed, then started at the same moment ------------------------------------------------


def test_p12_both_killed_then_restarted_together_seal_the_crashed_tail_once(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """Both instances chain the plain producer (and a second one), are killed with SIGKILL within the checkpoint
    interval (unsealed tails), then started at the same moment: each seals the unsealed tail at start. Expected:
    the tails sealed once (no fork, no seq twice), then both continue the same streams; verify --store passes."""
    store = Backend.make("postgres", tmp_path, request)
    pa, pb = free_port(), free_port()
    a = _instance(tmp_path / "a", store, ck, interval="30s", port=pa)
    b = _instance(tmp_path / "b", store, ck, interval="30s", port=pb)
    want: set[str] = set()
    with a, b:
        for k in range(2):
            for name, svc in (("a", a), ("b", b)):
                for inst in ("p1", "p2"):
                    assert _ok(svc.post_json(_req(f"{name}{k}{inst}", 10, instance=inst)))
                    want |= {f"{name}{k}{inst} {i}" for i in range(10)}
        a.kill()
        b.kill()
        ts = [threading.Thread(target=s.start) for s in (a, b)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        for name, svc in (("a", a), ("b", b)):
            for inst in ("p1", "p2"):
                assert _ok(svc.post_json(_req(f"{name}-after{inst}", 5, instance=inst)))
                want |= {f"{name}-after{inst} {i}" for i in range(5)}
        streams = _ingest_streams(a)
        assert len(streams) == 2, streams  # one per producer: continued, not restarted
        evs = a.events({"service": PRODUCER})
        assert sorted(_bodies(evs)) == sorted(want)
        for sid in (x["id"] for x in streams):
            seqs = sorted(e["stream"]["seq"] for e in evs if e["stream"]["id"] == sid)
            assert seqs == sorted(set(seqs)) == list(range(len(seqs))), sid
        assert a.get("/v1/findings").json()["findings"] == []
        a.stop()
        b.stop()
    _no_tracebacks(a, b)
    rc, rep = _verify(store, ck)
    assert rc == 0, _problems(rep)


# -- P13: two instances with DIFFERENT witness keys (a misconfiguration) -----------------------------------------


def test_p13_instances_with_different_service_keys_refuse_or_stay_verifiable(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """A signs with the service key, B (misconfigured) with another key of the same name; both ingest the same
    plain producer. Expected: a clear refusal / error, or a trail that verifies with both public keyrings given;
    B checkpointing A's stream with a key its start checkpoint does not know, silently, is a break."""
    other = tmp_path / "other-service-key"
    keys.generate(other, "service")
    both2 = tmp_path / "both2"
    both2.mkdir()
    shutil.copy(ck["producers"] / "keyring.json", both2 / "producers.json")
    shutil.copy(ck["service"] / "keyring.json", both2 / "service.json")
    shutil.copy(other / "keyring.json", both2 / "service2.json")
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck)
    (tmp_path / "b").mkdir()
    cfg = write_config(tmp_path / "b", ck["producers"], store=store.url, witness_keys=str(other),
                       sign_at_ingest={"checkpoint_every": 1000, "checkpoint_interval": "1s"})
    b = ServiceProcess(cfg)
    with a, b:
        assert _ok(a.post_json(_req("a", 10)))
        rb = b.post_json(_req("b", 10))
        time.sleep(1.5)
        streams = _ingest_streams(a)
        a.stop()
        b.stop()
    r = subprocess.run([CLI, "verify", "--keys", str(both2), "--store", store.verify_url, "--allow-open",
                        "--format", "json"], capture_output=True, text=True, timeout=120)
    rep = orjson.loads(r.stdout)
    print("P13", rb.status_code, rb.text[:200], streams, _problems(rep)[:5], sep="\n  ")
    assert r.returncode == 0 or rb.status_code != 200, _problems(rep)[:5]


# -- P14: verify --state across a takeover -------------------------------------------------------------------------


def test_p14_verify_state_survives_a_takeover_by_the_other_instance(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """verify --store --state after A chained and sealed the producer; A is killed; B seals and continues the same
    stream; verify --state again. Expected: both runs pass (the second sees a longer, consistent history)."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck)
    b = _instance(tmp_path / "b", store, ck)
    state = tmp_path / "audit-state.json"
    with a, b:
        assert _ok(a.post_json(_req("one", 30)))
        _sealed(b, {f"one {i}" for i in range(30)})
        rc, rep = _verify(store, ck, "--state", str(state))
        assert rc == 0, _problems(rep)
        assert _ok(a.post_json(_req("two", 30)))
        a.kill()
        assert _ok(b.post_json(_req("three", 30)))
        _sealed(b, {f"{w} {i}" for w in ("one", "two", "three") for i in range(30)})
        rc, rep = _verify(store, ck, "--state", str(state))
        assert rc == 0, _problems(rep)
        b.stop()
    rc, rep = _verify(store, ck, "--state", str(state))
    assert rc == 0, _problems(rep)


# -- P15: both instances creating the same new month partitions at once --------------------------------------------


def _req_at(body: str, n: int, t_ns: int, instance: str) -> bytes:
    return orjson.dumps({"resourceLogs": [{
        "resource": {"attributes": [_kv("service.name", PRODUCER), _kv("service.instance.id", instance)]},
        "scopeLogs": [{"scope": {"name": "attacker"}, "logRecords": [
            {"timeUnixNano": str(t_ns + i), "severityNumber": 9, "body": {"stringValue": f"{body} {i}"}}
            for i in range(n)]}]}]})


def test_p15_concurrent_first_records_of_new_months_on_both_instances(
        tmp_path: Path, request: pytest.FixtureRequest, ck: dict[str, Path]) -> None:
    """12 threads on both instances send, at the same moment, the first records of months no partition exists for
    yet (next month, the month after, last year's months): the partitions are created inside the ingest
    transactions of two instances at once. Expected: every request 200 `{}`, every record stored once, verify
    passes."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, ck)
    b = _instance(tmp_path / "b", store, ck)
    day = 86400 * 10**9
    now = time.time_ns()
    times = [now + 32 * day, now + 50 * day, now - 300 * day, now - 200 * day, now - 100 * day, now + 40 * day]
    bad: list[str] = []
    want: set[str] = set()
    with a, b:
        barrier = threading.Barrier(12)

        def go(k: int, svc: ServiceProcess) -> None:
            body = f"month {k}"
            data = _req_at(body, 20, times[k % len(times)], instance=f"m{k % 3}")
            barrier.wait()
            r = svc.post_json(data)
            if _ok(r):
                want.update(f"{body} {i}" for i in range(20))
            else:
                bad.append(f"{r.status_code} {r.text[:200]}")

        ts = [threading.Thread(target=go, args=(k, a if k % 2 else b)) for k in range(12)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert not bad, bad[:4]
        evs = b.events({"service": PRODUCER})
        assert sorted(x for x in _bodies(evs) if x.startswith("month")) == sorted(want)
        a.stop()
        b.stop()
    _no_tracebacks(a, b)
    rc, rep = _verify(store, ck)
    assert rc == 0, _problems(rep)
