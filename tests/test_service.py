"""The audit service as a real process: OTLP/HTTP JSON in, verify on ingest, the store, the query API.

Archives come from the real signing pipeline (conftest.write_archive, `otel-audit demo`); edits are made to
their lines as an attacker on the wire or at the producer would; every answer is checked against an
independent reading of the same archive."""

from __future__ import annotations

import base64
import copy
import gzip
import ipaddress
import re
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Written, seq_of, set_attr, write_archive
from service_support import CLI, Backend, ServiceProcess, lines, post_archive, records_of, write_config

from otel_audit import keys


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, shared_keys: Path) -> Written:
    d = tmp_path_factory.mktemp("svc-archive")
    return write_archive(d / "audit.jsonl", shared_keys, 300, checkpoint_every=50)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`otel-audit demo`'s folder: a gateway's catalog events (users, IPs, categories) in a signed archive."""
    d = tmp_path_factory.mktemp("svc-demo") / "demo"
    subprocess.run([CLI, "demo", "--out", str(d)], check=True, capture_output=True)
    return d


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def demo_service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, demo: Path) -> Any:
    folder = tmp_path_factory.mktemp("svc-demo-store")
    store = Backend.make(request.param, folder, request)
    with ServiceProcess(write_config(folder, demo / "keys", store=store.url)) as svc:
        post_archive(svc, demo / "archive" / "audit.jsonl")
        yield svc


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The store a test's service uses: a SQLite file in tmp_path, or a fresh database of the session's
    PostgreSQL server (the service connects as the INSERT/SELECT role)."""
    return Backend.make(request.param, tmp_path, request)


def _service(tmp_path: Path, keys_dir: Path, store: Backend | str | None = None, **extra: Any) -> ServiceProcess:
    if store is not None:
        extra["store"] = store if isinstance(store, str) else store.url
    return ServiceProcess(write_config(tmp_path, keys_dir, **extra))


def _stream(svc: ServiceProcess) -> dict[str, Any]:
    (s,) = svc.get("/v1/streams").json()["streams"]
    return s


def _findings(svc: ServiceProcess) -> list[dict[str, Any]]:
    return svc.get("/v1/findings").json()["findings"]


# -- verify on ingest --------------------------------------------------------------------------------


def test_archive_ingested_over_otlp_http_is_proven_whole(tmp_path: Path, store: Backend, shared_keys: Path,
        written: Written) -> None:
    with _service(tmp_path, shared_keys, store) as svc:
        post_archive(svc, written.path)
        s = _stream(svc)
        assert (s["id"], s["state"], s["records"], s["linked"], s["proven"], s["failed"]) == (
            written.stream_id, "closed", written.length, written.length, written.length, 0)
        assert _findings(svc) == []
        events = svc.events({"order": "ingest"})
        assert len(events) == written.length
        assert {e["status"] for e in events} == {"proven"}
        assert sorted(e["stream"]["seq"] for e in events) == list(range(written.length))
        # the checkpoints it verified, each cosigned when the service has a witness key (not here: empty)
        cps = svc.get("/v1/checkpoints").json()["checkpoints"]
        assert [c["size"] for c in cps] == sorted(c["size"] for c in cps)
        assert cps[-1]["size"] == written.length - 1 and cps[-1]["kind"] == "end"


def test_a_retried_request_is_acknowledged_and_stored_once(tmp_path: Path, store: Backend, shared_keys: Path,
                                                           written: Written) -> None:
    with _service(tmp_path, shared_keys, store) as svc:
        first = next(lines(written.path))
        for _ in range(3):
            assert svc.post_json(first).status_code == 200
        n = sum(len(sl["logRecords"]) for rl in orjson.loads(first)["resourceLogs"] for sl in rl["scopeLogs"])
        assert len(svc.events({"order": "ingest"})) == n
        assert svc.get("/healthz").json()["duplicates"] == 2 * n


def _edit_line(path: Path, seq: int, edit: Any) -> list[bytes]:
    """The archive's lines with the record at `seq` changed by edit(records, index in records)."""
    out = []
    for line in lines(path):
        doc = orjson.loads(line)
        for rl in doc["resourceLogs"]:
            for sl in rl["scopeLogs"]:
                recs = sl["logRecords"]
                for i, rec in enumerate(recs):
                    if seq_of(rec) == seq:
                        edit(recs, i)
                        break
        out.append(orjson.dumps(doc))
    return out


def test_a_record_modified_after_signing_is_failed_and_named(tmp_path: Path, store: Backend, shared_keys: Path,
                                                             written: Written) -> None:
    def change(recs: list[dict[str, Any]], i: int) -> None:
        set_attr(recs[i], "user.id", {"stringValue": "mallory"})

    with _service(tmp_path, shared_keys, store) as svc:
        for line in _edit_line(written.path, 7, change):
            assert svc.post_json(line).status_code == 200
        (f,) = _findings(svc)
        assert (f["kind"], f["seq"]) == ("digest", 7) and "modified after signing" in f["reason"]
        bad = svc.events({"user": "mallory"})
        assert [(e["stream"]["seq"], e["status"]) for e in bad] == [(7, "failed")]
        assert _stream(svc)["failed"] == 1  # the stream's summary says so too (attack finding)
        assert {e["status"] for e in svc.events({"order": "ingest"}) if e["stream"]["seq"] != 7} == {"proven"}


def test_a_deleted_record_stops_the_proof_there(tmp_path: Path, store: Backend, shared_keys: Path,
        written: Written) -> None:
    with _service(tmp_path, shared_keys, store) as svc:
        for line in _edit_line(written.path, 120, lambda recs, i: recs.pop(i)):
            assert svc.post_json(line).status_code == 200
        s = _stream(svc)
        assert s["linked"] == 120  # 0..119 received and linked; 121.. wait for 120
        assert s["proven"] <= 120 and s["state"] == "open"
        statuses = {e["stream"]["seq"]: e["status"] for e in svc.events({"order": "ingest"})}
        assert 120 not in statuses
        assert {statuses[k] for k in statuses if k > 120} == {"pending"}
        # the missing record arrives late (a retry from another path): the stream completes
        original = [ln for ln in lines(written.path)]
        for line in original:
            assert svc.post_json(line).status_code == 200
        s = _stream(svc)
        assert (s["linked"], s["proven"], s["state"]) == (written.length, written.length, "closed")


def test_a_variant_of_a_stored_record_is_refused_and_kept_as_evidence(tmp_path: Path, store: Backend, shared_keys: Path,
                                                                      written: Written) -> None:
    def change(recs: list[dict[str, Any]], i: int) -> None:
        recs[i]["body"] = {"stringValue": "rewritten"}

    with _service(tmp_path, shared_keys, store) as svc:
        post_archive(svc, written.path)
        edited = _edit_line(written.path, 3, change)
        r = svc.post_json(edited[0])
        assert r.status_code == 200
        ps = r.json()["partialSuccess"]
        assert ps["rejectedLogRecords"] == "1" and "variant" in ps["errorMessage"]
        kinds = [(f["kind"], f["seq"]) for f in _findings(svc)]
        assert ("variant", 3) in kinds
        assert svc.events({"q": "rewritten"}) == []  # the variant is not an event
        # and it does not discredit the genuine record, which is in the signed tree (attack finding)
        assert svc.get(f"/v1/events/{written.stream_id}-3").json()["status"] == "proven"


def test_restart_after_kill_9_continues_every_stream(tmp_path: Path, store: Backend, shared_keys: Path,
        written: Written) -> None:
    all_lines = list(lines(written.path))
    svc = _service(tmp_path, shared_keys, store).start()
    for line in all_lines[: len(all_lines) // 2]:
        assert svc.post_json(line).status_code == 200
    svc.kill()
    with ServiceProcess(svc.config) as again:
        for line in all_lines:  # the collector retries what was not acknowledged, and more
            assert again.post_json(line).status_code == 200
        s = _stream(again)
        assert (s["linked"], s["proven"], s["failed"], s["state"]) == (written.length, written.length, 0, "closed")
        assert len(again.events({"order": "ingest"})) == written.length


def test_the_store_is_append_only(tmp_path: Path, shared_keys: Path, written: Written) -> None:
    with _service(tmp_path, shared_keys) as svc:
        post_archive(svc, written.path)
    con = sqlite3.connect(tmp_path / "audit.db")
    for sql in ("UPDATE events SET actor = 'x'", "DELETE FROM events", "UPDATE checkpoints SET kind = 'x'",
                "DELETE FROM checkpoints"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute(sql)
    con.close()


def test_the_postgres_store_is_append_only_for_the_service_role_truncate_included(
        tmp_path: Path, shared_keys: Path, written: Written, request: pytest.FixtureRequest) -> None:
    import psycopg

    store = Backend.make("postgres", tmp_path, request)
    with _service(tmp_path, shared_keys, store) as svc:
        post_archive(svc, written.path)
    (part,) = store.read("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                         "WHERE i.inhparent = 'events'::regclass AND c.relname <> 'events_default'")[0]
    refused = {
        # the triggers: even the owner's UPDATE / DELETE / TRUNCATE is refused
        "trigger": ["UPDATE events SET actor = 'x'", "DELETE FROM events", "UPDATE checkpoints SET kind = 'x'",
                    "DELETE FROM checkpoints", "DELETE FROM findings", "UPDATE envelopes SET scope = ''",
                    "TRUNCATE events", "TRUNCATE checkpoints", f"TRUNCATE {part}"],
        # the service role's grants: no TRUNCATE, no DDL, no disabling a trigger, no reaching a partition directly
        "privilege": ["TRUNCATE events", "TRUNCATE checkpoints", "TRUNCATE findings", "TRUNCATE envelopes",
                      f"TRUNCATE {part}", f"DELETE FROM {part}", "ALTER TABLE events DISABLE TRIGGER ALL",
                      "DROP TABLE findings", f"ALTER TABLE events DETACH PARTITION {part}",
                      "UPDATE events SET actor = 'x'", "DELETE FROM events"],
    }
    for who, url in (("trigger", store.db.owner_url), ("privilege", store.db.service_url)):
        for sql in refused[who]:
            with psycopg.connect(url, autocommit=True) as con:
                with pytest.raises(psycopg.Error) as got:
                    con.execute(sql)  # type: ignore[arg-type]
                    raise AssertionError(f"{who}: {sql} was not refused")
                want = "append-only" if who == "trigger" else "permission denied|must be owner"
                assert re.search(want, str(got.value)), (who, sql, str(got.value))
    assert store.read("SELECT count(*) FROM events")[0][0] == written.length
    # what the service role may do: read, append, and update the derived streams' state
    with psycopg.connect(store.db.service_url, autocommit=True) as con:
        assert con.execute("SELECT count(*) FROM checkpoints").fetchone()[0] > 0  # type: ignore[index]
        con.execute("UPDATE streams SET last_ingest = last_ingest")


# -- the query API against an independent reading of the archive ---------------------------------------------


def _expected(demo: Path, keep: Any) -> list[tuple[str, int]]:
    out = []
    for _res, r in records_of(demo / "archive" / "audit.jsonl"):
        a = r["attributes"]
        if keep(r, a):
            out.append((a["audit.stream.id"], a["audit.stream.seq"]))
    return sorted(out)


def _got(svc: ServiceProcess, params: Any) -> list[tuple[str, int]]:
    return sorted((e["stream"]["id"], e["stream"]["seq"]) for e in svc.events(params))


def _in(addr: Any, net: str) -> bool:
    try:
        return isinstance(addr, str) and ipaddress.ip_address(addr) in ipaddress.ip_network(net)
    except ValueError:
        return False


@pytest.mark.parametrize("params, keep", [
    ({"action": "authentication.*"}, lambda r, a: r["event"].startswith("authentication.")),
    ({"action": "authentication.login.failed"}, lambda r, a: r["event"] == "authentication.login.failed"),
    ({"category": "security"}, lambda r, a: a.get("audit.category") == "security"),
    ({"outcome": "failure"}, lambda r, a: a.get("audit.outcome") == "failure"),
    ({"user": "alice"}, lambda r, a: a.get("user.id") == "alice"),
    ({"actor": "alice"}, lambda r, a: (a.get("audit.actor.id") or a.get("user.id")) == "alice"),
    ([("user", "alice"), ("user", "bob")], lambda r, a: a.get("user.id") in ("alice", "bob")),
    ({"client.address": "203.0.113.0/24"}, lambda r, a: _in(a.get("client.address"), "203.0.113.0/24")),
    ({"client.address": "0.0.0.0/0"}, lambda r, a: _in(a.get("client.address"), "0.0.0.0/0")),
    ({"action": "security.*", "outcome": "success"},
     lambda r, a: r["event"].startswith("security.") and a.get("audit.outcome") == "success"),
    ({"filter": 'user.id pr and audit.outcome eq "failure"'},
     lambda r, a: bool(a.get("user.id")) and a.get("audit.outcome") == "failure"),
    ({"filter": 'user.id eq "alice" or user.id eq "bob"'}, lambda r, a: a.get("user.id") in ("alice", "bob")),
    ({"filter": 'event sw "security." or (client.address eq "203.0.113.0/24" and not (user.id eq "bob"))'},
     lambda r, a: r["event"].startswith("security.")
     or (_in(a.get("client.address"), "203.0.113.0/24") and a.get("user.id") != "bob")),
    # a top-level "or" is answered side by side (a UNION on SQLite): three sides, a "not" side, an "or" under an
    # "and" (not split), sides overlapping (each row once), with other parameters and paging beside it
    ({"filter": 'user.id eq "alice" or audit.outcome eq "failure" or client.address eq "203.0.113.0/24"'},
     lambda r, a: a.get("user.id") == "alice" or a.get("audit.outcome") == "failure"
     or _in(a.get("client.address"), "203.0.113.0/24")),
    ({"filter": 'not (user.id pr) or audit.category eq "security"'},
     lambda r, a: not a.get("user.id") or a.get("audit.category") == "security"),
    ({"filter": '(user.id eq "alice" or user.id eq "bob") and audit.outcome eq "success"'},
     lambda r, a: a.get("user.id") in ("alice", "bob") and a.get("audit.outcome") == "success"),
    ({"filter": 'user.id pr or user.id eq "alice"', "outcome": "failure", "limit": "3"},
     lambda r, a: bool(a.get("user.id")) and a.get("audit.outcome") == "failure"),
    ({"filter": "session.id pr"}, lambda r, a: bool(a.get("session.id"))),
    ({"filter": 'body co "JAILBREAK"'}, lambda r, a: isinstance(r["body"], str) and "jailbreak" in r["body"].lower()),
    ({"filter": 'audit.category ne "security"', "action": "authentication.*"},
     lambda r, a: a.get("audit.category") != "security" and r["event"].startswith("authentication.")),
    ({"service": "llm-gateway"}, lambda r, a: True),
    ({"service": "nope"}, lambda r, a: False),
])
def test_filters_return_exactly_what_an_independent_filter_of_the_archive_does(
        demo_service: ServiceProcess, demo: Path, params: Any, keep: Any) -> None:
    want = _expected(demo, keep)
    assert want or params == {"service": "nope"}, "the demo corpus must hold matches, or the test proves nothing"
    assert _got(demo_service, params) == want


def test_time_window_and_order(demo_service: ServiceProcess, demo: Path) -> None:
    times = sorted(r["time"] for _res, r in records_of(demo / "archive" / "audit.jsonl"))
    lo, hi = times[len(times) // 4], times[3 * len(times) // 4]
    got = demo_service.events([("from", f"{lo // 10**9}.{lo % 10**9:09d}"), ("to", f"{hi // 10**9}.{hi % 10**9:09d}"),
                               ("order", "asc"), ("limit", "7")])
    assert [int(e["time_unix_nano"]) for e in got] == [t for t in times if lo <= t < hi]
    desc = demo_service.events([("order", "desc"), ("limit", "5")])
    assert [int(e["time_unix_nano"]) for e in desc] == sorted(times, reverse=True)


def test_full_text_search(demo_service: ServiceProcess, demo: Path) -> None:
    got = demo_service.events({"q": "jailbreak"})
    assert got and all("jailbreak" in (e["body"] or "").lower() or "jailbreak" in orjson.dumps(e["attributes"]).decode()
                       for e in got)


def test_polling_mode_hands_an_endless_cursor(demo_service: ServiceProcess) -> None:
    r = demo_service.get("/v1/events", {"order": "ingest", "limit": "1000"}).json()
    assert r["next_cursor"]
    again = demo_service.get("/v1/events", {"order": "ingest", "limit": "1000", "cursor": r["next_cursor"]}).json()
    assert again["events"] == [] and again["next_cursor"] == r["next_cursor"]


@pytest.mark.parametrize("params, names", [
    ({"nope": "1"}, "nope: unknown parameter"),
    ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"limit": "x"}, "limit"),
    ({"order": "sideways"}, "order"), ({"from": "yesterday"}, "from"),
    ({"client.address": "not-an-ip"}, "client.address"), ({"cursor": "garbage!"}, "cursor"),
    ([("from", "1"), ("from", "2")], "from: given 2 times"), ({"status": "maybe"}, "status"),
    ({"q": "   "}, "q"),
    ({"filter": 'user.id equals "x"'}, "filter: at 8: expected an operator"),
    ({"filter": 'nope eq "x"'}, "nope"), ({"filter": "(user.id pr"}, "filter"),
    ({"filter": 'time gt "yesterday"'}, "time"),
])
def test_bad_query_parameters_get_a_400_naming_them(demo_service: ServiceProcess, params: Any, names: str) -> None:
    r = demo_service.get("/v1/events", params)
    assert r.status_code == 400, r.text
    assert names in r.json()["error"]["message"]


def test_a_cursor_of_another_query_is_refused(demo_service: ServiceProcess) -> None:
    page = demo_service.get("/v1/events", {"user": "alice", "limit": "1"}).json()
    r = demo_service.get("/v1/events", {"user": "bob", "limit": "1", "cursor": page["next_cursor"]})
    assert r.status_code == 400 and "another query" in r.json()["error"]["message"]


@pytest.mark.parametrize("value", ["alice' OR '1'='1", "x\"; DROP TABLE events; --", "%", "_", "*"])
def test_sql_shaped_values_match_nothing_and_change_nothing(demo_service: ServiceProcess, value: str) -> None:
    before = len(demo_service.events({"order": "ingest"}))
    for p in ("user", "actor", "action", "category", "q"):
        r = demo_service.get("/v1/events", {p: value})
        assert r.status_code in (200, 400), r.text
        if r.status_code == 200:
            assert [e for e in r.json()["events"] if p != "q" and e.get(p) != value] == [] or p in ("action", "q")
    assert len(demo_service.events({"order": "ingest"})) == before


def test_event_by_id(demo_service: ServiceProcess) -> None:
    (e,) = demo_service.events({"order": "ingest", "limit": "1"})[:1]
    got = demo_service.get(f"/v1/events/{e['id']}").json()
    assert got == e
    r = demo_service.get("/v1/events/no-such-event")
    assert r.status_code == 404 and "no event" in r.json()["error"]["message"]
    for odd in ("%00", "a%00b"):  # NUL: PostgreSQL text cannot hold it, so nothing stored has it
        assert demo_service.get(f"/v1/events/{odd}").status_code == 404
        assert demo_service.get(f"/v1/events/{odd}/proof").status_code == 404
        assert demo_service.get("/v1/checkpoints", {"stream": odd.replace("%00", chr(0))}).status_code in (200, 400)
        assert demo_service.get("/v1/findings", {"stream": odd.replace("%00", chr(0))}).status_code in (200, 400)


# -- hostile requests to the receiver -----------------------------------------------------------------------


def test_bad_ingest_requests_get_4xx_and_store_nothing(tmp_path: Path, store: Backend, shared_keys: Path,
        written: Written) -> None:
    good = next(lines(written.path))
    with _service(tmp_path, shared_keys, store, limits={"max_request_bytes": 1 << 20}) as svc:
        cases = [
            (svc.post_json(b"{not json"), 400, "not strict OTLP/JSON"),
            (svc.post_json(b'{"resourceLogs": 5}'), 400, "resourceLogs"),
            (svc.post_json(b'{"resourceLogs": [], "resourceLogs": []}'), 400, "duplicate"),
            (svc.post_json(good, **{"Content-Type": "text/plain"}), 415, "Content-Type"),
            (svc.post_json(b"x" * (2 << 20)), 413, "limit"),
            (svc.post_json(gzip.compress(b" " * (4 << 20)), **{"Content-Encoding": "gzip"}), 413, "limit"),
            (svc.post_json(b"\x1f\x8b garbage", **{"Content-Encoding": "gzip"}), 400, "gzip"),
            (svc.post_json(good, **{"Content-Encoding": "br"}), 415, "Content-Encoding"),
        ]
        for r, status, says in cases:
            assert r.status_code == status, (r.status_code, r.text)
            assert says in r.json()["message"], r.text
        assert svc.events({"order": "ingest"}) == []
        # a gzip body that is fine is taken
        assert svc.post_json(gzip.compress(good), **{"Content-Encoding": "gzip"}).status_code == 200
        assert svc.events({"order": "ingest"})


def test_a_malformed_record_is_refused_counted_and_the_rest_stored(tmp_path: Path, store: Backend, shared_keys: Path,
                                                                   written: Written) -> None:
    doc = orjson.loads(next(lines(written.path)))
    recs = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    bad = copy.deepcopy(recs[1])
    bad["severityNumber"] = "nine"
    recs[1] = bad
    with _service(tmp_path, shared_keys, store) as svc:
        r = svc.post_json(orjson.dumps(doc))
        assert r.status_code == 200
        assert r.json()["partialSuccess"]["rejectedLogRecords"] == "1"
        assert "severityNumber" in r.json()["partialSuccess"]["errorMessage"]
        total = sum(len(sl["logRecords"]) for rl in doc["resourceLogs"] for sl in rl["scopeLogs"])
        assert len(svc.events({"order": "ingest"})) == total - 1
        assert [f["kind"] for f in _findings(svc)] == ["decode"]


# -- tokens -------------------------------------------------------------------------------------------------


def _token(name: str, *scopes: str) -> tuple[str, dict[str, Any]]:
    out = subprocess.run([CLI, "token", "--name", name, *[x for s in scopes for x in ("--scope", s)]],
                         check=True, capture_output=True, text=True).stdout.splitlines()
    token = out[1].strip()
    import yaml

    (entry,) = yaml.safe_load(out[3].strip().lstrip("- ").join(["[", "]"]))
    return token, entry


def test_tokens_and_scopes(tmp_path: Path, shared_keys: Path, written: Written) -> None:
    ingest, e1 = _token("collector", "ingest")
    reader, e2 = _token("auditor", "audit:read")
    with _service(tmp_path, shared_keys, tokens=[e1, e2]) as svc:
        line = next(lines(written.path))
        assert svc.post_json(line).status_code == 401
        assert svc.post_json(line, Authorization="Bearer nope").status_code == 401
        assert svc.post_json(line, Authorization=f"Bearer {reader}").status_code == 403
        assert svc.post_json(line, Authorization=f"Bearer {ingest}").status_code == 200
        assert svc.get("/v1/events").status_code == 401
        assert svc.get("/v1/events", Authorization=f"Bearer {ingest}").status_code == 403
        r = svc.get("/v1/events", Authorization=f"Bearer {reader}")
        assert r.status_code == 200 and r.json()["events"]
    text = (tmp_path / "service.yaml").read_text() + (tmp_path / "serve.log").read_text()
    assert ingest not in text and reader not in text


def test_a_public_address_without_tokens_is_refused(tmp_path: Path, shared_keys: Path) -> None:
    cfg = write_config(tmp_path, shared_keys)
    cfg.write_text(cfg.read_text().replace("127.0.0.1:0", "0.0.0.0:0"))
    r = subprocess.run([CLI, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "no tokens are configured" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("body, says", [
    ("store: [1]\nkeys: k\n", "store"),
    ("keys: k\nhttp: {endpoint: nowhere}\n", "http.endpoint"),
    ("keys: k\nbogus: 1\n", "bogus: unknown setting"),
    ("http: {endpoint: '127.0.0.1:0'}\n", "keys: required"),
    ("keys: k\ntokens: [{name: a, sha256: abc, scopes: [ingest]}]\n", "tokens[0].sha256"),
    ("keys: k\nlimits: {max_request_bytes: -1}\n", "limits.max_request_bytes"),
    ("keys: [\n", "not valid YAML"),
    # a keyring that is not there: named as the config key, not as a --keys option serve does not take
    ("keys: /nonexistent/keyring.json\n", "service.yaml: keys: /nonexistent/keyring.json: no such keyring"),
    ("keys: /nonexistent/keyring.json\n", "set keys: to the producers' public keyring"),
])
def test_bad_service_config_is_one_line_naming_the_key(tmp_path: Path, body: str, says: str) -> None:
    cfg = tmp_path / "service.yaml"
    cfg.write_text(body)
    r = subprocess.run([CLI, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "--keys" not in r.stderr, r.stderr


def test_the_witness_cosigns_every_verified_checkpoint(tmp_path: Path, store: Backend, shared_keys: Path,
        written: Written) -> None:
    from otel_audit.keys import Keyring
    from otel_audit.note import parse_note
    from otel_audit.service.ingest import cosignature_key_id

    witness = tmp_path / "witness"
    keys.generate(witness, "witness")
    with _service(tmp_path, shared_keys, store, witness_keys=str(witness)) as svc:
        post_archive(svc, written.path)
        cps = svc.get("/v1/checkpoints", {"stream": written.stream_id}).json()["checkpoints"]
    ring = Keyring.load(witness)
    (pub,) = list(ring)
    import base64
    import struct

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(pub.public_key)
    want = sum(1 for _res, r in records_of(written.path) if r["event"] == "audit.checkpoint")
    assert len(cps) == want and want >= 3
    for c in cps:
        name, b64 = c["cosignature"].removeprefix("\u2014 ").split()
        raw = base64.b64decode(b64)
        assert name == "witness" and raw[:4] == cosignature_key_id("witness", pub.public_key)
        (t,) = struct.unpack(">Q", raw[4:12])
        body = parse_note(c["note"]).text
        key.verify(raw[12:], f"cosignature/v1\ntime {t}\n{body}".encode())  # raises if it does not verify


# -- verify --store: the store re-proven offline -------------------------------------------------------------


def _verify_store(db: Path | str, keys_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    return subprocess.run([CLI, "verify", "--keys", str(keys_dir), "--store", url, *extra],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def stored(tmp_path: Path, shared_keys: Path, written: Written, store: Backend) -> Backend:
    with _service(tmp_path, shared_keys, store) as svc:
        post_archive(svc, written.path)
    return store


def test_verify_store_proves_an_intact_store(stored: Backend, shared_keys: Path, written: Written) -> None:
    r = _verify_store(stored.verify_url, shared_keys)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"all {written.length} record(s) proven in 1 stream(s)" in r.stdout
    if stored.name == "postgres":  # the URL is shown, its password never
        assert "service-pw" not in r.stdout + r.stderr


def test_verify_store_names_an_edited_record(stored: Backend, shared_keys: Path, written: Written) -> None:
    sid = written.stream_id
    ((rec,),) = stored.read("SELECT record FROM events WHERE id = {ph}", (f"{sid}-42",))
    doc = orjson.loads(rec)
    set_attr(doc, "user.id", {"stringValue": "mallory"})
    stored.insider("UPDATE events SET record = {ph} WHERE id = {ph}", (orjson.dumps(doc), f"{sid}-42"))
    r = _verify_store(stored.verify_url, shared_keys)
    assert r.returncode == 1, r.stdout
    assert f"{sid}-42" in r.stdout and "FAILED" in r.stdout


def test_verify_store_names_an_edited_filter_column(stored: Backend, shared_keys: Path, written: Written) -> None:
    sid = written.stream_id
    stored.insider("UPDATE events SET actor = 'someone-else' WHERE id = {ph}", (f"{sid}-10",))
    r = _verify_store(stored.verify_url, shared_keys, "--format", "json")
    assert r.returncode == 1
    problems = orjson.loads(r.stdout)["problems"]
    assert any(f"{sid}-10" in p and "actor" in p for p in problems), problems


def test_verify_store_finds_a_deleted_row(stored: Backend, shared_keys: Path, written: Written) -> None:
    stored.insider("DELETE FROM events WHERE id = {ph}", (f"{written.stream_id}-77",))
    r = _verify_store(stored.verify_url, shared_keys, "--format", "json")
    assert r.returncode == 1
    (s,) = orjson.loads(r.stdout)["streams"]
    assert "77" in orjson.dumps(s).decode() and s["status"] != "verified"


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_verify_store_usage_errors(tmp_path: Path, shared_keys: Path, stored: Backend) -> None:
    r = _verify_store(tmp_path / "none.db", shared_keys)
    assert r.returncode == 2 and "no such database" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([CLI, "verify", "--keys", str(shared_keys)], capture_output=True, text=True)
    assert r.returncode == 2 and "--store" in r.stderr
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    r = _verify_store(tmp_path / "junk.db", shared_keys)
    assert r.returncode == 2 and "not a usable SQLite database" in r.stderr, r.stderr


# -- proofs ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def witnessed(tmp_path_factory: pytest.TempPathFactory, shared_keys: Path, written: Written) -> Any:
    folder = tmp_path_factory.mktemp("svc-witnessed")
    witness = folder / "witness"
    keys.generate(witness, "witness")
    with ServiceProcess(write_config(folder, shared_keys, witness_keys=str(witness))) as svc:
        post_archive(svc, written.path)
        yield svc, witness


def _prove(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "prove", *args], capture_output=True, text=True, timeout=60)


def test_every_proven_event_has_a_proof_that_checks_offline(witnessed: Any, shared_keys: Path,
                                                              written: Written) -> None:
    from otel_audit.keys import Keyring
    from otel_audit.service import proof as tlog

    svc, witness = witnessed
    ring, wring = Keyring.load(shared_keys), Keyring.load(witness)
    events = svc.events({"order": "ingest", "stream": written.stream_id})
    last = max(e["stream"]["seq"] for e in events)
    for e in events:
        r = svc.get(f"/v1/events/{e['id']}/proof")
        if e["stream"]["seq"] == last:  # the end checkpoint: no checkpoint above it
            assert r.status_code == 409 and "no verified checkpoint" in r.json()["error"]["message"]
            continue
        assert r.status_code == 200, r.text
        assert r.text.startswith("c2sp.org/tlog-proof@v1\nextra ")
        got = tlog.check(r.text, ring, wring)
        assert (got.stream, got.seq) == (written.stream_id, e["stream"]["seq"])
        assert got.content[0] == e["event"] and got.witnessed_by == ["witness"]


def test_a_proof_does_not_check_when_anything_in_it_changes(witnessed: Any, shared_keys: Path,
                                                            written: Written) -> None:
    from otel_audit.keys import Keyring
    from otel_audit.service import proof as tlog

    svc, witness = witnessed
    ring, wring = Keyring.load(shared_keys), Keyring.load(witness)
    e = svc.events({"order": "ingest", "limit": "20", "stream": written.stream_id})[10]
    text = svc.get(f"/v1/events/{e['id']}/proof").text
    tlog.check(text, ring, wring)
    head, _, note = text.partition("\n\n")
    lines_ = head.split("\n")
    extra = base64.b64decode(lines_[1][6:])
    forged_extra = extra.replace(b'"user-', b'"userX', 1)
    assert forged_extra != extra
    cases = {
        "content": "\n".join([lines_[0], "extra " + base64.b64encode(forged_extra).decode(), *lines_[2:]]) + "\n\n"
                   + note,
        "index": text.replace(f"\nindex {e['stream']['seq']}\n", f"\nindex {e['stream']['seq'] + 1}\n"),
        "path": "\n".join([*lines_[:3], base64.b64encode(bytes(32)).decode(), *lines_[4:]]) + "\n\n" + note,
        "root": text.replace(note.split("\n")[2], base64.b64encode(bytes(32)).decode()),
    }
    for name, bad in cases.items():
        with pytest.raises(tlog.ProofError):
            tlog.check(bad, ring, wring)
            raise AssertionError(f"a proof with its {name} changed still checks")
    with pytest.raises(tlog.ProofError, match="witness"):
        unwitnessed = text[: text.rindex("\u2014 witness")]
        tlog.check(unwitnessed, ring, wring)


def test_prove_cli_fetches_checks_and_saves(witnessed: Any, shared_keys: Path, tmp_path: Path,
                                            written: Written) -> None:
    svc, witness = witnessed
    e = svc.events({"order": "ingest", "limit": "5", "stream": written.stream_id})[3]
    out = tmp_path / "e.tlog-proof"
    r = _prove(e["id"], "--url", svc.url, "--keys", str(shared_keys), "--witness-keys", str(witness),
               "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("PROVEN: ") and "witnessed by: witness" in r.stdout
    r = _prove("--file", str(out), "--keys", str(shared_keys))
    assert r.returncode == 0 and "PROVEN" in r.stdout
    out.write_text(out.read_text().replace("index ", "index 1", 1))
    r = _prove("--file", str(out), "--keys", str(shared_keys))
    assert r.returncode == 1 and r.stdout.startswith("NOT PROVEN"), r.stdout + r.stderr
    r = _prove("no-such-event", "--url", svc.url, "--keys", str(shared_keys))
    assert r.returncode == 2 and "404" in r.stderr
    r = _prove("x", "--url", "http://127.0.0.1:1", "--keys", str(shared_keys))
    assert r.returncode == 2 and "cannot reach" in r.stderr and "Traceback" not in r.stderr


def test_proofs_of_a_long_stream_come_from_tiles_and_check(tmp_path: Path, store: Backend, shared_keys: Path) -> None:
    from otel_audit.keys import Keyring
    from otel_audit.service import proof as tlog

    w = write_archive(tmp_path / "long.jsonl", shared_keys, 3000, checkpoint_every=1000)
    ring = Keyring.load(shared_keys)
    with _service(tmp_path, shared_keys, store) as svc:
        post_archive(svc, w.path)
        picks = [0, 1, 255, 256, 257, 1000, 2047, 2048, 2500, w.length - 2]
        for seq in picks:
            r = svc.get(f"/v1/events/{w.stream_id}-{seq}/proof")
            assert r.status_code == 200, r.text
            assert tlog.check(r.text, ring).seq == seq
    assert store.read("SELECT count(*) FROM tiles WHERE level = 1")[0][0] == w.length // 256


# -- the service's own signed stream ----------------------------------------------------------------------


def _wait(check: Any, timeout: float = 30) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_every_read_and_every_finding_is_a_signed_event_of_the_services_own_stream(
        tmp_path: Path, store: Backend, shared_keys: Path, written: Written) -> None:
    witness = tmp_path / "service-keys"
    keys.generate(witness, "service")
    reader, entry = _token("auditor-7", "audit:read")
    ingest, entry2 = _token("collector", "ingest")

    def change(recs: list[dict[str, Any]], i: int) -> None:
        set_attr(recs[i], "user.id", {"stringValue": "mallory"})

    with _service(tmp_path, shared_keys, store, witness_keys=str(witness), tokens=[entry, entry2]) as svc:
        auth = {"Authorization": f"Bearer {reader}"}
        for line in _edit_line(written.path, 5, change):
            assert svc.post_json(line, Authorization=f"Bearer {ingest}").status_code == 200
        assert svc.get("/v1/events", {"user": "user-3", "limit": "3"}, **auth).status_code == 200
        assert svc.get(f"/v1/events/{written.stream_id}-9/proof", **auth).status_code == 200

        def own() -> list[dict[str, Any]]:
            return [e for e in svc.events({"service": "otel-audit-service", "order": "ingest"}, **auth)
                    if e["event"] != "audit.checkpoint"]

        got = _wait(lambda: [e for e in own() if e["event"] == "data_access.logs.queried"
                             and e["attributes"].get("audit.target.type") == "inclusion_proof"]
                    and [e for e in own() if e["event"] == "security.integrity.violated"])
        assert got, own()
        events = own()
        queried = [e for e in events if e["event"] == "data_access.logs.queried"]
        assert any(e["actor"] == "auditor-7" and "user=user-3" in e["attributes"]["db.query.text"] for e in queried)
        (bad,) = [e for e in events if e["event"] == "security.integrity.violated"]
        assert bad["target"]["id"] == written.stream_id
        assert "modified after signing" in bad["attributes"]["audit.reason"]
        assert {e["signed"] for e in events} == {"at source"}
        (s,) = [x for x in svc.get("/v1/streams", **auth).json()["streams"] if x["service"] == "otel-audit-service"]
        assert s["failed"] == 0
    # the store, the service's stream included, re-proven offline with both keyrings
    both = tmp_path / "both"
    both.mkdir()
    shutil.copy(shared_keys / "keyring.json", both / "producers.json")
    shutil.copy(witness / "keyring.json", both / "service.json")
    # --allow-open: the service's own end checkpoint is made at its shutdown, after its HTTP side stopped; it waits
    # in the own stream's spool and is delivered at the next start
    r = _verify_store(store.verify_url, both, "--format", "json", "--allow-open")
    rep = orjson.loads(r.stdout)
    by = {x["stream_id"]: x for x in rep["streams"]}
    assert by[written.stream_id]["status"] != "verified"  # the modified record
    own_ids = [k for k in by if k != written.stream_id]
    assert own_ids and all(by[k]["status"] == "verified" for k in own_ids), rep


# -- PostgreSQL: errors, and the database going away mid-ingest ------------------------------------------------


def test_postgres_store_errors_are_one_line_and_never_show_the_password(
        tmp_path: Path, shared_keys: Path, pg_server: Any) -> None:
    from pg_support import SERVICE, SERVICE_PASSWORD

    db = pg_server.database()
    cases = {
        "wrong password": (db.service_url.replace(SERVICE_PASSWORD, "not-the-pw-91c"), "password authentication"),
        "server down": (f"postgresql://{SERVICE}:secret-pw-4d@127.0.0.1:1/{db.name}", "cannot connect"),
        "no such database": (f"postgresql://{SERVICE}:{SERVICE_PASSWORD}@127.0.0.1:{pg_server.port}/nope",
                             "does not exist"),
        "bad URL": ("postgresql://u:secret-pw-4d@127.0.0.1:notaport/db", "store:"),
        "no store": (pg_server.url("postgres", SERVICE, SERVICE_PASSWORD), "store-migrate"),
    }
    for name, (url, says) in cases.items():
        cfg = write_config(tmp_path, shared_keys, store=url)
        r = subprocess.run([CLI, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        err = r.stderr.strip()
        assert says in err and "Traceback" not in err and len(err.splitlines()) == 1, (name, err)
        for pw in (SERVICE_PASSWORD, "not-the-pw-91c", "secret-pw-4d"):
            assert pw not in r.stdout + r.stderr, (name, err)
        r = _verify_store(url, shared_keys)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (name, r.stderr)
        assert all(pw not in r.stdout + r.stderr for pw in (SERVICE_PASSWORD, "not-the-pw-91c", "secret-pw-4d"))
    # a running service shows the URL masked (its log, /healthz)
    with _service(tmp_path, shared_keys, store=db.service_url) as svc:
        assert svc.get("/healthz").status_code == 200
        assert SERVICE_PASSWORD not in svc.log.read_text() + svc.get("/healthz").text
        assert f"{SERVICE}:***@" in svc.log.read_text()


@pytest.fixture(scope="module")
def own_pg_server() -> Any:
    """A PostgreSQL server of its own: this module's restart test stops it."""
    from pg_support import PgServer

    server = PgServer().start()
    yield server
    server.close()


def test_postgres_restart_mid_ingest_is_503_then_every_acknowledged_record_is_stored(
        tmp_path: Path, shared_keys: Path, written: Written, own_pg_server: Any) -> None:
    db = own_pg_server.database()
    all_lines = list(lines(written.path))
    acked: list[bytes] = []
    with _service(tmp_path, shared_keys, store=db.service_url) as svc:
        half = len(all_lines) // 2
        for line in all_lines[:half]:
            assert svc.post_json(line).status_code == 200
            acked.append(line)
        own_pg_server.stop("fast")
        try:
            r = svc.post_json(all_lines[half])
            assert r.status_code == 503, r.text  # retryable: the collector keeps it and retries
            assert r.headers.get("Retry-After") and "retry later" in r.json()["message"]
            assert svc.post_json(all_lines[half]).status_code == 503
            r = svc.get("/v1/events", {"limit": "5"})  # reads too: 503, retryable, said in one line
            assert r.status_code == 503 and "retry later" in r.json()["error"]["message"], r.text
        finally:
            own_pg_server.start()
        assert svc.get("/v1/streams").status_code == 200  # a stale pooled connection is replaced, not reported
        for line in all_lines[half:]:  # the collector's retries, then the rest
            assert svc.post_json(line).status_code == 200
            acked.append(line)
        s = _stream(svc)
        assert (s["linked"], s["proven"], s["failed"], s["state"]) == (written.length, written.length, 0, "closed")
        assert len(svc.events({"order": "ingest"})) == written.length
    r = _verify_store(db.service_url, shared_keys)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"all {written.length} record(s) proven in 1 stream(s)" in r.stdout
    log = svc.log.read_text()
    assert "answered 503 (retryable)" in log and "Traceback" not in log, log[-3000:]
    assert "service-pw" not in log


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_serve_cleanly_with_status_0(tmp_path: Path, shared_keys: Path, sig: int) -> None:
    """SIGTERM / SIGINT is the stop an orchestrator asks for: serve shuts down gracefully and exits 0 (an exit
    status of 143 makes systemd and supervisors report a failed service)."""
    witness = tmp_path / "witness"
    keys.generate(witness, "witness")
    svc = ServiceProcess(write_config(tmp_path, shared_keys, witness_keys=str(witness))).start()
    assert svc.get("/healthz").status_code == 200
    assert svc.stop(sig) == 0, svc.log.read_text()[-2000:]
