"""Attacks on the audit service's newer surfaces, from the outside (docs/service.md, README, --help and the served
OpenAPI document only): facets, CSV, the Bifrost-compatible API, the OpenAPI document, `otel-audit query`,
signing at ingest, and `otel-audit demo`.

Every test runs the real `otel-audit serve` (or the CLI) as a process and talks to it over real sockets. Records
signed at source are made by the spec-only producer of tests/test_attack_service.py. Each test encodes what a
user would expect; a failing test is a finding.
"""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import os
import pty
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from otel_audit import keys as keys_mod

sys.path.insert(0, str(Path(__file__).parent))
from service_support import CLI, ServiceProcess, write_config  # noqa: E402
from test_attack_service import KEY, Producer, _token, load_signer  # noqa: E402

# values an attacker chooses: formulas, control characters, quotes, commas, line breaks, unicode
HOSTILE_USERS = ["alice", "bob", '=HYPERLINK("http://evil.example/","x")', "+cmd|' /C calc'!A0", "-2+3",
                 "@SUM(A1:A9)", "\tTAB", "\rCR", "'quoted", "ünï©ødé 𝔘", "comma,user", 'quote"user',
                 "multi\nline", "=1+1", "evil\x1b[2J\x1b]0;pwned\x07"]
BODIES = ["plain {i}", "=1+1 {i}", "line1 {i}\r\nline2\nline3", '"quoted", comma {i}', "-{i}", "@{i}", "+{i}"]
ADDRS = ["10.0.0.1", "10.0.0.2", "192.0.2.7", "2001:db8::1", "::ffff:10.0.0.9"]
N_EVENTS = 42


def H(tok: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"} if tok else {}


def ok(r: requests.Response) -> Any:
    assert r.status_code == 200, (r.status_code, r.text[:500])
    return r.json()


def err400(r: requests.Response, param: str) -> None:
    """A 4xx JSON error whose message names the parameter; never a 5xx or a traceback."""
    assert 400 <= r.status_code < 500, (param, r.status_code, r.text[:300])
    assert "Traceback" not in r.text
    body = r.json()
    msg = body["error"]["message"]
    assert body["error"]["status"] == r.status_code, body
    assert param in msg, (param, msg)


def unneutralise(v: str) -> str:
    return v[1:] if v.startswith("'") else v


def unsigned_request(service: str, records: list[dict[str, Any]], *, instance: str | None = None,
                     namespace: str | None = None, extra_resource: dict[str, Any] | None = None) -> bytes:
    res = [{"key": "service.name", "value": {"stringValue": service}}] if service is not None else []
    if instance is not None:
        res.append({"key": "service.instance.id", "value": {"stringValue": instance}})
    if namespace is not None:
        res.append({"key": "service.namespace", "value": {"stringValue": namespace}})
    for k, v in (extra_resource or {}).items():
        res.append({"key": k, "value": v})
    return json.dumps({"resourceLogs": [{"resource": {"attributes": res},
                                         "scopeLogs": [{"scope": {"name": "plain"}, "logRecords": records}]}]}).encode()


def plain_record(body: str, **attrs: str) -> dict[str, Any]:
    return {"timeUnixNano": str(time.time_ns()), "severityNumber": 9, "severityText": "INFO",
            "eventName": "authentication.login.succeeded", "body": {"stringValue": body},
            "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]}


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("api-keys")
    keys_mod.generate(d / "producer", KEY)
    keys_mod.generate(d / "witness", "witness")
    both = d / "both"
    both.mkdir()
    shutil.copy(d / "producer" / "keyring.json", both / "producer.json")
    shutil.copy(d / "witness" / "keyring.json", both / "witness.json")
    return {"producer": d / "producer", "witness": d / "witness", "both": both}


@pytest.fixture(scope="module")
def tokens() -> dict[str, tuple[str, dict[str, Any]]]:
    return {"ingest": _token("collector", "ingest"), "read": _token("auditor", "audit:read"),
            "export": _token("exporter", "audit:export"), "readexport": _token("dumper", "audit:read", "audit:export"),
            "admin": _token("admin", "audit:admin")}


class Api:
    svc: ServiceProcess
    tok: dict[str, str]
    producer: Producer
    sent: list[dict[str, Any]]     # what we sent on our signed stream, one dict per record (checkpoints too)
    plain: list[str]               # bodies of the unsigned records (signed at ingest)

    def get(self, path: str, params: Any = None, tok: str | None = "read", **headers: str) -> requests.Response:
        return self.svc.get(path, params, **H(self.tok.get(tok) if tok else None), **headers)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, keyset: dict[str, Path],
        tokens: dict[str, tuple[str, dict[str, Any]]]):
    """One service (tokens, witness key, signing at ingest on) holding a signed stream full of hostile values and a
    few unsigned records of another producer; the tests that use it only read."""
    folder = tmp_path_factory.mktemp("api-svc")
    cfg = write_config(folder, keyset["producer"], witness_keys=str(keyset["witness"]),
                       tokens=[row for _t, row in tokens.values()])
    a = Api()
    a.svc = ServiceProcess(cfg)
    a.tok = {k: t for k, (t, _row) in tokens.items()}
    p = Producer(load_signer(keyset["producer"]), service="forge-api")
    sent: list[dict[str, Any]] = [{"event": "audit.checkpoint", "category": "integrity", "outcome": "success",
                                   "actor": None, "address": None, "target.type": None}]
    for i in range(N_EVENTS):
        user = HOSTILE_USERS[i % len(HOSTILE_USERS)]
        outcome = "failure" if i % 3 == 0 else "success"
        denied = "authorization.permission.denied" if i % 4 == 0 else "authorization.model.accessed"
        cat, ev = (("authentication", "authentication.login.failed") if i % 2 else ("authorization", denied))
        attrs = {"user.id": user, "audit.category": cat, "audit.outcome": outcome,
                 "client.address": ADDRS[i % len(ADDRS)], "audit.target.type": ["document", "=evil()", "@x"][i % 3],
                 "audit.target.id": f"t-{i % 4}", "body": BODIES[i % len(BODIES)].format(i=i)}
        p.event(ev, **attrs)
        sent.append({"event": ev, "category": cat, "outcome": outcome, "actor": user,
                     "address": ADDRS[i % len(ADDRS)], "target.type": attrs["audit.target.type"]})
        if i % 10 == 9:
            p.checkpoint("size")
            sent.append(dict(sent[0]))
    p.checkpoint("end")
    sent.append(dict(sent[0]))
    a.producer, a.sent = p, sent
    a.plain = [f"plain-{i} =cmd" for i in range(15)]
    with a.svc:
        # sent in pieces, as a collector batches
        for k in range(0, len(p.records), 9):
            r = a.svc.post_json(p.request(p.records[k:k + 9]), **H(a.tok["ingest"]))
            assert r.status_code == 200 and r.json() == {}, r.text
        for k in range(0, 15, 5):
            recs = [plain_record(b, **{"user.id": "gw-user"}) for b in a.plain[k:k + 5]]
            r = a.svc.post_json(unsigned_request("plain-gw", recs), **H(a.tok["ingest"]))
            assert r.status_code == 200 and r.json() == {}, r.text
        yield a


def mine(a: Api) -> list[tuple[str, str]]:
    return [("stream", a.producer.stream)]


def all_events(a: Api, params: list[tuple[str, str]], limit: int = 1000) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = a.get("/v1/events", params + [("limit", str(limit))] + ([("cursor", cursor)] if cursor else []))
        page = ok(r)
        out += page["events"]
        cursor = page["next_cursor"]
        if not page["events"] or cursor is None:
            return out


# == 1. hostile client of the query surface ========================================================


def test_baseline_stream_proven(api: Api) -> None:
    """The fixture's signed stream is stored whole and proven: the counts below are over what we sent."""
    evs = all_events(api, mine(api))
    assert len(evs) == len(api.sent), (len(evs), len(api.sent))
    assert all(e["status"] == "proven" and e["signed"] == "at source" for e in evs)
    plain = [e for e in all_events(api, [("service", "plain-gw")]) if e["event"] != "audit.checkpoint"]
    assert sorted(e["body"] for e in plain) == sorted(api.plain)
    assert all(e["signed"] == "at ingest" for e in plain), {e["signed"] for e in plain}


FACET_OF = {"action": "event", "category": "category", "outcome": "outcome", "actor": "actor",
            "target.type": "target.type", "client.address": "address"}


def test_facets_equal_independent_count(api: Api) -> None:
    """Every facet's counts over our stream equal a count over what we sent, and values + missing + other == total."""
    fields = list(FACET_OF)
    body = ok(api.get("/v1/facets", mine(api) + [("field", f) for f in fields] + [("limit", "100")]))
    assert body["total"] == len(api.sent) and body["complete"] is True, body
    for f in fields:
        want = Counter(s[FACET_OF[f]] for s in api.sent if s[FACET_OF[f]] is not None)
        missing = sum(1 for s in api.sent if s[FACET_OF[f]] is None)
        got = {v["value"]: v["count"] for v in body["facets"][f]["values"]}
        assert got == dict(want), (f, got, dict(want))
        assert body["facets"][f]["missing"] == missing, (f, body["facets"][f])
        assert body["facets"][f]["other"] == 0


def test_facets_top_limit_other_and_ties(api: Api) -> None:
    """With limit=2 the two most frequent values (ties by value) are given, and the rest is counted in other."""
    body = ok(api.get("/v1/facets", mine(api) + [("field", "actor"), ("limit", "2")]))
    f = body["facets"]["actor"]
    want = Counter(s["actor"] for s in api.sent if s["actor"] is not None)
    top = sorted(want.items(), key=lambda kv: (-kv[1], kv[0]))[:2]
    assert [(v["value"], v["count"]) for v in f["values"]] == top, (f, top)
    assert sum(v["count"] for v in f["values"]) + f["missing"] + f["other"] == body["total"]


@pytest.mark.parametrize("params", [[("q", "quoted")], [("q", "line2")], [("filter", 'user.id sw "="')],
                                    [("filter", 'user.id co "," or user.id eq "bob"')], [("outcome", "failure")],
                                    [("client.address", "10.0.0.0/8")], [("client.address", "2001:db8::/32")],
                                    [("action", "authentication.*")]])
def test_facets_total_equals_events(api: Api, params: list[tuple[str, str]]) -> None:
    """For the same filters, /v1/facets total equals the number of events /v1/events returns."""
    evs = all_events(api, mine(api) + params)
    body = ok(api.get("/v1/facets", mine(api) + params + [("field", "actor"), ("limit", "100")]))
    assert body["total"] == len(evs), (params, body["total"], len(evs))
    got = {v["value"]: v["count"] for v in body["facets"]["actor"]["values"]}
    assert got == dict(Counter(e["actor"] for e in evs if e["actor"] is not None)), params


def test_facets_max_rows_bound(tmp_path: Path, keyset: dict[str, Path]) -> None:
    """limits.facet_max_rows: 10 over 25 events: the counts cover the newest 10, complete is false, and
    values + missing + other == total."""
    s = ServiceProcess(write_config(tmp_path, keyset["producer"], limits={"facet_max_rows": 10}))
    with s:
        recs = [plain_record(f"fm-{i}", **{"user.id": f"u{i % 3}"}) for i in range(25)]
        assert s.post_json(unsigned_request("fm", recs)).status_code == 200
        body = ok(s.get("/v1/facets", [("service", "fm"), ("field", "actor")]))
        assert body["complete"] is False and body["total"] == 10, body
        f = body["facets"]["actor"]
        assert sum(v["count"] for v in f["values"]) + f["missing"] + f["other"] == body["total"], body
        ids = [e["id"] for e in s.events({"service": "fm", "order": "ingest"})][-10:]
        newest = Counter(e["actor"] for e in s.events({"service": "fm"}) if e["id"] in ids)
        assert {v["value"]: v["count"] for v in f["values"]} == dict(newest)


def test_facets_status_and_signed(api: Api) -> None:
    """status facet over the whole store agrees with /v1/events counted by status."""
    body = ok(api.get("/v1/facets", [("service", "plain-gw"), ("field", "status")]))
    evs = all_events(api, [("service", "plain-gw")])
    assert body["total"] == len(evs)
    want = Counter(e["status"] for e in evs)
    assert {v["value"]: v["count"] for v in body["facets"]["status"]["values"]} == dict(want)


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


CSV_COLUMNS = ["id", "time", "event", "category", "outcome", "actor", "user_id", "target_type", "target_id",
               "client_address", "service", "session_id", "trace_id", "severity_number", "severity_text", "status",
               "signed", "stream_id", "stream_seq", "digest", "ingest_seq", "ingest_time", "body", "attributes"]
DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def _check_csv(text: str, events: list[dict[str, Any]]) -> None:
    rows = _csv_rows(text)
    assert list(rows[0].keys()) == CSV_COLUMNS, list(rows[0].keys())
    assert len(rows) == len(events), (len(rows), len(events))
    for row in rows:
        for col, v in row.items():
            assert not v.startswith(DANGEROUS), f"CSV injection: column {col} = {v!r}"
    by_id = {e["id"]: e for e in events}
    for row in rows:
        e = by_id[unneutralise(row["id"])]
        assert unneutralise(row["actor"]) == (e["actor"] or ""), (row["actor"], e["actor"])
        assert unneutralise(row["body"]) == (e["body"] if isinstance(e["body"], str) else row["body"])
        assert unneutralise(row["target_type"]) == (e["target"]["type"] or "")


def test_csv_neutralised_and_reversible(api: Api) -> None:
    """format=csv over our hostile stream: the fixed columns, no field a spreadsheet would run as a formula, and
    one leading ' stripped gives the stored value back (actor, body, target type)."""
    evs = all_events(api, mine(api))
    r = api.get("/v1/events", mine(api) + [("format", "csv"), ("limit", "1000")])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.headers
    _check_csv(r.text, evs)


def test_csv_rfc4180_crlf_and_multiline(api: Api) -> None:
    """Every record ends with CRLF; a body with line breaks stays inside one quoted field."""
    r = api.get("/v1/events", mine(api) + [("format", "csv"), ("limit", "1000")])
    raw = r.content
    # outside quotes, every line break is CRLF
    inq = False
    for i, b in enumerate(raw):
        if b == 0x22:
            inq = not inq
        elif b == 0x0A and not inq:
            assert raw[i - 1] == 0x0D, raw[max(0, i - 40):i + 1]
    assert raw.endswith(b"\r\n")
    rows = _csv_rows(r.text)
    assert any("\n" in row["body"] for row in rows)


def test_csv_paging_header(api: Api) -> None:
    """A CSV page carries its next cursor in X-Next-Cursor, and the next page has the same header line."""
    r1 = api.get("/v1/events", mine(api) + [("format", "csv"), ("limit", "5")])
    cur = r1.headers.get("X-Next-Cursor")
    assert cur, r1.headers
    r2 = api.get("/v1/events", mine(api) + [("format", "csv"), ("limit", "5"), ("cursor", cur)])
    assert r2.status_code == 200, r2.text
    ids1 = {row["id"] for row in _csv_rows(r1.text)}
    ids2 = {row["id"] for row in _csv_rows(r2.text)}
    assert len(ids1) == len(ids2) == 5 and not ids1 & ids2


HOSTILE_PARAMS: list[tuple[str, list[tuple[str, str]], str]] = [
    ("/v1/events", [("to", "253402300799")], "to"),
    ("/v1/events", [("to", "9999999999")], "to"),                 # 2286: past int64 nanoseconds (2262-04-11)
    ("/v1/events", [("from", "2300-01-01T00:00:00Z")], "from"),
    ("/v1/events", [("to", "9999-12-31T23:59:59-23:59")], "to"),
    ("/v1/events", [("from", "9999-12-31T23:59:59Z")], "from"),
    ("/v1/facets", [("to", "9999-12-31T23:59:59-23:59")], "to"),
    ("/v1/facets", [("from", "253402300799")], "from"),
    ("/api/audit-logs", [("end_date", "9999-12-31")], "end_date"),
    ("/api/audit-logs", [("end_date", "9999-12-30")], "end_date"),
    ("/api/audit-logs", [("start_date", "9999-12-31")], "start_date"),
    ("/api/audit-logs/export", [("end_date", "9999-12-31")], "end_date"),
    ("/api/audit-logs", [("end_date", "0001-01-01")], "end_date"),
    ("/api/audit-logs", [("start_date", "9999-12-31T23:59:59.999999999Z")], "start_date"),
    ("/v1/facets", [("field", "nope")], "field"),
    ("/v1/facets", [("limit", "0")], "limit"),
    ("/v1/facets", [("limit", "1e3")], "limit"),
    ("/v1/facets", [("order", "asc")], "order"),
    ("/v1/events", [("limit", "1001")], "limit"),
    ("/v1/events", [("limit", "٥")], "limit"),
    ("/v1/events", [("format", "xml")], "format"),
    ("/v1/events", [("cursor", "!!!")], "cursor"),
    ("/api/audit-logs", [("page", "1000000000")], "page"),
    ("/api/audit-logs", [("page", "0")], "page"),
    ("/api/audit-logs", [("page", "1002"), ("limit", "100")], "page"),
    ("/api/audit-logs", [("limit", "0")], "limit"),
    ("/api/audit-logs", [("actions", "read")], "actions"),
    ("/api/audit-logs", [("actions", '["read"')], "actions"),
    ("/api/audit-logs", [("actions", "[" * 300 + "]" * 300)], "actions"),
    ("/api/audit-logs", [("period", "99999999999w")], "period"),
    ("/api/audit-logs", [("sort_by", "id")], "sort_by"),
    ("/api/audit-logs", [("tags", "x")], "tags"),
    ("/api/audit-logs", [("request_method", "GET")], "request_method"),
    ("/api/audit-logs", [("cursor", "garbage")], "cursor"),
    ("/api/audit-logs/filterdata", [("dimensions", "nope")], "dimensions"),
    ("/api/audit-logs/export", [("format", "syslog")], "format"),
    ("/api/audit-logs/export", [("page", "2")], "page"),
]


@pytest.mark.parametrize("path,params,name", HOSTILE_PARAMS, ids=[f"{p}?{q[0][0]}={q[0][1][:20]}"
                                                                   for p, q, _ in HOSTILE_PARAMS])
def test_hostile_params_are_4xx_naming_it(api: Api, path: str, params: list[tuple[str, str]], name: str) -> None:
    """A bad value of any parameter is a 4xx JSON error naming that parameter, never a 500 (dates at the edge of
    the year 9999 included: the service accepts the date and then fails converting it)."""
    tok = "readexport" if path.endswith("export") else "read"
    err400(api.get(path, params, tok=tok), name)


@pytest.mark.parametrize("name,values", [("format", ["csv", "json"]), ("order", ["asc", "desc"]),
                                         ("q", ["alice", "bob"]), ("from", ["0", "1"]), ("to", ["1", "2"]),
                                         ("filter", ['user.id eq "a"', 'user.id eq "b"']),
                                         ("limit", ["5", "6"])])
def test_single_valued_param_repeated_is_400(api: Api, name: str, values: list[str]) -> None:
    """A parameter that takes one value, given twice, is refused naming it (as /v1/facets does for limit) — not
    silently answered with one of the two."""
    err400(api.get("/v1/events", [(name, v) for v in values]), name)


@pytest.mark.parametrize("raw", ["q=%ff", "actor=%ED%A0%80", "filter=%C0%AE", "actor=%00", "limit=%35%00"])
def test_invalid_utf8_and_percent_in_query_string(api: Api, raw: str) -> None:
    """A query string that is not UTF-8 (or has a stray %, a NUL) is a 4xx JSON error naming the parameter."""
    r = requests.get(f"{api.svc.url}/v1/events?{raw}", headers=H(api.tok["read"]), timeout=30)
    err400(r, raw.split("=")[0])


def test_filterdata_q_is_text_not_like_pattern(api: Api) -> None:
    """filterdata's q= keeps the values *holding that text*: '_' and '%' are text, not SQL LIKE wildcards."""
    for q in ("_", "%", "a_b", "%%"):
        body = ok(api.get("/api/audit-logs/filterdata", [("q", q)]))
        for dim, values in body.items():
            for v in values:
                text = v if isinstance(v, str) else json.dumps(v)
                assert q.lower() in text.lower(), f"q={q!r}: {dim} gave {v!r}"


def test_filterdata_dimensions_empty_names(api: Api) -> None:
    """dimensions=,,, names no dimension: refused like an unknown one (not an empty answer that looks like 'no
    data')."""
    err400(api.get("/api/audit-logs/filterdata", [("dimensions", ",,,")]), "dimensions")


def test_filterdata_has_our_values(api: Api) -> None:
    """filterdata's initiators and request_ips hold the values we sent (those holding q)."""
    body = ok(api.get("/api/audit-logs/filterdata", [("dimensions", "initiators,request_ips,outcomes")]))
    ids = {i["id"] for i in body["initiators"]}
    assert {"alice", "bob", "=1+1", "comma,user"} <= ids, ids
    assert {"10.0.0.1", "2001:db8::1"} <= set(body["request_ips"]), body["request_ips"]
    assert {"success", "failure"} <= set(body["outcomes"])


def test_plural_empty_array_does_not_widen(api: Api) -> None:
    """actions=[] names no action: it is refused or matches nothing, never silently every event (docs: "an ignored
    filter would answer more than was asked")."""
    r = api.get("/api/audit-logs", [("actions", "[]"), ("limit", "1")])
    if r.status_code == 200:
        assert r.json()["total"] == 0, r.json()["total"]
    else:
        err400(r, "actions")


OUR_USERS = json.dumps(sorted(set(HOSTILE_USERS)))


def test_bifrost_pages_cover_exactly(api: Api) -> None:
    """Walking page=1..total_pages with limit=7 gives every matching event once; total equals an independent
    count; following next_cursor gives the same set."""
    q = [("initiator_ids", OUR_USERS)]
    want = sum(1 for s in api.sent if s["actor"] is not None)
    first = ok(api.get("/api/audit-logs", q + [("limit", "7")]))
    assert first["total"] == want, (first["total"], want)
    ids: list[str] = []
    for page in range(1, first["total_pages"] + 1):
        body = ok(api.get("/api/audit-logs", q + [("limit", "7"), ("page", str(page))]))
        ids += [e["id"] for e in body["audit_logs"]]
        assert body["has_more"] == (page < first["total_pages"]), body
    assert len(ids) == len(set(ids)) == want
    cur_ids: list[str] = []
    body = first
    while True:
        cur_ids += [e["id"] for e in body["audit_logs"]]
        if not body["next_cursor"]:
            break
        body = ok(api.get("/api/audit-logs", q + [("limit", "7"), ("cursor", body["next_cursor"])]))
    assert sorted(cur_ids) == sorted(ids)


def test_bifrost_plural_wins_and_singular(api: Api) -> None:
    """initiator_id=alice with initiator_ids=["bob"]: the plural wins (as in Bifrost)."""
    body = ok(api.get("/api/audit-logs", [("initiator_id", "alice"), ("initiator_ids", '["bob"]'), ("limit", "1000")]))
    assert body["total"] == sum(1 for s in api.sent if s["actor"] == "bob")
    assert {e["initiator"]["id"] for e in body["audit_logs"]} == {"bob"}


def test_bifrost_cadf_mapping_counts(api: Api) -> None:
    """event_type=control is our authorization events, action=deny the catalog events with CADF action deny,
    action=authenticate takes authenticate/login too: each total equals an independent count."""
    q = [("initiator_ids", OUR_USERS), ("limit", "1")]
    mineu = [s for s in api.sent if s["actor"] is not None]
    want = {"event_type=control": sum(1 for s in mineu if s["category"] == "authorization"),
            "event_type=activity": sum(1 for s in mineu if s["category"] == "authentication"),
            "action=deny": sum(1 for s in mineu if s["event"] == "authorization.permission.denied"),
            "action=evaluate": sum(1 for s in mineu if s["event"] == "authorization.model.accessed"),
            "action=authenticate": sum(1 for s in mineu if s["event"] == "authentication.login.failed"),
            "action=authenticate/login": sum(1 for s in mineu if s["event"] == "authentication.login.failed")}
    got = {}
    for k in want:
        name, value = k.split("=", 1)
        got[k] = ok(api.get("/api/audit-logs", q + [(name, value)]))["total"]
    assert got == want


def test_bifrost_end_date_inclusive(api: Api) -> None:
    """end_date=YYYY-MM-DD is the whole day (inclusive); start_date of tomorrow excludes today's events."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    yesterday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    q = [("initiator_ids", OUR_USERS), ("limit", "1")]
    n = sum(1 for s in api.sent if s["actor"] is not None)
    assert ok(api.get("/api/audit-logs", q + [("start_date", today), ("end_date", today)]))["total"] == n
    assert ok(api.get("/api/audit-logs", q + [("start_date", tomorrow)]))["total"] == 0
    assert ok(api.get("/api/audit-logs", q + [("end_date", yesterday)]))["total"] == 0
    assert ok(api.get("/api/audit-logs", q + [("period", "24h")]))["total"] == n


def test_cursor_reuse_across_routes(api: Api) -> None:
    """A /v1/events cursor given to /api/audit-logs (and back), or to /v1/facets, is a 400 naming cursor."""
    ev = ok(api.get("/v1/events", [("limit", "2")]))["next_cursor"]
    bf = ok(api.get("/api/audit-logs", [("limit", "2")]))["next_cursor"]
    assert ev and bf
    err400(api.get("/api/audit-logs", [("limit", "2"), ("cursor", ev)]), "cursor")
    err400(api.get("/v1/events", [("limit", "2"), ("cursor", bf)]), "cursor")
    err400(api.get("/v1/facets", [("cursor", ev)]), "cursor")
    # another query on the same route
    err400(api.get("/api/audit-logs", [("limit", "2"), ("outcome", "failure"), ("cursor", bf)]), "cursor")


def test_edited_cursor_reaches_nothing_outside_its_query(api: Api) -> None:
    """A cursor is a position, not a capability (docs/service.md §4): one whose position was edited (decoded,
    changed, re-encoded) only moves where the page starts; every event it returns still matches the query the
    cursor is bound to, and it cannot be moved to another query."""
    import base64
    cur = ok(api.get("/v1/events", [("actor", "alice"), ("limit", "2")]))["next_cursor"]
    assert cur
    doc = json.loads(base64.urlsafe_b64decode(cur + "=" * (-len(cur) % 4)))
    doc[-1] = [1, 1]
    forged = base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")
    r = api.get("/v1/events", [("actor", "alice"), ("limit", "50"), ("cursor", forged)])
    if r.status_code == 200:
        assert all(e["actor"] == "alice" for e in r.json()["events"]), r.json()["events"][:2]
    else:
        err400(r, "cursor")
    err400(api.get("/v1/events", [("actor", "bob"), ("limit", "2"), ("cursor", forged)]), "cursor")


def test_scopes_of_new_routes(api: Api) -> None:
    """Every route of the OpenAPI document: no token 401, a token without its scope 403, with it 200/404;
    the export needs audit:export (audit:read alone, ingest alone: 403)."""
    doc = ok(api.get("/v1/openapi.json", tok=None))
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method != "get":
                continue
            scope = op.get("x-scope")
            url = path.replace("{event_id}", api.producer.id(1))
            if not scope:
                assert api.get(url, tok=None).status_code == 200, path
                continue
            assert api.get(url, tok=None).status_code == 401, path
            assert api.get(url, tok="ingest").status_code == 403, path
            good = "readexport" if scope == "audit:export" else "read"
            assert api.get(url, tok=good).status_code in (200, 404), (path, scope)
            assert api.get(url, tok="admin").status_code in (200, 404), (path, scope)
            if scope == "audit:export":
                assert api.get(url, tok="read").status_code == 403, path
            if scope == "audit:read":
                assert api.get(url, tok="export").status_code == 403, (path, "audit:export alone reads")


def test_export_counts(api: Api) -> None:
    """The export in json, jsonl and csv holds exactly the matching events (an independent count), CSV neutralised."""
    q = [("initiator_ids", OUR_USERS)]
    want = sum(1 for s in api.sent if s["actor"] is not None)
    j = api.get("/api/audit-logs/export", q, tok="readexport")
    assert j.status_code == 200 and "attachment" in j.headers.get("content-disposition", ""), j.headers
    assert len(j.json()) == want
    jl = api.get("/api/audit-logs/export", q + [("format", "jsonl")], tok="readexport")
    assert len([ln for ln in jl.text.splitlines() if ln.strip()]) == want
    c = api.get("/api/audit-logs/export", q + [("format", "csv")], tok="readexport")
    rows = _csv_rows(c.text)
    assert len(rows) == want
    for row in rows:
        for col, v in row.items():
            assert not v.startswith(DANGEROUS), f"CSV injection in the export: {col} = {v!r}"


def test_export_cut_short_by_client(api: Api) -> None:
    """A client that reads a few bytes of the export and hangs up: the service lives on, answers the next
    request, and records a data_access.data.exported event for it."""
    host, port = api.svc.url.removeprefix("http://").rsplit(":", 1)
    before = len(all_events(api, [("action", "data_access.data.exported")]))
    for _ in range(3):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(f"GET /api/audit-logs/export?format=jsonl HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {api.tok['readexport']}\r\n\r\n".encode())
        s.recv(200)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    assert api.get("/healthz", tok=None).status_code == 200
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ex = all_events(api, [("action", "data_access.data.exported")])
        if len(ex) >= before + 3:
            break
        time.sleep(0.5)
    assert len(ex) >= before + 3, (before, len(ex))


def test_export_cut_short_counts_what_was_sent(tmp_path: Path, keyset: dict[str, Path],
                                              tokens: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """An export of ~12 MB that the client stops reading after 1 KB: the data_access.data.exported event's
    record_count says how many records were sent, which is fewer than all of them (docs: "also when the client
    stopped reading early")."""
    s = ServiceProcess(write_config(tmp_path, keyset["producer"], witness_keys=str(keyset["witness"]),
                                    tokens=[row for _t, row in tokens.values()]))
    tok = {k: t for k, (t, _row) in tokens.items()}
    with s:
        big = "x" * 4000
        for k in range(6):
            recs = [plain_record(f"big-{k}-{i} {big}") for i in range(500)]
            r = s.post_json(unsigned_request("bulk", recs), **H(tok["ingest"]))
            assert r.status_code == 200 and r.json() == {}, r.text[:300]
        host, port = s.url.removeprefix("http://").rsplit(":", 1)
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect((host, int(port)))
        c.sendall(f"GET /api/audit-logs/export?format=jsonl HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {tok['readexport']}\r\n\r\n".encode())
        c.recv(1024)
        time.sleep(1)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
        deadline = time.monotonic() + 30
        ex: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not ex:
            ex = s.events({"action": "data_access.data.exported"}, **H(tok["read"]))
            time.sleep(0.5)
        assert ex, "no data_access.data.exported event for the cut-short export"
        n = ex[0]["attributes"].get("audit.export.record_count")
        assert isinstance(n, int) and n < 3000, ex[0]["attributes"]
        assert s.get("/healthz").status_code == 200


def test_openapi_documents_every_route_and_parameter(api: Api) -> None:
    """The served document has every route of docs/service.md and every parameter the tables name."""
    doc = ok(api.get("/v1/openapi.json", tok=None))
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for p in ("/v1/logs", "/v1/events", "/v1/events/{event_id}", "/v1/events/{event_id}/proof", "/v1/facets",
              "/v1/streams", "/v1/checkpoints", "/v1/findings", "/healthz", "/api/audit-logs",
              "/api/audit-logs/{event_id}", "/api/audit-logs/{event_id}/verify", "/api/audit-logs/filterdata",
              "/api/audit-logs/export"):
        assert p in paths, p
    names = {x["name"] for x in paths["/v1/events"]["get"]["parameters"]}
    assert {"actor", "user", "category", "outcome", "target.type", "target.id", "service", "stream", "session",
            "trace", "action", "client.address", "from", "to", "q", "status", "filter", "order", "limit", "cursor",
            "format"} <= names
    # a parameter the API takes but docs/service.md does not describe
    undocumented = names - {"actor", "user", "category", "outcome", "target.type", "target.id", "service", "stream",
                            "session", "trace", "action", "client.address", "from", "to", "q", "status", "filter",
                            "order", "limit", "cursor", "format"}
    docs = (Path(__file__).parent.parent / "docs" / "service.md").read_text()
    for n in undocumented:
        assert f"`{n}`" in docs, f"/v1/events takes {n!r}, which docs/service.md does not describe"


def test_openapi_enum_values_accepted(api: Api) -> None:
    """Every enum value the document lists for a /v1/events parameter is accepted by the service."""
    doc = ok(api.get("/v1/openapi.json", tok=None))
    for prm in doc["paths"]["/v1/events"]["get"]["parameters"]:
        sch = prm.get("schema", {})
        for v in sch.get("enum", []) + sch.get("items", {}).get("enum", []):
            r = api.get("/v1/events", [(prm["name"], str(v)), ("limit", "1")])
            assert r.status_code == 200, (prm["name"], v, r.text[:200])


def test_bifrost_verify_valid(api: Api) -> None:
    """/verify of a proven event: valid, computed == stored == the event's digest; of an unsigned-at-source record
    signed at ingest: valid with the service's key; of a missing id: 404."""
    v = ok(api.get(f"/api/audit-logs/{api.producer.id(3)}/verify"))
    assert v["valid"] is True and v["computed"] == v["stored"], v
    ev = ok(api.get(f"/v1/events/{api.producer.id(3)}"))
    assert v["stored"] == ev["digest"]
    assert api.get("/api/audit-logs/nope-1/verify").status_code == 404


# == 2. otel-audit query ===========================================================================


def run_query(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_AUDIT_")}
    e.update(env or {})
    return subprocess.run([CLI, "query", *args], capture_output=True, text=True, timeout=timeout, env=e)


def one_line_exit2(r: subprocess.CompletedProcess[str], *secrets: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout[-500:], r.stderr[-1500:])
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for s in secrets:
        assert s not in r.stdout + r.stderr


@pytest.fixture(scope="module")
def token_files(api: Api, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("toks")
    out = {}
    for k, t in api.tok.items():
        (d / k).write_text(t + "\n")
        out[k] = d / k
    return out


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1:1", "http://[::1", "http://127.0.0.1:1",
                                 "http://256.0.0.1:80", "127.0.0.1:4318", "http://127.0.0.1:99999", ""])
def test_query_bad_url(url: str, token_files: dict[str, Path], api: Api) -> None:
    """A bad or unreachable URL is one line on stderr and exit 2; the token is never printed."""
    one_line_exit2(run_query("--url", url, "--token-file", str(token_files["read"]), timeout=60), api.tok["read"])


def test_query_service_down(tmp_path: Path, keyset: dict[str, Path], token_files: dict[str, Path], api: Api) -> None:
    """A service that stops: one line on stderr, exit 2."""
    s = ServiceProcess(write_config(tmp_path, keyset["producer"]))
    s.start()
    url = s.url
    s.stop()
    one_line_exit2(run_query("--url", url, "--token-file", str(token_files["read"])), api.tok["read"])


@pytest.mark.parametrize("which,code", [(None, "401"), ("ingest", "403"), ("export", "403")])
def test_query_401_403(api: Api, token_files: dict[str, Path], which: str | None, code: str) -> None:
    """No token, an ingest token, an export-only token: one line, exit 2, the token never shown."""
    args = ["--url", api.svc.url] + (["--token-file", str(token_files[which])] if which else [])
    r = run_query(*args)
    one_line_exit2(r, *api.tok.values())


def test_query_token_file_problems(api: Api, tmp_path: Path) -> None:
    """A missing, empty, directory, binary or unreadable token file: one line, exit 2."""
    empty = tmp_path / "empty"
    empty.write_text("")
    binary = tmp_path / "bin"
    binary.write_bytes(b"\xff\xfe\x00oa_x")
    unreadable = tmp_path / "unreadable"
    unreadable.write_text(api.tok["read"])
    unreadable.chmod(0)
    two = tmp_path / "two"
    two.write_text(api.tok["read"] + "\nsecond line\n")
    bearer = tmp_path / "bearer"
    bearer.write_text("Bearer " + api.tok["read"] + "\n")
    wrong = tmp_path / "wrong"
    wrong.write_text(api.tok["read"][:-2] + "zz\n")
    for f in (tmp_path / "missing", empty, tmp_path, binary, two, bearer, wrong):
        one_line_exit2(run_query("--url", api.svc.url, "--token-file", str(f)), api.tok["read"],
                       api.tok["read"][:-2] + "zz")
    if os.geteuid() != 0:
        one_line_exit2(run_query("--url", api.svc.url, "--token-file", str(unreadable)), api.tok["read"])


def test_query_env_token_and_400(api: Api, token_files: dict[str, Path]) -> None:
    """$OTEL_AUDIT_TOKEN works; a refused query is one line with the server's message naming the parameter."""
    r = run_query("--url", api.svc.url, "--stream", api.producer.stream, "--limit", "3",
                  env={"OTEL_AUDIT_TOKEN": api.tok["read"]})
    assert r.returncode == 0, r.stderr
    r = run_query("--url", api.svc.url, "--token-file", str(token_files["read"]), "--client-address", "999.1.1.1")
    one_line_exit2(r, api.tok["read"])
    assert "client.address" in r.stderr
    r = run_query("--url", api.svc.url, "--token-file", str(token_files["read"]), "--from", "9999-12-31T23:59:59-23:59")
    one_line_exit2(r, api.tok["read"])
    for lim in ("0", "1001", "x"):
        r = run_query("--url", api.svc.url, "--token-file", str(token_files["read"]), "--limit", lim)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


def test_query_all_pipe_ndjson(api: Api, token_files: dict[str, Path]) -> None:
    """--all --limit 4 into a pipe: JSON lines only on stdout, every event of the stream once."""
    r = run_query("--url", api.svc.url, "--token-file", str(token_files["read"]), "--stream", api.producer.stream,
                  "--limit", "4", "--all")
    assert r.returncode == 0, r.stderr
    evs = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
    ids = [e["id"] for e in evs]
    assert len(ids) == len(set(ids)) == len(api.sent), (len(ids), len(set(ids)), len(api.sent))
    assert api.tok["read"] not in r.stdout + r.stderr


def test_query_all_csv_one_header(api: Api, token_files: dict[str, Path]) -> None:
    """--all --format csv over many pages: one header line, every row once, neutralised."""
    r = run_query("--url", api.svc.url, "--token-file", str(token_files["read"]), "--stream", api.producer.stream,
                  "--limit", "5", "--all", "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("id,time,event,") == 1, r.stdout[:3000]
    rows = _csv_rows(r.stdout)
    for row in rows:
        for col, v in row.items():
            assert not v.startswith(DANGEROUS), f"CSV injection from otel-audit query: {col} = {v!r}"
    assert len(rows) == len(api.sent)
    assert len({row["id"] for row in rows}) == len(api.sent)


def test_query_all_json_one_document(api: Api, token_files: dict[str, Path]) -> None:
    """--all --format json over many pages: one JSON document holding every event."""
    r = run_query("--url", api.svc.url, "--token-file", str(token_files["read"]), "--stream", api.producer.stream,
                  "--limit", "5", "--all", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    evs = doc["events"] if isinstance(doc, dict) else doc
    assert len({e["id"] for e in evs}) == len(api.sent)


def test_query_cursor_continues(api: Api, token_files: dict[str, Path]) -> None:
    """Without --all, the 'more' hint goes to stderr (stdout stays JSON lines) and --cursor goes on without overlap."""
    base = ["--url", api.svc.url, "--token-file", str(token_files["read"]), "--stream", api.producer.stream,
            "--limit", "5"]
    r = run_query(*base)
    assert r.returncode == 0, r.stderr
    first = [json.loads(ln)["id"] for ln in r.stdout.splitlines() if ln.strip()]
    m = re.search(r"--cursor (\S+)", r.stderr)
    assert m, (r.stdout[-300:], r.stderr)
    r2 = run_query(*base, "--cursor", m.group(1))
    assert r2.returncode == 0, r2.stderr
    second = [json.loads(ln)["id"] for ln in r2.stdout.splitlines() if ln.strip()]
    assert len(first) == len(second) == 5 and not set(first) & set(second)


def test_query_order_ingest_all_ends(api: Api, token_files: dict[str, Path]) -> None:
    """--order ingest --all: the polling mode always gives a next cursor, yet --all ends at the last page."""
    r = run_query("--url", api.svc.url, "--token-file", str(token_files["read"]), "--stream", api.producer.stream,
                  "--order", "ingest", "--limit", "7", "--all", timeout=60)
    assert r.returncode == 0, r.stderr
    ids = [json.loads(ln)["id"] for ln in r.stdout.splitlines() if ln.strip()]
    assert len(ids) == len(set(ids)) == len(api.sent)
    assert ids == [api.producer.id(k) for k in range(len(api.sent))]


class _Fake:
    """A tiny HTTP server on a loopback port answering every request with one canned response; it records the
    requests' headers."""

    def __init__(self, status: int, body: bytes, ctype: str = "application/json", extra: str = "") -> None:
        import http.server
        import threading
        fake = self
        self.seen: list[dict[str, str]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                fake.seen.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                for ln in filter(None, extra.split("\n")):
                    k, v = ln.split(": ", 1)
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("status,body,ctype", [
    (502, b"<html><body>Bad Gateway</body></html>", "text/html"),
    (200, b"<html>not json</html>", "text/html"),
    (200, b'{"unexpected": true}', "application/json"),
    (200, b'{"events": "nope", "next_cursor": 5}', "application/json"),
    (500, b'{"error": {"status": 500}}', "application/json"),
    (200, b'{"events": [{"id": 1}], "next_cursor": null}', "application/json")])
def test_query_against_odd_servers(status: int, body: bytes, ctype: str, api: Api, token_files: dict[str, Path]
                                   ) -> None:
    """A proxy's HTML error page, a body that is not the API's, a 500: one line on stderr, exit 2 (or 0 for a
    well-formed answer), never a traceback, never the token."""
    f = _Fake(status, body, ctype)
    try:
        r = run_query("--url", f.url, "--token-file", str(token_files["read"]), "--all")
    finally:
        f.close()
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert api.tok["read"] not in r.stdout + r.stderr
    assert r.returncode in (0, 2), r
    if r.returncode == 2:
        assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr


def test_query_redirect_does_not_leak_token(api: Api, token_files: dict[str, Path]) -> None:
    """A redirect to another origin (another port) never carries the bearer token there."""
    other = _Fake(200, b'{"events": [], "next_cursor": null, "count": 0, "streams": []}')
    first = _Fake(302, b"", "text/plain", extra=f"Location: {other.url}/v1/events")
    try:
        run_query("--url", first.url, "--token-file", str(token_files["read"]))
    finally:
        first.close()
        other.close()
    assert first.seen, "the CLI did not call the service"
    assert all(api.tok["read"] not in json.dumps(h) for h in other.seen), other.seen


def test_query_looping_cursor_ends(api: Api, token_files: dict[str, Path]) -> None:
    """A server that hands back the same next_cursor forever: --all does not loop forever (it stops with an error
    or at the repeat) within the timeout."""
    f = _Fake(200, b'{"events": [], "next_cursor": "c1", "count": 0, "streams": []}')
    try:
        r = run_query("--url", f.url, "--token-file", str(token_files["read"]), "--all", timeout=60)
    finally:
        f.close()
    assert "Traceback" not in r.stderr and r.returncode in (0, 2), r.stderr[-1000:]


def test_query_terminal_table(api: Api, token_files: dict[str, Path]) -> None:
    """On a terminal the default is a table (not JSON), with the hostile values shown, not run: no raw control
    characters (a CR or ESC from an attacker's user name must not rewrite the terminal)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_AUDIT_")}
    env["COLUMNS"] = "200"
    master, slave = pty.openpty()
    p = subprocess.Popen([CLI, "query", "--url", api.svc.url, "--token-file", str(token_files["read"]),
                          "--stream", api.producer.stream, "--limit", "30"], stdin=slave, stdout=slave, stderr=slave,
                         env=env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    p.wait(timeout=30)
    os.close(master)
    text = out.decode(errors="replace")
    assert p.returncode == 0, text[-1000:]
    assert not text.lstrip().startswith("{"), text[:300]
    assert api.tok["read"] not in text
    for line in text.split("\r\n"):
        assert "\r" not in line and "\x1b" not in line and "\t" not in line, repr(line[:200])


def test_query_token_never_in_outputs(api: Api, token_files: dict[str, Path]) -> None:
    """Across formats and errors the token is in no output, nor in the service's log, nor in the audit events of
    the service's own stream (db.query.text)."""
    t = api.tok["read"]
    for fmt in ("json", "ndjson", "csv", "table"):
        r = run_query("--url", api.svc.url, "--token-file", str(token_files["read"]), "--limit", "50", "--format", fmt)
        assert r.returncode == 0 and t not in r.stdout + r.stderr, fmt
    r = run_query("--url", api.svc.url, "--token-file", str(token_files["read"]), "--filter", t)
    assert t not in r.stderr or "filter" in r.stderr  # the user's own filter text may be echoed
    assert t not in api.svc.log.read_text(errors="replace")
    own = all_events(api, [("service", "otel-audit-service")])
    assert not any(t in json.dumps(e) for e in own if "filter" not in json.dumps(e))


# == 3. a forger against signing at ingest =========================================================


def make_sign_service(folder: Path, keyset: dict[str, Path], **extra: Any) -> ServiceProcess:
    folder.mkdir(parents=True, exist_ok=True)
    extra.setdefault("witness_keys", str(keyset["witness"]))
    return ServiceProcess(write_config(folder, keyset["producer"], **extra))


@pytest.fixture
def ssvc(tmp_path: Path, keyset: dict[str, Path]):
    s = make_sign_service(tmp_path / "sign", keyset, sign_at_ingest={"enabled": True, "checkpoint_every": 5,
                                                                      "checkpoint_interval": "1s"})
    with s:
        yield s


def events_of(s: ServiceProcess, **params: str) -> list[dict[str, Any]]:
    return s.events(params)


def rejected(r: requests.Response) -> int:
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        return -1
    return int(r.json().get("partialSuccess", {}).get("rejectedLogRecords", 0))


def ingest_streams(s: ServiceProcess) -> list[dict[str, Any]]:
    return [st for st in s.get("/v1/streams").json()["streams"] if st["signed"] == "at ingest"]


def verify_store(s: ServiceProcess, keyset: dict[str, Path], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "verify", "--keys", str(keyset["both"]), "--witness-keys", str(keyset["witness"]),
                           "--store", f"sqlite:///{s.config.parent / 'audit.db'}", "--allow-open", *extra],
                          capture_output=True, text=True, timeout=180)


ODD_INTEGRITY: list[tuple[str, dict[str, Any]]] = [
    ("audit.signed_by", {"stringValue": "ingest"}),
    ("audit.signed_by", {"stringValue": "source"}),
    ("audit.signed_by", {"intValue": "1"}),
    ("audit.signed_by", {"stringValue": ""}),
    ("audit.signed_by", {}),
    ("audit.integrity.digest", {"stringValue": "00" * 32}),
    ("audit.integrity.digest", {"intValue": "0"}),
    ("audit.integrity.digest", {"arrayValue": {"values": []}}),
    ("audit.integrity.prev", {"stringValue": ""}),
    ("audit.stream.seq", {"stringValue": "0"}),
    ("audit.stream.seq", {"intValue": "-1"}),
    ("audit.stream.id", {"stringValue": ""}),
    ("audit.stream.id", {"kvlistValue": {"values": []}}),
]


@pytest.mark.parametrize("key,value", ODD_INTEGRITY, ids=[f"{k}={json.dumps(v)[:30]}" for k, v in ODD_INTEGRITY])
def test_unsigned_with_odd_integrity_attrs_refused(ssvc: ServiceProcess, key: str, value: dict[str, Any]) -> None:
    """An unsigned record claiming to be signed (at ingest, or at source with stray integrity attributes of odd
    values) is refused, never stored, never shown signed."""
    rec = plain_record("forged-claim")
    rec["attributes"].append({"key": key, "value": value})
    r = ssvc.post_json(unsigned_request("forger", [rec]))
    assert rejected(r) in (1, -1), r.text
    assert events_of(ssvc, q="forged-claim") == []
    assert ssvc.get("/healthz").status_code == 200


def test_unsigned_naming_service_stream_refused(ssvc: ServiceProcess) -> None:
    """A record naming a stream the service signs (its id, a seq past the head, prev/digest of the right shape) is
    refused: it never joins that stream."""
    r = ssvc.post_json(unsigned_request("victim", [plain_record("victim-1")]))
    assert rejected(r) == 0
    sid = events_of(ssvc, q="victim-1")[0]["stream"]["id"]
    for seq in (1, 2, 100):
        rec = plain_record(f"intruder-{seq}")
        rec["attributes"] += [{"key": "audit.stream.id", "value": {"stringValue": sid}},
                              {"key": "audit.stream.seq", "value": {"intValue": str(seq)}},
                              {"key": "audit.integrity.prev", "value": {"stringValue": "00" * 32}},
                              {"key": "audit.integrity.digest", "value": {"stringValue": "11" * 32}}]
        r = ssvc.post_json(unsigned_request("victim", [rec]))
        assert rejected(r) in (1, -1), r.text
    assert events_of(ssvc, q="intruder") == []
    st = [s for s in ingest_streams(ssvc) if s["id"] == sid][0]
    assert st["failed"] == 0 and st["linked"] == st["records"], st


def test_signed_at_source_claiming_ingest_refused(ssvc: ServiceProcess, keyset: dict[str, Path]) -> None:
    """A producer with a valid key that signs audit.signed_by=ingest into its records is refused: no stored record
    of a stream signed at source says 'at ingest'."""
    p = Producer(load_signer(keyset["producer"]), service="liar")
    p.event(**{"audit.signed_by": "ingest", "body": "liar-1"})
    p.checkpoint("end")
    ssvc.post_json(p.request())
    for e in events_of(ssvc, stream=p.stream):
        assert e["signed"] == "at source" or e["body"] != "liar-1", e
        assert not (e["body"] == "liar-1" and e["status"] == "proven"), e


def test_signed_producer_writing_into_service_stream(ssvc: ServiceProcess, keyset: dict[str, Path]) -> None:
    """A producer with a valid key that reuses a service-side stream id (its own records, its own checkpoints) is
    refused: the service's stream is not forked, and nothing of it is shown signed at ingest."""
    ssvc.post_json(unsigned_request("victim2", [plain_record(f"v2-{i}") for i in range(3)]))
    sid = events_of(ssvc, q="v2-0")[0]["stream"]["id"]
    p = Producer(load_signer(keyset["producer"]), stream=sid, service="victim2")
    for i in range(3):
        p.event(body=f"hijack-{i}")
    p.checkpoint("end")
    ssvc.post_json(p.request())
    assert events_of(ssvc, q="hijack") == [], "a signed producer wrote into the service's stream"
    st = [s for s in ingest_streams(ssvc) if s["id"] == sid][0]
    assert st["failed"] == 0, st


def test_resource_level_signed_by_not_trusted(ssvc: ServiceProcess) -> None:
    """audit.signed_by set on the resource (not the record) does not make anything look signed by the service
    beyond what the service itself signed: the record is refused, or stored signed at ingest with the claim kept
    aside; either way its resource is not shown as the service's."""
    r = ssvc.post_json(unsigned_request("resclaim", [plain_record("resclaim-1")],
                                        extra_resource={"audit.signed_by": {"stringValue": "ingest"}}))
    n = rejected(r)
    evs = events_of(ssvc, q="resclaim-1")
    assert (n == 1 and not evs) or (n == 0 and len(evs) == 1), (n, evs)


def test_producer_identity_no_collision(ssvc: ServiceProcess) -> None:
    """Different identities never share a service-side stream, however their parts are spelled: namespace/name/
    instance values that would join to the same string land in different streams."""
    idents = [dict(namespace="a/b", service="c"), dict(namespace="a", service="b/c"),
              dict(namespace=None, service="a/b/c"), dict(service="x", instance="y/z"),
              dict(service="x/y", instance="z"), dict(service="n\x00m", instance=None),
              dict(service="", instance="n"), dict(service="n", instance="")]
    for k, ident in enumerate(idents):
        r = ssvc.post_json(unsigned_request(ident.get("service"), [plain_record(f"ident-{k}")],
                                            namespace=ident.get("namespace"), instance=ident.get("instance")))
        assert rejected(r) == 0, r.text
    sids = [events_of(ssvc, q=f"ident-{k}")[0]["stream"]["id"] for k in range(len(idents))]
    assert len(set(sids)) == len(idents), list(zip(idents, sids, strict=True))


def test_race_one_producer_no_fork(ssvc: ServiceProcess, keyset: dict[str, Path]) -> None:
    """60 concurrent requests of 3 unsigned records for one producer: one chain, no hole or fork, every record once,
    checkpoints cover them; verify --store VERIFIED."""
    def send(i: int) -> int:
        body = unsigned_request("racer", [plain_record(f"race-{i}-{j}") for j in range(3)], instance="r1")
        for _ in range(20):
            r = requests.post(ssvc.url + "/v1/logs", data=body, headers={"Content-Type": "application/json"},
                              timeout=60)
            if r.status_code == 200:
                assert r.json() == {}, r.text
                return 3
            assert r.status_code == 503, r.text
            time.sleep(0.2)
        return 0

    with concurrent.futures.ThreadPoolExecutor(12) as ex:
        assert sum(ex.map(send, range(60))) == 180
    time.sleep(2.5)  # checkpoint_interval 1s
    streams = [s for s in ingest_streams(ssvc) if s["service"] == "racer"]
    assert len(streams) == 1, streams
    st = streams[0]
    evs = events_of(ssvc, stream=st["id"])
    seqs = sorted(e["stream"]["seq"] for e in evs)
    assert seqs == list(range(len(seqs))), "hole in the chain"
    bodies = [e["body"] for e in evs if e["event"] != "audit.checkpoint"]
    assert sorted(bodies) == sorted(f"race-{i}-{j}" for i in range(60) for j in range(3))
    assert st["linked"] == st["records"] == len(evs) and st["failed"] == 0, st
    assert ssvc.get("/v1/findings").json()["findings"] == []
    ssvc.stop()
    r = verify_store(ssvc, keyset)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-1000:]
    assert "signed at ingest" in r.stdout


def test_kill9_mid_flood_then_restart(tmp_path: Path, keyset: dict[str, Path]) -> None:
    """kill -9 while 6 clients send unsigned records for two producers; restart, send more, stop: every
    acknowledged record is stored once, each producer's chain has no hole or fork, verify --store VERIFIED."""
    s = make_sign_service(tmp_path / "k9", keyset, sign_at_ingest={"enabled": True, "checkpoint_every": 7,
                                                                    "checkpoint_interval": "1s"})
    acked: set[str] = set()
    stop = [False]

    def send(i: int) -> None:
        if stop[0]:
            return
        body = f"k9-{i}"
        try:
            r = requests.post(s.url + "/v1/logs", data=unsigned_request(f"p{i % 2}", [plain_record(body)]),
                              headers={"Content-Type": "application/json"}, timeout=10)
            if r.status_code == 200 and r.json() == {}:
                acked.add(body)
        except requests.RequestException:
            pass

    with s, concurrent.futures.ThreadPoolExecutor(6) as ex:
        futs = [ex.submit(send, i) for i in range(600)]
        time.sleep(1.5)
        s.kill()
        stop[0] = True
        for f in futs:
            f.result()
    assert acked
    s.start()
    try:
        for i in range(600, 620):
            r = s.post_json(unsigned_request(f"p{i % 2}", [plain_record(f"k9-{i}")]))
            assert r.status_code == 200 and r.json() == {}, r.text
            acked.add(f"k9-{i}")
        time.sleep(2.5)
        per_producer = Counter(st["service"] for st in ingest_streams(s))
        assert per_producer == {"p0": 1, "p1": 1}, per_producer  # after a crash the stream goes on, no new one
        stored = Counter(e["body"] for e in s.events({"q": "k9"}) if e["event"] != "audit.checkpoint")
        assert acked <= set(stored), sorted(acked - set(stored))[:10]
        assert all(c == 1 for c in stored.values()), [b for b, c in stored.items() if c > 1][:10]
        for st in ingest_streams(s):
            evs = s.events({"stream": st["id"]})
            seqs = sorted(e["stream"]["seq"] for e in evs)
            assert seqs == list(range(len(seqs))), (st["id"], seqs[:5], len(seqs))
            assert st["failed"] == 0 and st["linked"] == st["records"], st
        assert s.get("/v1/findings").json()["findings"] == []
    finally:
        s.stop()
    r = verify_store(s, keyset)
    assert r.returncode == 0, r.stdout[-2500:] + r.stderr[-1000:]


def test_verify_without_service_key_not_verified(ingest_store: tuple[ServiceProcess, str],
                                                 keyset: dict[str, Path]) -> None:
    """verify --store with the producers' keyring only (not the service's): a stream signed at ingest cannot be
    proven, so the store is not VERIFIED; with another key as witness, the cosignatures fail."""
    s, _sid = ingest_store
    r = subprocess.run([CLI, "verify", "--keys", str(keyset["producer"]), "--store",
                        f"sqlite:///{s.config.parent / 'audit.db'}", "--allow-open"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0, r.stdout[-1500:]
    rogue = s.config.parent.parent / "rogue-witness"
    keys_mod.generate(rogue, "witness")
    r = subprocess.run([CLI, "verify", "--keys", str(keyset["both"]), "--witness-keys", str(rogue), "--store",
                        f"sqlite:///{s.config.parent / 'audit.db'}", "--allow-open"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0, r.stdout[-1500:]


def test_forged_unsigned_checkpoint_proves_nothing(ssvc: ServiceProcess, keyset: dict[str, Path]) -> None:
    """An unsigned record shaped as a checkpoint of a service-side stream (event audit.checkpoint, a note body
    naming the stream and the service's producer line) never appears in /v1/checkpoints, and it does not poison the
    stream the service signs for that producer: no failed record there, and verify --store of the clean store is
    VERIFIED (it is refused, or stored as an ordinary record)."""
    ssvc.post_json(unsigned_request("cpvictim", [plain_record("cp-0")]))
    sid = events_of(ssvc, q="cp-0")[0]["stream"]["id"]
    note = (f"otel-audit-ingest/{sid}\n5\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nchain "
            f"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntime 1\nkind size\n"
            'producer {"audit.signed_by":"ingest","service.name":"cpvictim"}\n\n\u2014 witness AAAA\n')
    rec = plain_record(note)
    rec["eventName"] = "audit.checkpoint"
    rec["attributes"] += [{"key": "audit.category", "value": {"stringValue": "integrity"}},
                          {"key": "audit.checkpoint.kind", "value": {"stringValue": "size"}},
                          {"key": "audit.checkpoint.size", "value": {"intValue": "5"}}]
    ssvc.post_json(unsigned_request("cpvictim", [rec]))
    cps = ssvc.get("/v1/checkpoints").json()
    assert "Zm9yZ2VkLXNpZw" not in json.dumps(cps), "the forged note is listed as a checkpoint"
    r = ssvc.post_json(unsigned_request("cpvictim", [plain_record("cp-after")]))
    assert rejected(r) == 0, r.text
    time.sleep(2)
    st = [x for x in ingest_streams(ssvc) if x["id"] == sid][0]
    fnd = ssvc.get("/v1/findings").json()["findings"]
    assert st["failed"] == 0 and st["proven"] == st["records"], (st, fnd)
    ssvc.stop()
    r = verify_store(ssvc, keyset)
    assert r.returncode == 0, r.stdout[-2000:]


def test_clean_restart_links_streams(tmp_path: Path, keyset: dict[str, Path]) -> None:
    """SIGTERM, restart, more records of the same producer: a new stream whose start names the ended one; both
    proven, verify --store VERIFIED without --partial."""
    s = make_sign_service(tmp_path / "rs", keyset, sign_at_ingest={"enabled": True, "checkpoint_every": 3,
                                                                    "checkpoint_interval": "1s"})
    for run in range(3):
        with s:
            for i in range(4):
                r = s.post_json(unsigned_request("restarter", [plain_record(f"rs-{run}-{i}")], instance="i1"))
                assert r.status_code == 200 and r.json() == {}, r.text
    with s:
        streams = [st for st in ingest_streams(s) if st["service"] == "restarter"]
        assert len(streams) == 3, streams
        assert all(st["state"] == "closed" and st["failed"] == 0 and st["proven"] == st["records"]
                   for st in streams), streams
        bodies = sorted(e["body"] for st in streams for e in s.events({"stream": st["id"]})
                        if e["event"] != "audit.checkpoint")
        assert bodies == sorted(f"rs-{run}-{i}" for run in range(3) for i in range(4))
    r = verify_store(s, keyset)
    assert r.returncode == 0, r.stdout[-2500:]


def test_config_path_with_dollar_is_literal(tmp_path: Path, keyset: dict[str, Path]) -> None:
    """service.yaml paths are paths (docs/service.md §1: relative to the file's folder): a folder named with a
    '$' is not expanded as an environment variable."""
    d = tmp_path / "k$HOME"
    shutil.copytree(keyset["producer"], d)
    s = ServiceProcess(write_config(tmp_path, d))
    s.start()
    s.stop()


def _edit(db: Path, sql: str, *args: Any) -> None:
    con = sqlite3.connect(db)
    try:
        for (t,) in con.execute("select name from sqlite_master where type='trigger'").fetchall():
            con.execute(f'drop trigger "{t}"')
        con.execute(sql, args)
        con.commit()
    finally:
        con.close()


@pytest.fixture(scope="module")
def ingest_store_pristine(tmp_path_factory: pytest.TempPathFactory, keyset: dict[str, Path]) -> tuple[Path, str]:
    """A stopped service's folder whose store holds a clean signed-at-ingest stream of 12 records; verify --store
    VERIFIED on it. Tests edit copies of it."""
    s = make_sign_service(tmp_path_factory.mktemp("ist") / "svc", keyset,
                          sign_at_ingest={"enabled": True, "checkpoint_every": 4, "checkpoint_interval": "1s"})
    with s:
        for i in range(12):
            assert s.post_json(unsigned_request("edit-me", [plain_record(f"row-{i}", **{"user.id": "carol"})])
                               ).status_code == 200
        time.sleep(2)
        sid = s.events({"q": "row-0"})[0]["stream"]["id"]
    r = verify_store(s, keyset)
    assert r.returncode == 0, r.stdout[-2000:]
    return s.config.parent, sid


@pytest.fixture
def ingest_store(ingest_store_pristine: tuple[Path, str], tmp_path: Path) -> tuple[ServiceProcess, str]:
    folder, sid = ingest_store_pristine
    copy = tmp_path / "svc"
    shutil.copytree(folder, copy)
    return ServiceProcess(copy / "service.yaml"), sid


@pytest.mark.parametrize("column,value", [("user_id", "mallory"), ("actor", "mallory"), ("signed", "source"),
                                          ("body", '"row-X"'), ("outcome", "failure")])
def test_insider_edit_of_ingest_row_named(ingest_store: tuple[ServiceProcess, str], keyset: dict[str, Path],
                                          column: str, value: str) -> None:
    """An insider edits one column of a signed-at-ingest row in the SQLite file: verify --store fails naming it."""
    s, sid = ingest_store
    db = s.config.parent / "audit.db"
    _edit(db, f"update events set {column} = ? where id = ?", value, f"{sid}-3")
    r = verify_store(s, keyset)
    assert r.returncode == 1, r.stdout[-1500:]
    assert f"{sid}-3" in r.stdout + r.stderr or (sid in r.stdout and "seq 3" in r.stdout), r.stdout[-1500:]


def test_insider_edits_ingest_checkpoint_and_tail(ingest_store: tuple[ServiceProcess, str],
                                                 keyset: dict[str, Path]) -> None:
    """An insider changes a checkpoints row's root of a signed-at-ingest stream, or deletes its newest event row:
    verify --store fails naming the stream."""
    s, sid = ingest_store
    db = s.config.parent / "audit.db"
    _edit(db, "update checkpoints set root = ?2 where stream_id = ?1 and size = (select min(size) from checkpoints "
              "where stream_id = ?1 and size > 0)", sid, b"\x00" * 32)
    r = verify_store(s, keyset)
    assert r.returncode == 1 and sid in r.stdout + r.stderr, r.stdout[-1500:]


def test_insider_deletes_ingest_tail(ingest_store: tuple[ServiceProcess, str], keyset: dict[str, Path]) -> None:
    s, sid = ingest_store
    db = s.config.parent / "audit.db"
    _edit(db, "delete from events where id = (select id from events where stream_id = ? "
              "order by stream_seq desc limit 1)", sid)
    r = verify_store(s, keyset)
    assert r.returncode == 1 and sid in r.stdout + r.stderr, r.stdout[-1500:]


def test_insider_marks_unsigned_row_as_ingest(tmp_path: Path, keyset: dict[str, Path]) -> None:
    """With signing at ingest off, an unsigned row flipped to signed='ingest' in the file is named by verify."""
    s = make_sign_service(tmp_path / "flip", keyset, sign_at_ingest=False)
    with s:
        assert s.post_json(unsigned_request("plainer", [plain_record("flip-me")])).status_code == 200
        eid = s.events({"q": "flip-me"})[0]["id"]
    _edit(s.config.parent / "audit.db", "update events set signed = 'ingest' where id = ?", eid)
    r = verify_store(s, keyset, "--ignore-unsigned")
    assert r.returncode == 1, r.stdout[-1500:]
    assert eid in r.stdout + r.stderr


# == 4. the demo ====================================================================================


def run_demo(out: Path, *extra: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "demo", "--out", str(out), *extra], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


def printed_commands(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.startswith("  ") and CLI in ln]


def run_printed(cmd: str, url: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    if url:
        cmd = cmd.replace(" URL ", f" {shlex.quote(url)} ")
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=timeout)


def _check_demo_commands(out: str) -> None:
    cmds = printed_commands(out)
    assert any(" verify " in c for c in cmds) and any(" serve " in c for c in cmds), out[-2000:]
    serve = next(c for c in cmds if " serve " in c)
    for c in cmds:
        if " verify " in c:
            r = run_printed(c)
            assert r.returncode == 0, (c, r.stdout[-1500:], r.stderr[-1500:])
    # the service, as printed, on the same store
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"demo-serve-{os.getpid()}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(["bash", "-c", "exec " + serve], stdout=fh, stderr=subprocess.STDOUT)
    try:
        url = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and url is None:
            m = re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
            url = m.group(1) if m else None
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.1)
        assert url, log.read_text()[-2000:]
        for c in cmds:
            if " query " in c or " prove " in c:
                r = run_printed(c, url)
                assert r.returncode == 0, (c, r.stdout[-1500:], r.stderr[-1500:])
                assert r.stdout.strip(), c
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    for c in cmds:
        if " verify " in c and "--store" in c:
            r = run_printed(c)
            assert r.returncode == 0, (c, r.stdout[-1500:], r.stderr[-1500:])


def test_demo_twice_into_one_folder(tmp_path: Path) -> None:
    """demo --out D twice: both runs succeed, and the second run's printed commands work as printed."""
    d = tmp_path / "demo"
    r1 = run_demo(d)
    assert r1.returncode == 0, r1.stdout[-2000:] + r1.stderr[-2000:]
    r2 = run_demo(d)
    assert r2.returncode == 0, r2.stdout[-2000:] + r2.stderr[-2000:]
    _check_demo_commands(r2.stdout)


@pytest.mark.parametrize("name", ["sp ace $HOME 'q' \"dq\" `x`", "h#q?p%41&x=1", "tab\there", "ünï 𝔘"])
def test_demo_odd_folder_names(tmp_path: Path, name: str) -> None:
    """demo into a folder with spaces, quotes, $, backticks, URL characters, a leading dash or unicode: it works
    and its printed commands, run as printed by a shell, work."""
    out = tmp_path / name
    r = run_demo(out)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert out.is_dir()
    _check_demo_commands(r.stdout)


def test_demo_no_service(tmp_path: Path) -> None:
    """--no-service: the archive alone, no service started; its printed verify command works as printed and no
    service command is printed."""
    r = run_demo(tmp_path / "ns", "--no-service")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    cmds = printed_commands(r.stdout)
    assert cmds and not any(" serve " in c or " query " in c for c in cmds), cmds
    for c in cmds:
        rr = run_printed(c)
        assert rr.returncode == 0, (c, rr.stdout[-1500:])


def test_demo_while_its_service_runs(tmp_path: Path) -> None:
    """A user runs the printed `serve` command, then the demo again into the same folder: the demo either refuses
    (the store is in use) or the running service and the new store stay consistent — verify --store as printed
    passes once the service stops."""
    d = tmp_path / "busy"
    r1 = run_demo(d)
    assert r1.returncode == 0
    serve = next(c for c in printed_commands(r1.stdout) if " serve " in c)
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(["bash", "-c", "exec " + serve], stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in log.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.1)
        r2 = run_demo(d)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    if r2.returncode != 0:
        assert "Traceback" not in r2.stderr and r2.stderr.strip(), r2.stderr[-1500:]
        return
    for c in printed_commands(r2.stdout):
        if " verify " in c and "--store" in c:
            rr = run_printed(c)
            assert rr.returncode == 0, (c, rr.stdout[-1500:])


def test_include_proof_gives_proofs_that_check_offline(api: Api, keyset: dict[str, Path]) -> None:
    """include=proof: every proven event of the page carries its C2SP tlog-proof, which checks offline with the
    producer's and the witness's public keys and is the proof of that very event; a pending one says why not."""
    from otel_audit.keys import Keyring
    from otel_audit.service import proof as tlog

    page = ok(api.get("/v1/events", [("stream", api.producer.stream), ("include", "proof"), ("limit", "50")]))
    ring, witnesses = Keyring.load(keyset["producer"]), Keyring.load(keyset["witness"])
    proven = [e for e in page["events"] if e["status"] == "proven"]
    assert proven, page["events"][:1]
    for e in proven:
        if e["proof"] is None:  # the newest checkpoint: no later checkpoint commits to it; its own note proves it
            assert e["event"] == "audit.checkpoint" and e["proof_unavailable"], e
            continue
        got = tlog.check(e["proof"], ring, witnesses)
        assert (got.stream, got.seq) == (e["stream"]["id"], e["stream"]["seq"]), e["id"]
    for e in page["events"]:
        if e["status"] != "proven":
            assert e["proof"] is None and e["proof_unavailable"], e
    err400(api.get("/v1/events", [("include", "proofs")]), "include")
    err400(api.get("/v1/events", [("include", "proof"), ("format", "csv")]), "include")
