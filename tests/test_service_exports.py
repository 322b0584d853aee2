"""Asynchronous exports as a real process: POST /v1/exports, its status and file, and `otel-audit verify` on the
file (a bundle of proven events, or whole streams as OTLP lines); the tamper cases name their line.

The corpus is `otel-audit demo`'s signed archive, as in test_service_api.py; every bundle is checked against
GET /v1/events for the same filter."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from service_support import CLI, ServiceProcess, post_archive, write_config

from otel_audit import keys


def _token(name: str, *scopes: str) -> tuple[str, dict[str, Any]]:
    import yaml

    out = subprocess.run([CLI, "token", "--name", name, *[x for s in scopes for x in ("--scope", s)]],
                         check=True, capture_output=True, text=True).stdout.splitlines()
    (entry,) = yaml.safe_load(out[3].strip().lstrip("- ").join(["[", "]"]))
    return out[1].strip(), entry


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("exp-demo") / "demo"
    subprocess.run([CLI, "demo", "--out", str(d)], check=True, capture_output=True)
    return d


class Svc:
    def __init__(self, proc: ServiceProcess, folder: Path, tokens: dict[str, str], witness: Path) -> None:
        self.proc, self.folder, self.tokens, self.witness = proc, folder, tokens, witness

    def h(self, who: str = "exporter") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def post(self, body: Any, who: str = "exporter", raw: bytes | None = None) -> requests.Response:
        data = raw if raw is not None else orjson.dumps(body)
        return requests.post(self.proc.url + "/v1/exports", data=data, timeout=30,
                             headers={"Content-Type": "application/json", **self.h(who)})

    def get(self, path: str, who: str = "exporter", **kw: Any) -> requests.Response:
        return requests.get(self.proc.url + path, headers=self.h(who), timeout=60, **kw)

    def wait(self, eid: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.get(f"/v1/exports/{eid}").json()
            if st["status"] != "running" or time.monotonic() > deadline:
                return st
            time.sleep(0.1)

    def export(self, body: Any, into: Path) -> tuple[dict[str, Any], Path]:
        r = self.post(body)
        assert r.status_code == 202, r.text
        got = r.json()
        assert got["status"] == "running" and got["url"] == f"/v1/exports/{got['id']}"
        st = self.wait(got["id"])
        assert st["status"] == "done", st
        f = self.get(f"/v1/exports/{got['id']}/file")
        assert f.status_code == 200
        into.write_bytes(f.content)
        assert hashlib.sha256(f.content).hexdigest() == st["sha256"] and len(f.content) == st["size"]
        return st, into

    def events(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        return self.proc.events(params, **self.h("admin"))


def _start(folder: Path, demo: Path, **limits: Any) -> Svc:
    witness = folder / "service-keys"
    keys.generate(witness, "service")
    tokens, entries = {}, []
    for name, scopes in (("reader", ("audit:read",)), ("exporter", ("audit:export",)), ("admin", ("audit:admin",)),
                         ("collector", ("ingest",))):
        t, e = _token(name, *scopes)
        tokens[name] = t
        entries.append(e)
    extra: dict[str, Any] = {"witness_keys": str(witness), "tokens": entries}
    if limits:
        extra["limits"] = limits
    proc = ServiceProcess(write_config(folder, demo / "keys", **extra)).start()
    svc = Svc(proc, folder, tokens, witness)
    orig = proc.post_json
    proc.post_json = lambda body, **h: orig(body, **{**svc.h("collector"), **h})  # type: ignore[method-assign]
    post_archive(proc, demo / "archive" / "audit.jsonl")
    return svc


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, demo: Path) -> Any:
    s = _start(tmp_path_factory.mktemp("exp-store"), demo)
    yield s
    s.proc.stop()


def _verify(svc: Svc, demo: Path, path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    keydir = svc.folder / "verify-keys"
    if not keydir.exists():
        keydir.mkdir()
        (keydir / "producer.json").write_bytes((demo / "keys" / "keyring.json").read_bytes())
        (keydir / "service.json").write_bytes((svc.witness / "keyring.json").read_bytes())
    return subprocess.run([CLI, "verify", "--keys", str(keydir), *extra, str(path)], capture_output=True, text=True,
                          timeout=300)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


# -- the bundle ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(svc: Svc, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    return svc.export({"outcome": "failure"}, tmp_path_factory.mktemp("exp-bundle") / "failures.ndjson")


def test_a_bundle_holds_the_events_of_the_same_query_and_verifies(svc: Svc, demo: Path,
                                                                  bundle: tuple[dict[str, Any], Path]) -> None:
    st, path = bundle
    want = svc.events({"outcome": "failure"})
    assert want
    head, *rows = [orjson.loads(x) for x in _lines(path)]
    assert head == {"otel_audit_export": {"version": 1, "query": {"outcome": ["failure"]}, "created": st["created"],
                                          "events": len(want)}}
    assert [r["id"] for r in rows] == [e["id"] for e in want]
    assert st["events"] == st["proven"] == len(want)
    for r, e in zip(rows, want, strict=True):
        (rl,) = r["otlp"]["resourceLogs"]
        (rec,) = rl["scopeLogs"][0]["logRecords"]
        assert rec["eventName"] == e["event"] and r["status"] == e["status"] == "proven"
        assert r["proof"].startswith("c2sp.org/tlog-proof@v1\n") and "\u2014 service " in r["proof"]
    v = _verify(svc, demo, path, "--witness-keys", str(svc.witness / "keyring.json"))
    assert v.returncode == 0, v.stdout + v.stderr
    assert f"{len(want)} event(s): {len(want)} proven, 0 not proven" in v.stdout
    assert "witnessed by: service" in v.stdout
    assert "not that the query's result is complete" in v.stdout
    j = _verify(svc, demo, path, "--format", "json")
    assert j.returncode == 0 and orjson.loads(j.stdout)["proven"] == len(want)


def _edit_event(rows: list[bytes]) -> tuple[list[bytes], int]:
    doc = orjson.loads(rows[2])
    rec = doc["otlp"]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    for a in rec["attributes"]:
        if a["key"] == "audit.outcome":
            a["value"] = {"stringValue": "success"}
    rows[2] = orjson.dumps(doc)
    return rows, 3


def _swap_proofs(rows: list[bytes]) -> tuple[list[bytes], int]:
    a, b = orjson.loads(rows[1]), orjson.loads(rows[2])
    a["proof"], b["proof"] = b["proof"], a["proof"]
    rows[1], rows[2] = orjson.dumps(a), orjson.dumps(b)
    return rows, 2


def _drop(rows: list[bytes]) -> tuple[list[bytes], int]:
    del rows[3]
    return rows, 1


def _duplicate(rows: list[bytes]) -> tuple[list[bytes], int]:
    rows.insert(4, rows[2])
    return rows, 5


def _header_lies(rows: list[bytes]) -> tuple[list[bytes], int]:
    doc = orjson.loads(rows[0])
    doc["otel_audit_export"]["events"] += 1
    rows[0] = orjson.dumps(doc)
    return rows, 1


def _proof_edited(rows: list[bytes]) -> tuple[list[bytes], int]:
    doc = orjson.loads(rows[1])
    head, _, rest = doc["proof"].partition("\nindex ")
    doc["proof"] = head + "\nindex " + str(int(rest.split("\n", 1)[0]) + 1) + "\n" + rest.split("\n", 1)[1]
    rows[1] = orjson.dumps(doc)
    return rows, 2


def _proof_removed(rows: list[bytes]) -> tuple[list[bytes], int]:
    doc = orjson.loads(rows[4])
    doc["proof"] = None
    rows[4] = orjson.dumps(doc)
    return rows, 5


@pytest.mark.parametrize("tamper", [_edit_event, _swap_proofs, _drop, _duplicate, _header_lies, _proof_edited,
                                    _proof_removed],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_tampered_bundle_fails_naming_the_line(svc: Svc, demo: Path, bundle: tuple[dict[str, Any], Path],
                                                 tmp_path: Path, tamper: Any) -> None:
    rows, line = tamper(_lines(bundle[1]))
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(b"\n".join(rows) + b"\n")
    v = _verify(svc, demo, bad)
    assert v.returncode == 1, v.stdout + v.stderr
    assert f"line {line}" in v.stdout, v.stdout
    assert "NOT every event is proven" in v.stdout


def test_a_streams_newest_checkpoint_proves_itself(svc: Svc, demo: Path, tmp_path: Path) -> None:
    """Every checkpoint of the producer's stream: each but the last has a proof in the next one's tree; the last
    (no later checkpoint) is proven by its own signed note, and the service's cosignature of it."""
    sid = next(e["stream"]["id"] for e in svc.events({"outcome": "failure"}))
    st, path = svc.export({"action": "audit.checkpoint", "stream": sid}, tmp_path / "cps.ndjson")
    rows = [orjson.loads(x) for x in _lines(path)[1:]]
    assert len(rows) > 1 and rows[0]["proof"] is None and rows[0]["checkpoint_cosignature"]
    assert all(r["proof"] for r in rows[1:]) and st["proven"] == len(rows)
    v = _verify(svc, demo, path, "--witness-keys", str(svc.witness / "keyring.json"))
    assert v.returncode == 0, v.stdout + v.stderr
    doc = rows[0]
    rec = doc["otlp"]["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    rec["body"] = {"stringValue": rec["body"]["stringValue"].replace("\n", "\n\n", 1)}
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(b"\n".join([_lines(path)[0], orjson.dumps(doc), *_lines(path)[2:]]) + b"\n")
    v = _verify(svc, demo, bad)
    assert v.returncode == 1 and "line 2" in v.stdout, v.stdout


def test_the_openapi_body_lists_the_filters(svc: Svc) -> None:
    from otel_audit.service import exports

    doc = requests.get(svc.proc.url + "/v1/openapi.json", timeout=10).json()
    body = doc["paths"]["/v1/exports"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == set(exports.FILTERS) | {"format"}


def test_a_bundle_is_verified_on_its_own(svc: Svc, demo: Path, bundle: tuple[dict[str, Any], Path]) -> None:
    r = subprocess.run([CLI, "verify", "--keys", str(demo / "keys"), str(bundle[1]),
                        str(demo / "archive" / "audit.jsonl")], capture_output=True, text=True)
    assert r.returncode == 2 and "export bundle" in r.stderr
    folder = bundle[1].parent / "in-a-folder"
    folder.mkdir(exist_ok=True)
    (folder / "b.ndjson").write_bytes(bundle[1].read_bytes())
    (folder / "audit.jsonl").write_bytes((demo / "archive" / "audit.jsonl").read_bytes())
    r = subprocess.run([CLI, "verify", "--keys", str(demo / "keys"), str(folder)], capture_output=True, text=True)
    assert "an audit service export bundle (verify it by itself" in r.stdout, r.stdout


# -- format otlp: whole streams ---------------------------------------------------------------------------------


def test_format_otlp_is_whole_streams_the_plain_verifier_proves(svc: Svc, demo: Path, tmp_path: Path) -> None:
    want = svc.events({"outcome": "failure"})
    st, path = svc.export({"outcome": "failure", "format": "otlp"}, tmp_path / "streams.jsonl")
    streams = {e["stream"]["id"] for e in want}
    assert st["events"] == len(want) and st["streams"] == len(streams)
    everything = [e for e in svc.events({"order": "ingest"}) if e["stream"] and e["stream"]["id"] in streams]
    assert st["records"] == len(everything) == len(_lines(path))
    v = subprocess.run([CLI, "verify", "--keys", str(demo / "keys"), str(path)], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr


# -- the API: scopes, bodies, limits ----------------------------------------------------------------------------


def test_exports_need_the_export_scope(svc: Svc) -> None:
    assert requests.post(svc.proc.url + "/v1/exports", json={}, timeout=10).status_code == 401
    assert svc.post({}, who="reader").status_code == 403
    assert svc.get("/v1/exports", who="reader").status_code == 403
    r = svc.post({"actor": "nobody"})
    assert r.status_code == 202
    eid = r.json()["id"]
    assert svc.get(f"/v1/exports/{eid}", who="reader").status_code == 403
    assert svc.get(f"/v1/exports/{eid}/file", who="reader").status_code == 403
    assert svc.wait(eid)["status"] == "done"
    assert any(e["id"] == eid for e in svc.get("/v1/exports").json()["exports"])
    assert svc.get(f"/v1/exports/{eid}", who="admin").status_code == 200
    assert svc.get("/v1/exports/nope").status_code == 404


@pytest.mark.parametrize("body, raw, names", [
    ({"format": "csv"}, None, "format"), ({"bogus": "1"}, None, "bogus: unknown member"),
    ({"actor": 5}, None, "actor"), ({"from": "yesterday"}, None, "from"), ({"limit": "5"}, None, "limit"),
    ({"cursor": "x"}, None, "cursor"), ({"status": "lost"}, None, "status"), ({"actor": []}, None, "actor"),
    ({"client.address": "999.1.1.1"}, None, "client.address"), ({"filter": "user.id eq"}, None, "filter"),
    ([], None, "the body"), (None, b"{not json", "the body"), (None, b'{"actor": "a", "actor": "b"}', "the body"),
])
def test_bad_bodies_get_a_400_naming_the_member(svc: Svc, body: Any, raw: bytes | None, names: str) -> None:
    r = svc.post(body, raw=raw)
    assert r.status_code == 400, r.text
    assert names in r.json()["error"]["message"], r.text


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory, demo: Path) -> Any:
    """A service whose exports read one event at a time, and run one at once."""
    s = _start(tmp_path_factory.mktemp("exp-slow"), demo, max_exports=1, export_page=1)
    yield s
    if s.proc.proc is not None and s.proc.proc.poll() is None:
        s.proc.stop()


def test_beyond_the_concurrency_limit_429(slow: Svc) -> None:
    first = slow.post({})
    assert first.status_code == 202
    second = slow.post({"outcome": "failure"})
    assert second.status_code == 429 and "Retry-After" in second.headers
    assert "limits.max_exports" in second.json()["error"]["message"]
    assert slow.wait(first.json()["id"])["status"] == "done"
    assert slow.post({"outcome": "failure"}).status_code == 202


def test_a_client_that_disconnects_mid_download(svc: Svc, tmp_path: Path) -> None:
    st, path = svc.export({}, tmp_path / "all.ndjson")
    assert st["size"] > 1 << 20
    for _ in range(3):
        r = svc.get(f"/v1/exports/{st['id']}/file", stream=True)
        assert r.status_code == 200
        next(r.iter_content(65536))
        r.close()  # the connection is dropped with most of the file unread
    assert svc.get("/healthz").status_code == 200
    again = svc.get(f"/v1/exports/{st['id']}/file")
    assert hashlib.sha256(again.content).hexdigest() == st["sha256"]


def test_an_export_running_at_a_restart_is_failed_and_said_so(slow: Svc) -> None:
    for e in slow.get("/v1/exports").json()["exports"]:
        slow.wait(e["id"])
    r = slow.post({})
    assert r.status_code == 202
    eid = r.json()["id"]
    assert slow.get(f"/v1/exports/{eid}").json()["status"] == "running"
    slow.proc.kill()
    slow.proc.start()
    st = slow.get(f"/v1/exports/{eid}").json()
    assert st["status"] == "failed" and "the service restarted" in st["reason"]
    assert slow.get(f"/v1/exports/{eid}/file").status_code == 409
    assert not list(slow.folder.glob("audit.db.exports/*.part"))
    assert not (slow.folder / "audit.db.exports" / f"{eid}.ndjson").exists()


# -- the service's own stream -----------------------------------------------------------------------------------


def test_every_export_request_and_completion_is_a_signed_event(svc: Svc, bundle: tuple[dict[str, Any], Path]
                                                               ) -> None:
    st, _ = bundle

    def mine() -> list[dict[str, Any]]:
        return [e for e in svc.events({"action": "data_access.data.exported", "order": "ingest"})
                if e["attributes"].get("audit.target.id") == st["id"]]

    deadline = time.monotonic() + 30
    while len(mine()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    req, done = mine()
    assert req["attributes"]["audit.export.status"] == "requested"
    assert req["attributes"]["audit.actor.id"] == "exporter"
    assert '"outcome":["failure"]' in req["attributes"]["db.query.text"]
    assert done["attributes"]["audit.export.status"] == "done" and done["outcome"] == "success"
    assert done["attributes"]["audit.export.sha256"] == st["sha256"]
    assert done["attributes"]["audit.export.record_count"] == st["events"]
    assert {e["service"] for e in (req, done)} == {"otel-audit-service"}
    assert {e["signed"] for e in (req, done)} == {"at source"}


def test_pending_events_are_in_the_bundle_without_a_proof_and_fail_verify(tmp_path: Path, demo: Path) -> None:
    """Records after a stream's newest checkpoint wait for the next one: in the bundle with proof null and their
    status; verify names each and exits 1 (a bundle verifies only when every event in it is proven)."""
    with ServiceProcess(write_config(tmp_path, demo / "keys")) as s:
        pending: list[dict[str, Any]] = []
        for line in (demo / "archive" / "audit.jsonl").read_bytes().splitlines():  # up to a line after a checkpoint
            assert s.post_json(line).status_code == 200
            pending = s.events({"status": "pending"})
            if pending and s.events({"status": "proven"}):
                break
        assert pending
        r = requests.post(s.url + "/v1/exports", json={}, timeout=10)
        assert r.status_code == 202
        eid = r.json()["id"]
        deadline = time.monotonic() + 60
        while (st := s.get(f"/v1/exports/{eid}").json())["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert st["status"] == "done" and st["proven"] == st["events"] - len(pending)
        path = tmp_path / "b.ndjson"
        path.write_bytes(s.get(f"/v1/exports/{eid}/file").content)
    rows = [orjson.loads(x) for x in _lines(path)[1:]]
    held = {r["id"]: r for r in rows if r["proof"] is None and "checkpoint_cosignature" not in r}
    assert set(held) == {e["id"] for e in pending}
    assert {r["status"] for r in held.values()} == {"pending"}
    v = subprocess.run([CLI, "verify", "--keys", str(demo / "keys"), str(path)], capture_output=True, text=True)
    assert v.returncode == 1, v.stdout
    assert f"{len(rows)} event(s): {len(rows) - len(pending)} proven, {len(pending)} not proven" in v.stdout
    assert v.stdout.count("no proof in the bundle (status 'pending'") == len(pending)
