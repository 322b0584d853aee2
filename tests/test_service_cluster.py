"""Several service instances on one PostgreSQL (docs/service.md §7): every write transaction takes the store's
advisory lock, so a stream is written by one instance at a time, and each reads the stream's state from the store;
an instance that dies (SIGKILL) holds nothing the others wait for, and a living one takes over its streams.

Real processes throughout: two `otel-audit serve` on one PostgreSQL server of the session, the stock collector
running `collector-config/gateway.yaml` as shipped (its load-balancing exporter over both instances' OTLP/gRPC,
its persistent queue), producers signing at source, a plain OpenTelemetry SDK app whose records the service
signs at ingest, and `otel-audit verify --store` at the end."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from collector import CONFIG_DIR, Collector, free_port
from service_support import CLI, Backend, ServiceProcess, write_config
from test_collector_shipped_e2e import GATEWAY_ENDPOINTS
from test_service_collector import produce
from test_service_sign_at_ingest import PRODUCER, _forged, _plain_app, _request

from otel_audit import keys

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("cluster-keys")
    out = {"producers": base / "producers", "service": base / "service", "both": base / "both"}
    keys.generate(out["producers"], "gateway")
    keys.generate(out["service"], "service")
    out["both"].mkdir()
    shutil.copy(out["producers"] / "keyring.json", out["both"] / "producers.json")
    shutil.copy(out["service"] / "keyring.json", out["both"] / "service.json")
    return out


def _instance(folder: Path, store: Backend, cluster_keys: dict[str, Path], interval: str = "1s") -> ServiceProcess:
    """One instance: a folder of its own (its own stream's state and spool), fixed ports (a restart keeps them),
    the shared store, signing at ingest with the service's key."""
    folder.mkdir(parents=True, exist_ok=True)
    http, grpc = free_port(), free_port()
    cfg = write_config(folder, cluster_keys["producers"], store=store.url, witness_keys=str(cluster_keys["service"]),
                       grpc={"endpoint": f"127.0.0.1:{grpc}"},
                       sign_at_ingest={"checkpoint_every": 1000, "checkpoint_interval": interval})
    cfg.write_text(cfg.read_text().replace("127.0.0.1:0", f"127.0.0.1:{http}"))
    svc = ServiceProcess(cfg)
    svc.grpc = f"127.0.0.1:{grpc}"  # type: ignore[attr-defined]
    return svc


def _ingest_streams(svc: ServiceProcess) -> list[dict[str, Any]]:
    return [s for s in svc.get("/v1/streams").json()["streams"] if s["signed"] == "at ingest"]


def _until(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except requests.RequestException:
            last = None
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout}s (last seen {last!r})")


def _verify(store: Backend, keyring: Path) -> dict[str, Any]:
    """verify --store, --allow-open for the instances' OWN streams only (their end checkpoints wait in their spools
    for the next start); every other stream is checked closed by the callers."""
    r = subprocess.run([CLI, "verify", "--keys", str(keyring), "--store", store.verify_url, "--allow-open",
                        "--format", "json"], capture_output=True, text=True, timeout=300)
    rep = orjson.loads(r.stdout)
    assert r.returncode == 0, rep["problems"] + [p for s in rep["streams"] for p in s["problems"]]
    return dict(rep)


def test_a_living_instance_takes_over_the_ingest_stream_a_dead_one_left_open(
        tmp_path: Path, request: pytest.FixtureRequest, cluster_keys: dict[str, Path]) -> None:
    """A chains a plain producer's records and dies (SIGKILL) before its clock seals them: B, which never saw that
    producer, seals them with a checkpoint of its own, continues the SAME stream with the producer's next records,
    and refuses a client's record naming that stream; one stream for the producer from start to end."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, cluster_keys, interval="2s")
    b = _instance(tmp_path / "b", store, cluster_keys, interval="2s")
    with a, b:
        r = a.post_json(_request("before", 20))
        assert r.status_code == 200 and r.json() == {}, r.text
        a.kill()  # well inside the 2 s interval: the 20 records are stored, chained, not yet sealed
        (s,) = _ingest_streams(b)
        assert s["records"] == 21 and s["proven"] == 1, s  # the start checkpoint, then 20 unsealed records
        sealed = _until("B seals the dead instance's records",
                        lambda: [x for x in _ingest_streams(b) if x["proven"] == x["records"] == 22])
        assert sealed[0]["id"] == s["id"]
        r = b.post_json(_request("after", 20))
        assert r.status_code == 200 and r.json() == {}, r.text
        (s2,) = _ingest_streams(b)  # not a second stream: B continued A's
        assert s2["id"] == s["id"] and s2["records"] == 42, s2
        forged = _forged(s["id"], 42, "00" * 32, "forged", claim=False)
        r = b.post_json(forged)
        assert r.status_code == 200 and r.json()["partialSuccess"]["rejectedLogRecords"] == "1", r.text
        assert "which this service signs at ingest" in r.text, r.text
        a.start()  # back: it continues too, as B did
        r = a.post_json(_request("again", 5))
        assert r.status_code == 200 and r.json() == {}, r.text
        (s3,) = _ingest_streams(a)
        assert s3["id"] == s["id"] and s3["records"] == 47, s3
        b.stop()  # ends the producer's stream (its end checkpoint); A, stopping after, has nothing left to end
        a.stop()
    rep = _verify(store, cluster_keys["both"])
    (ours,) = [x for x in rep["streams"] if x["signed"] == "ingest"]
    assert ours["status"] == "verified" and ours["state"] == "closed" and not ours["predecessor"], ours
    bodies = [e["body"] for e in _events(store, cluster_keys, {"service": PRODUCER})
              if e["event"] != "audit.checkpoint"]
    want = [f"{w} {i}" for w, n in (("before", 20), ("after", 20), ("again", 5)) for i in range(n)]
    assert sorted(bodies) == sorted(want)  # each once, and not the forged one


def _events(store: Backend, cluster_keys: dict[str, Path], params: dict[str, str]) -> list[dict[str, Any]]:
    """The events of a query, from a third instance started for reading."""
    with _instance(store.folder / "reader", store, cluster_keys) as r:
        return r.events(params)


def test_two_instances_behind_the_gateway_one_killed_every_stream_verifies_complete(
        tmp_path: Path, request: pytest.FixtureRequest, cluster_keys: dict[str, Path]) -> None:
    """Four signing producers and a plain app -> collector-config/gateway.yaml (as shipped) -> instances A and B
    on one PostgreSQL. A is killed with SIGKILL mid-ingest and comes back 3 s later (as an orchestrator restarts
    it); the gateway's persistent queue holds A's share meanwhile. Every producer stream is then stored whole and
    proven, the plain app's records are chained in ONE stream across both instances, and verify --store passes."""
    store = Backend.make("postgres", tmp_path, request)
    a = _instance(tmp_path / "a", store, cluster_keys)
    b = _instance(tmp_path / "b", store, cluster_keys)
    gateway = Collector(CONFIG_DIR / "gateway.yaml",
                        env={"OTEL_AUDIT_BACKENDS": f"[{a.grpc}, {b.grpc}]",  # type: ignore[attr-defined]
                             "OTEL_AUDIT_BACKENDS_INSECURE": "true", "OTEL_AUDIT_GATEWAY_DIR": str(tmp_path / "gw")},
                        endpoints=GATEWAY_ENDPOINTS, workdir=tmp_path / "gateway-run")
    n_signed, n_plain = 600, 800
    with a, b, gateway:
        url = gateway.endpoint("OTEL_AUDIT_GATEWAY_HTTP_ENDPOINT")
        results: dict[int, tuple[str, int]] = {}

        def run(k: int) -> None:
            results[k] = produce(url, cluster_keys["producers"], n_signed, service=f"signer-{k}", pause_every=20)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        app = _plain_app(tmp_path, url, 0, n_plain, pause_every=10)

        def stored() -> int:
            return sum(s["records"] for s in b.get("/v1/streams").json()["streams"])

        _until("ingest under way", lambda: stored() > 300)
        a.kill()
        time.sleep(3)
        a.start()
        for t in threads:
            t.join(240)
        out, _ = app.communicate(timeout=240)
        assert app.returncode == 0 and "sent" in out, out
        assert len(results) == 4
        want = dict(results.values())

        def complete() -> list[dict[str, Any]]:
            got = {s["id"]: s for s in b.get("/v1/streams").json()["streams"]}
            plain = [s for s in got.values() if s["service"] == PRODUCER]
            done = all(sid in got and got[sid]["proven"] == n and got[sid]["state"] == "closed"
                       for sid, n in want.items())
            sealed = len(plain) == 1 and plain[0]["proven"] == plain[0]["records"]
            bodies = {e["body"] for e in b.events({"service": PRODUCER}) if e["event"] != "audit.checkpoint"}
            return list(got.values()) if done and sealed and len(bodies) == n_plain else []

        streams = _until("every stream stored whole and proven", complete, timeout=180)
        counts = [svc.get("/healthz").json() for svc in (a, b)]
        plain = [s for s in streams if s["service"] == PRODUCER]
        assert len(plain) == 1 and plain[0]["failed"] == 0, plain  # one chain across both instances
        b.stop()
        a.stop()
    assert counts[1]["signed_at_ingest"] > 0, counts  # B chained some of the plain app's records...
    a_log = (tmp_path / "a" / "serve.log").read_text()
    assert a_log.count("listening on") == 2, a_log[-2000:]  # ...and A ran, died, and came back
    rep = _verify(store, cluster_keys["both"])
    by = {s["stream_id"]: s for s in rep["streams"]}
    for sid in want:
        assert by[sid]["status"] == "verified" and by[sid]["state"] == "closed", by[sid]
    (ours,) = [s for s in rep["streams"] if s["signed"] == "ingest"]
    assert ours["status"] == "verified" and ours["state"] == "closed", ours
    bodies = [e["body"] for e in _events(store, cluster_keys, {"service": PRODUCER})
              if e["event"] != "audit.checkpoint"]
    assert sorted(bodies) == sorted(f"login {i}" for i in range(n_plain))  # every one, once


def test_an_instance_stuck_holding_the_write_lock_gets_the_others_a_503_not_a_hang(
        tmp_path: Path, request: pytest.FixtureRequest, cluster_keys: dict[str, Path]) -> None:
    """Another session holds the store's write lock and does nothing (an instance frozen mid-transaction): a
    request to a working instance is answered 503 with Retry-After once LOCK_WAIT passed, stores nothing, and
    succeeds as soon as the lock is free; the service never hangs on it."""
    import psycopg

    from otel_audit.service.store.postgres import LOCK_WAIT, WRITER_LOCK

    store = Backend.make("postgres", tmp_path, request)
    b = _instance(tmp_path / "b", store, cluster_keys)
    with b, psycopg.connect(store.db.service_url) as stuck:
        stuck.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK,))  # in a transaction, never ended
        t0 = time.monotonic()
        r = b.post_json(_request("stuck", 3))
        waited = time.monotonic() - t0
        assert r.status_code == 503 and r.headers.get("Retry-After"), r.text
        assert float(LOCK_WAIT.removesuffix("s")) - 1 <= waited < 60, waited
        assert "retry" in r.text, r.text
        stuck.rollback()  # the lock is free
        r = b.post_json(_request("stuck", 3))
        assert r.status_code == 200 and r.json() == {}, r.text
        bodies = sorted(e["body"] for e in b.events({"service": PRODUCER}) if e["event"] != "audit.checkpoint")
        assert bodies == ["stuck 0", "stuck 1", "stuck 2"]  # once: the refused attempt stored nothing
    assert "another service instance holds the store's write lock" in (tmp_path / "b" / "serve.log").read_text()
