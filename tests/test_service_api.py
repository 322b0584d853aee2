"""The service's query surface as a real process: facets, CSV, the Bifrost-compatible API, the OpenAPI document,
`otel-audit query`, and the service's own events for each.

The corpus is `otel-audit demo`'s signed archive (a gateway's users, IPs, categories), as in test_service.py;
every answer is checked against an independent reading of that archive or against /v1/events."""

from __future__ import annotations

import csv
import io
import ipaddress
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from conftest import Written, seq_of, set_attr, write_archive
from service_support import CLI, ServiceProcess, lines, post_archive, records_of, write_config

from otel_audit import catalog, keys
from otel_audit.service import bifrost, csvout
from otel_audit.service import query as q

MAX_PAGE = 1000


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("api-demo") / "demo"
    subprocess.run([CLI, "demo", "--out", str(d)], check=True, capture_output=True)
    return d


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, demo: Path) -> Any:
    folder = tmp_path_factory.mktemp("api-store")
    with ServiceProcess(write_config(folder, demo / "keys")) as s:
        post_archive(s, demo / "archive" / "audit.jsonl")
        yield s


def _text(x: Any) -> str | None:
    return x if type(x) is str else None


def _archive(demo: Path) -> list[dict[str, Any]]:
    """Each record of the producer's archive with the fields facets count, read from the archive itself."""
    out = []
    for res, r in records_of(demo / "archive" / "audit.jsonl"):
        a = r["attributes"]
        out.append({
            "id": f"{a['audit.stream.id']}-{a['audit.stream.seq']}", "time": r["time"], "event": r["event"],
            "action": r["event"], "category": _text(a.get("audit.category")), "outcome": _text(a.get("audit.outcome")),
            "actor": _text(a.get("audit.actor.id")) or _text(a.get("user.id")), "user": _text(a.get("user.id")),
            "service": _text(res.get("service.name")), "target.type": _text(a.get("audit.target.type")),
            "target.id": _text(a.get("audit.target.id")), "client.address": _text(a.get("client.address")),
            "session": _text(a.get("session.id")), "attributes": a, "body": r["body"]})
    return out


def _count(records: list[dict[str, Any]], field: str, top: int) -> dict[str, Any]:
    c = Counter(r[field] for r in records)
    missing = c.pop(None, 0)
    values = sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return {"values": [{"value": v, "count": n} for v, n in values], "missing": missing,
            "other": len(records) - missing - sum(n for _, n in values)}


def _in(addr: Any, net: str) -> bool:
    try:
        return isinstance(addr, str) and ipaddress.ip_address(addr) in ipaddress.ip_network(net)
    except ValueError:
        return False


# -- facets -------------------------------------------------------------------------------------------------


def test_facets_by_default_equal_an_independent_count_of_the_archive(svc: ServiceProcess, demo: Path) -> None:
    records = _archive(demo)
    r = svc.get("/v1/facets", {"limit": "100"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["total"] == len(records) and got["complete"] is True and got["limit"] == 100
    assert list(got["facets"]) == ["action", "category", "outcome", "actor", "service", "target.type",
                                   "client.address"]
    for field, counted in got["facets"].items():
        assert counted == _count(records, field, 100), field
    # the corpus makes the check mean something: several values, and rows without one
    assert len(got["facets"]["action"]["values"]) > 10 and got["facets"]["actor"]["missing"] > 0


@pytest.mark.parametrize("params, keep", [
    ([("action", "authentication.*")], lambda r: r["event"].startswith("authentication.")),
    ([("outcome", "failure"), ("field", "actor"), ("field", "client.address")], lambda r: r["outcome"] == "failure"),
    ([("client.address", "203.0.113.0/24"), ("field", "user"), ("field", "session")],
     lambda r: _in(r["client.address"], "203.0.113.0/24")),
    ([("filter", 'user.id pr and not (audit.category eq "authorization")'), ("field", "category"),
      ("field", "target.id")], lambda r: bool(r["user"]) and r["category"] != "authorization"),
    ([("q", "jailbreak"), ("field", "action")],
     lambda r: "jailbreak" in ((r["body"] if isinstance(r["body"], str) else "") + " ".join(
         v for v in r["attributes"].values() if isinstance(v, str))).lower()),
])
def test_facets_take_the_filters_of_events(svc: ServiceProcess, demo: Path, params: list[tuple[str, str]],
                                           keep: Callable[[dict[str, Any]], bool]) -> None:
    records = [r for r in _archive(demo) if keep(r)]
    assert records, "the corpus must match, or the test proves nothing"
    for top in (2, 100):
        got = svc.get("/v1/facets", [*params, ("limit", str(top))]).json()
        assert got["total"] == len(records)
        fields = [v for k, v in params if k == "field"] or list(got["facets"])
        assert list(got["facets"]) == fields
        for f in fields:
            assert got["facets"][f] == _count(records, f, top), (f, top)
    # the same rows as /v1/events returns for those filters
    ids = {e["id"] for e in svc.events([(k, v) for k, v in params if k != "field"])}
    assert ids == {r["id"] for r in records}


def test_facets_time_window(svc: ServiceProcess, demo: Path) -> None:
    records = _archive(demo)
    times = sorted(r["time"] for r in records)
    lo, hi = times[len(times) // 3], times[2 * len(times) // 3]
    inside = [r for r in records if lo <= r["time"] < hi]
    got = svc.get("/v1/facets", {"from": f"{lo // 10**9}.{lo % 10**9:09d}", "to": f"{hi // 10**9}.{hi % 10**9:09d}",
                                 "field": "action", "limit": "100"}).json()
    assert got["total"] == len(inside) and got["facets"]["action"] == _count(inside, "action", 100)


def test_facets_of_a_big_match_count_the_newest_rows_up_to_the_limit(tmp_path: Path, demo: Path) -> None:
    with ServiceProcess(write_config(tmp_path, demo / "keys", limits={"facet_max_rows": 50})) as s:
        post_archive(s, demo / "archive" / "audit.jsonl")
        newest = s.events({"order": "ingest"})[-50:]
        got = s.get("/v1/facets", {"field": ["action", "status"], "limit": "100"}).json()
        assert (got["total"], got["complete"]) == (50, False)
        c = Counter(e["event"] for e in newest)
        assert {v["value"]: v["count"] for v in got["facets"]["action"]["values"]} == dict(c)
        assert got["facets"]["status"]["values"] == [{"value": "proven", "count": 50}]
        small = s.get("/v1/facets", {"action": "security.*", "field": "action"}).json()
        assert small["complete"] is True  # fewer rows matched than the limit


def test_a_facet_count_past_its_deadline_stops_and_leaves_the_reader_as_it_was(tmp_path: Path) -> None:
    import sqlite3

    from otel_audit.service.store import EventRow, StoreTimeout, open_store

    st = open_store(str(tmp_path / "s.db"))
    try:
        rows = [EventRow(id=f"u-{i}", stream_id=None, stream_seq=None, ts=i, observed_ts=0, ingest_ts=0,
                         event=f"e.{i % 7}", category=None, outcome=None, actor=f"a{i % 100}", user_id=None,
                         target_type=None, target_id=None, client_address=None, client_address_key=None,
                         service="s", session_id=None, trace_id=None, severity=9, severity_text="INFO", body=None,
                         attrs="{}", resource=b"{}", scope=b"{}", record=b"{}", canonical=None, digest=None,
                         prev=None, signed="none", text="") for i in range(20000)]
        with st.writer() as w:
            w.insert_events(rows)
        with pytest.raises(StoreTimeout, match="did not answer within"):
            st.facets("", [], ["action", "actor"], top=5, max_scan=10**6, deadline=1e-9)
        with pytest.raises(StoreTimeout):
            st.count("", [], deadline=1e-9)
        got = st.facets("", [], ["action", "actor"], top=5, max_scan=10**6, deadline=60)
        assert got["scanned"] == 20000 and got["facets"]["action"]["values"][0] == ("e.0", 2858)
        assert got["facets"]["actor"]["other"] == 20000 - 5 * 200
        with pytest.raises(sqlite3.OperationalError, match="readonly|query_only|attempt to write"):
            st._reader().execute("DELETE FROM envelopes")  # the reader is read-only again
    finally:
        st.close()


@pytest.mark.parametrize("params, names", [
    ({"field": "nope"}, "field: 'nope' is not a facet"),
    ({"field": "body"}, "field"),
    ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"), ({"limit": "x"}, "limit"), ({"limit": "１"}, "limit"),
    ([("limit", "1"), ("limit", "2")], "limit: given 2 times"),
    ({"order": "asc"}, "order"), ({"cursor": "abc"}, "cursor"), ({"format": "csv"}, "format"),
    ({"nope": "1"}, "nope: unknown parameter"),
    ({"client.address": "10.0.0.0/33"}, "client.address"), ({"from": "soon"}, "from"),
    ({"filter": 'user.id eq'}, "filter"), ({"status": "good"}, "status"), ({"actor": "a\x00b"}, "actor"),
])
def test_bad_facet_parameters_get_a_400_naming_them(svc: ServiceProcess, params: Any, names: str) -> None:
    r = svc.get("/v1/facets", params)
    assert r.status_code == 400, r.text
    assert names in r.json()["error"]["message"]


# -- CSV ------------------------------------------------------------------------------------------------------


def _csv_events(text: str) -> list[dict[str, str]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == csvout.HEADER
    return [dict(zip(csvout.HEADER, [csvout.unneutralise(c) for c in row], strict=True)) for row in rows[1:]]


def _as_csv(e: dict[str, Any]) -> dict[str, str]:
    """What each CSV column must hold for an event of the JSON answer (no value: empty)."""
    stream = e["stream"] or {}
    v = {"id": e["id"], "time": e["time"], "event": e["event"], "category": e["category"], "outcome": e["outcome"],
         "actor": e["actor"], "user_id": e["user_id"], "target_type": e["target"]["type"],
         "target_id": e["target"]["id"], "client_address": e["client_address"], "service": e["service"],
         "session_id": e["session_id"], "trace_id": e["trace_id"], "severity_number": e["severity"]["number"],
         "severity_text": e["severity"]["text"], "status": e["status"], "signed": e["signed"],
         "stream_id": stream.get("id"), "stream_seq": stream.get("seq"), "digest": e["digest"],
         "ingest_seq": e["ingest_seq"], "ingest_time": e["ingest_time"], "body": e["body"]}
    return {k: "" if x is None else str(x) for k, x in v.items()}


def test_csv_parses_back_to_the_same_events(svc: ServiceProcess) -> None:
    want = svc.get("/v1/events", {"limit": "1000"}).json()["events"]
    r = svc.get("/v1/events", {"limit": "1000", "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    # each record ends in CRLF (RFC 4180); the line breaks of multi-line bodies are inside quoted fields
    assert r.content.endswith(b"\r\n") and r.content.count(b"\r\n") == len(want) + 1
    got = _csv_events(r.content.decode())
    assert len(got) == len(want) > 100
    for g, e in zip(got, want, strict=True):
        assert {k: g[k] for k in csvout.HEADER if k != "attributes"} == _as_csv(e)
        assert orjson.loads(g["attributes"]) == e["attributes"]
    # paged: the cursor in X-Next-Cursor, every page with the same header, together the whole answer
    rows: list[dict[str, str]] = []
    cursor = None
    while True:
        page = svc.get("/v1/events", {"limit": "97", "format": "csv", **({"cursor": cursor} if cursor else {})})
        rows += _csv_events(page.content.decode())
        cursor = page.headers.get("X-Next-Cursor")
        if cursor is None:
            break
    assert [x["id"] for x in rows] == [e["id"] for e in want]
    assert svc.get("/v1/events", {"format": "xml"}).status_code == 400
    assert "format" in svc.get("/v1/events", {"format": "xml"}).json()["error"]["message"]
    assert svc.get("/v1/events", {"limit": "3"}, Accept="text/csv").text.startswith("id,time,")


def _unsigned(attrs: dict[str, str], body: str) -> bytes:
    rec = {"timeUnixNano": "1700000000000000000", "eventName": "authentication.login.failed",
           "body": {"stringValue": body},
           "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]}
    return orjson.dumps({"resourceLogs": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "=cmd|' /C calc'!A0"}}]},
        "scopeLogs": [{"scope": {}, "logRecords": [rec]}]}]})


def test_csv_neutralises_formulas_and_stays_reversible(tmp_path: Path, shared_keys: Path) -> None:
    hostile = {"user.id": "=HYPERLINK(\"http://evil.example/\",\"x\")", "audit.reason": "+1+2",
               "client.address": "@SUM(1)", "audit.target.id": "-2+3", "session.id": "'=already quoted",
               "audit.actor.id": "\tTAB", "audit.outcome": "plain, with \"quotes\"\nand a newline"}
    with ServiceProcess(write_config(tmp_path, shared_keys)) as s:
        assert s.post_json(_unsigned(hostile, "=1+1")).status_code == 200
        r = s.get("/v1/events", {"format": "csv"})
    rows = list(csv.reader(io.StringIO(r.content.decode(), newline="")))
    cells = dict(zip(rows[0], rows[1], strict=True))
    for col in ("user_id", "client_address", "target_id", "session_id", "actor", "service", "body"):
        assert cells[col].startswith("'"), (col, cells[col])  # a spreadsheet shows it as text
    assert not any(c.startswith(("=", "+", "-", "@", "\t")) for c in rows[1])
    (e,) = _csv_events(r.content.decode())
    assert (e["user_id"], e["client_address"], e["target_id"], e["session_id"], e["actor"], e["body"],
            e["service"], e["outcome"]) == (
        hostile["user.id"], hostile["client.address"], hostile["audit.target.id"], hostile["session.id"],
        hostile["audit.actor.id"], "=1+1", "=cmd|' /C calc'!A0", hostile["audit.outcome"])
    assert orjson.loads(e["attributes"])["audit.reason"] == "+1+2"


# -- the Bifrost-compatible API ---------------------------------------------------------------------------------

_EVENT_KEYS = {"id": str, "typeURI": str, "eventType": str, "eventTime": str, "action": str, "outcome": str,
               "initiator": dict, "target": dict, "observer": dict, "attachments": list, "tags": list,
               "signature": str, "createdAt": str}


def _assert_audit_event(a: dict[str, Any]) -> None:
    for k, t in _EVENT_KEYS.items():
        assert isinstance(a[k], t), (k, a[k])
    for k in ("reason", "requestMethod", "requestPath", "requestIP", "userAgent", "duration"):
        assert k in a
    assert a["eventType"] in ("activity", "monitor", "control")
    assert isinstance(a["initiator"]["id"], str) and isinstance(a["target"]["id"], str)
    assert isinstance(a["target"]["typeURI"], str) and isinstance(a["observer"]["id"], str)
    assert a["eventTime"].endswith("Z") and a["createdAt"].endswith("Z")


def _bifrost_all(s: ServiceProcess, params: dict[str, str], limit: int = 7) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    first = s.get("/api/audit-logs", {**params, "limit": str(limit)})
    assert first.status_code == 200, first.text
    page = first.json()
    total = page["total"]
    n = 1
    while True:
        assert set(page) == {"audit_logs", "total", "page", "limit", "total_pages", "has_more", "next_cursor"}
        assert (page["total"], page["page"], page["limit"]) == (total, n, limit)
        assert page["total_pages"] == -(-total // limit)
        assert isinstance(page["has_more"], bool) and page["has_more"] == (page["next_cursor"] is not None)
        for a in page["audit_logs"]:
            _assert_audit_event(a)
        out += page["audit_logs"]
        if not page["has_more"]:
            break
        n += 1
        page = s.get("/api/audit-logs", {**params, "limit": str(limit), "cursor": page["next_cursor"]}).json()
    assert len(out) == total
    return out


def _cadf(prefix: str) -> list[str]:
    return [n for n, spec in catalog.EVENTS.items() if spec.cadf_action.split("/")[0] == prefix]


@pytest.mark.parametrize("bifrost_params, ours", [
    ({}, []),
    ({"initiator_id": "alice"}, [("actor", "alice")]),
    ({"initiator_ids": '["alice","bob"]', "initiator_id": "ignored"}, [("actor", "alice"), ("actor", "bob")]),
    ({"actions": '["authenticate"]'}, [("action", n) for n in _cadf("authenticate")]),
    ({"action": "authorization.*"}, [("action", "authorization.*")]),
    ({"event_type": "control"}, [("action", "authorization.*")]),
    ({"outcome": "failure", "sort_order": "asc"}, [("outcome", "failure"), ("order", "asc")]),
    ({"request_ip": "203.0.113.0/24"}, [("client.address", "203.0.113.0/24")]),
    ({"search": "jailbreak"}, [("q", "jailbreak")]),
    ({"target_types": '["audit_log"]'}, [("target.type", "audit_log")]),
])
def test_bifrost_list_has_bifrosts_shape_and_the_events_of_v1(svc: ServiceProcess, bifrost_params: dict[str, str],
                                                              ours: list[tuple[str, str]]) -> None:
    got = _bifrost_all(svc, bifrost_params)
    want = svc.events(ours)
    assert want, "the corpus must match"
    assert [a["id"] for a in got] == [e["id"] for e in want]
    for a, e in zip(got, want, strict=True):
        assert a["otel_audit"]["event"] == e["event"] and a["signature"] == e["digest"]
        assert a["action"] == catalog.EVENTS[e["event"]].cadf_action
        assert a["outcome"] == e["outcome"] and a["requestIP"] == e["client_address"]
        assert a["initiator"]["id"] == (e["actor"] or "unknown")


def test_bifrost_dates_periods_and_page_numbers(svc: ServiceProcess, demo: Path) -> None:
    times = sorted(r["time"] for r in _archive(demo))
    lo, hi = times[10], times[-10]
    iso = [q.rfc3339(t) for t in (lo, hi)]
    got = _bifrost_all(svc, {"start_date": iso[0], "end_date": iso[1]}, limit=50)
    assert len(got) == sum(1 for t in times if lo <= t <= hi)  # end_date is inclusive, as in Bifrost
    day = iso[0][:10]
    whole_day = svc.get("/api/audit-logs", {"start_date": day, "end_date": day, "limit": "1"}).json()
    assert whole_day["total"] == len(times)  # the demo ran today: a date is that whole day (UTC)
    assert svc.get("/api/audit-logs", {"period": "1d", "limit": "1"}).json()["total"] == len(times)
    # page numbers: page 3 of 20 is rows 40..59 of the whole answer
    every = [a["id"] for a in _bifrost_all(svc, {}, limit=1000)]
    p3 = svc.get("/api/audit-logs", {"page": "3", "limit": "20"}).json()
    assert [a["id"] for a in p3["audit_logs"]] == every[40:60] and p3["page"] == 3 and p3["has_more"]
    # a period's cursor keeps the window of its first page
    first = svc.get("/api/audit-logs", {"period": "7d", "limit": "10"}).json()
    second = svc.get("/api/audit-logs", {"period": "7d", "limit": "10", "cursor": first["next_cursor"]}).json()
    assert [a["id"] for a in second["audit_logs"]] == every[10:20] and second["page"] == 2


def test_bifrost_get_and_verify(svc: ServiceProcess, demo: Path) -> None:
    from otel_audit.keys import Keyring
    from otel_audit.service import proof as tlog

    ring = Keyring.load(demo / "keys")
    events = svc.events({"order": "ingest"})
    for e in events[:: max(1, len(events) // 25)] + [events[-1]]:
        one = svc.get(f"/api/audit-logs/{e['id']}")
        assert one.status_code == 200 and set(one.json()) == {"audit_log"}
        _assert_audit_event(one.json()["audit_log"])
        v = svc.get(f"/api/audit-logs/{e['id']}/verify").json()
        assert isinstance(v["valid"], bool) and v["computed"] == v["stored"] == e["digest"]
        assert v["valid"] is True, v
        if v["proof"] is not None:  # a checkpoint at the end of its stream proves itself: no inclusion proof
            assert tlog.check(v["proof"], ring).seq == e["stream"]["seq"]
        else:
            assert e["event"] == "audit.checkpoint" and "signed checkpoint" in v["reason"]
    for path in ("/api/audit-logs/nope", "/api/audit-logs/nope/verify"):
        r = svc.get(path)
        assert r.status_code == 404 and "nope" in r.json()["error"]["message"]


def _edited(path: Path, seq: int, out: Path) -> Path:
    """The archive with the record at `seq` modified after signing."""
    text = []
    for line in lines(path):
        doc = orjson.loads(line)
        for rl in doc["resourceLogs"]:
            for sl in rl["scopeLogs"]:
                for rec in sl["logRecords"]:
                    if seq_of(rec) == seq:
                        set_attr(rec, "user.id", {"stringValue": "mallory"})
        text.append(orjson.dumps(doc).decode())
    out.write_text("\n".join(text) + "\n")
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, shared_keys: Path) -> Written:
    return write_archive(tmp_path_factory.mktemp("api-archive") / "audit.jsonl", shared_keys, 120, checkpoint_every=50)


def test_bifrost_verify_names_a_modified_record_and_a_pending_one(tmp_path: Path, shared_keys: Path,
                                                                  written: Written) -> None:
    edited = _edited(written.path, 7, tmp_path / "edited.jsonl")
    all_lines = list(lines(edited))
    with ServiceProcess(write_config(tmp_path, shared_keys)) as s:
        for line in all_lines:
            assert s.post_json(line).status_code == 200
        bad = s.get(f"/api/audit-logs/{written.stream_id}-7/verify").json()
        assert bad["valid"] is False and bad["computed"] != bad["stored"] and "modified" in bad["reason"]
        good = s.get(f"/api/audit-logs/{written.stream_id}-8/verify").json()
        assert good["valid"] is True and good["proof"].startswith("c2sp.org/tlog-proof@v1")
        assert s.post_json(_unsigned({"user.id": "x"}, "hello")).status_code == 200
        (u,) = [e for e in s.events({"user": "x"})]
        v = s.get(f"/api/audit-logs/{u['id']}/verify").json()
        assert v["valid"] is False and "unsigned" in v["reason"] and v["stored"] is None


def test_bifrost_filterdata_lists_the_distinct_values(svc: ServiceProcess, demo: Path) -> None:
    records = _archive(demo)
    r = svc.get("/api/audit-logs/filterdata")
    assert r.status_code == 200, r.text
    got = r.json()
    assert set(got) == set(bifrost.DIMENSIONS)
    for d in bifrost.DIMENSIONS:
        assert isinstance(got[d], list)
    events = {r["event"] for r in records}
    assert got["actions"] == sorted({bifrost.cadf_action(e) for e in events})
    assert got["outcomes"] == sorted({r["outcome"] for r in records if r["outcome"]})
    assert got["initiators"] == [{"id": a, "name": a} for a in sorted({r["actor"] for r in records if r["actor"]})]
    assert got["targets"] == [{"id": t, "name": t} for t in sorted({r["target.id"] for r in records
                                                                   if r["target.id"]})]
    assert got["request_ips"] == sorted({r["client.address"] for r in records if r["client.address"]})
    assert set(got["event_types"]) == {"activity", "control", "monitor"}
    only = svc.get("/api/audit-logs/filterdata", {"dimensions": "initiators,request_ips", "q": "AL"}).json()
    assert set(only) == {"initiators", "request_ips"}
    assert only["initiators"] == [{"id": a, "name": a} for a in sorted({r["actor"] for r in records
                                                                        if r["actor"] and "al" in r["actor"]})]
    assert only["request_ips"] == []


def test_bifrost_export_streams_every_event(tmp_path: Path, shared_keys: Path) -> None:
    w = write_archive(tmp_path / "long.jsonl", shared_keys, 2300, checkpoint_every=500)  # three export pages
    with ServiceProcess(write_config(tmp_path, shared_keys)) as s:
        post_archive(s, w.path)
        want = s.events({})
        assert len(want) > 2000
        r = s.get("/api/audit-logs/export")
        assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
        doc = r.json()
        assert isinstance(doc, list) and [a["id"] for a in doc] == [e["id"] for e in want]
        for a in doc[::100]:
            _assert_audit_event(a)
        jl = s.get("/api/audit-logs/export", {"format": "jsonl", "sort_order": "asc"})
        assert [orjson.loads(x)["id"] for x in jl.content.splitlines()] == [e["id"] for e in reversed(want)]
        c = s.get("/api/audit-logs/export", {"format": "csv"})
        got = _csv_events(c.content.decode())
        assert [x["id"] for x in got] == [e["id"] for e in want]
        assert got[5] == {**_as_csv(want[5]), "attributes": got[5]["attributes"]}
        some = s.get("/api/audit-logs/export", {"format": "jsonl", "initiator_id": want[3]["actor"]})
        assert [orjson.loads(x)["id"] for x in some.content.splitlines()] == [
            e["id"] for e in s.events({"actor": want[3]["actor"]})]
        empty = s.get("/api/audit-logs/export", {"initiator_id": "nobody"})
        assert empty.status_code == 200 and empty.json() == []


@pytest.mark.parametrize("path, params, names", [
    ("/api/audit-logs", {"limit": "0"}, "limit"), ("/api/audit-logs", {"limit": "1001"}, "limit"),
    ("/api/audit-logs", {"page": "0"}, "page"), ("/api/audit-logs", {"page": "x"}, "page"),
    ("/api/audit-logs", {"page": "100000", "limit": "1000"}, "page"),
    ("/api/audit-logs", {"cursor": "garbage"}, "cursor"),
    ("/api/audit-logs", {"actions": "read"}, "actions"), ("/api/audit-logs", {"actions": "[1]"}, "actions"),
    ("/api/audit-logs", {"actions": '{"a": 1}'}, "actions"),
    ("/api/audit-logs", {"event_type": "party"}, "event_type"),
    ("/api/audit-logs", {"start_date": "yesterday"}, "start_date"),
    ("/api/audit-logs", {"end_date": "2026-02-30"}, "end_date"),
    ("/api/audit-logs", {"period": "forever"}, "period"), ("/api/audit-logs", {"period": "0d"}, "period"),
    ("/api/audit-logs", {"sort_by": "actor"}, "sort_by"), ("/api/audit-logs", {"sort_order": "up"}, "sort_order"),
    ("/api/audit-logs", {"request_ip": "999.1.1.1"}, "request_ip"),
    ("/api/audit-logs", {"request_ips": '["10.0.0.0/40"]'}, "request_ip"),
    ("/api/audit-logs", {"initiator_type": "user"}, "initiator_type: not supported"),
    ("/api/audit-logs", {"request_methods": '["GET"]'}, "request_method: not supported"),
    ("/api/audit-logs", {"request_path": "/x"}, "request_path"), ("/api/audit-logs", {"tags": "[]x"}, "tags"),
    ("/api/audit-logs", {"bogus": "1"}, "bogus: unknown parameter"),
    ("/api/audit-logs", {"initiator_id": "a\x00"}, "initiator_id"),
    ("/api/audit-logs", {"search": " ".join(["w"] * 40)}, "search"),
    ("/api/audit-logs", [("outcome", "a"), ("outcome", "b")], "outcome: given 2 times"),
    ("/api/audit-logs/filterdata", {"dimensions": "actions,colours"}, "dimensions"),
    ("/api/audit-logs/filterdata", {"page": "1"}, "page: unknown parameter"),
    ("/api/audit-logs/filterdata", {"q": "x" * 2000}, "q"),
    ("/api/audit-logs/export", {"format": "syslog"}, "format"), ("/api/audit-logs/export", {"page": "2"}, "page"),
    ("/api/audit-logs/export", {"limit": "5"}, "limit"), ("/api/audit-logs/export", {"period": "1y"}, "period"),
])
def test_bad_bifrost_parameters_get_a_400_naming_them(svc: ServiceProcess, path: str, params: Any,
                                                      names: str) -> None:
    r = svc.get(path, params)
    assert r.status_code == 400, r.text
    assert names in r.json()["error"]["message"], r.text


# -- the OpenAPI document ---------------------------------------------------------------------------------------


def test_openapi_describes_every_route_and_no_other(svc: ServiceProcess, tmp_path: Path, demo: Path) -> None:
    from starlette.routing import Route

    from otel_audit.service import app, config

    doc = svc.get("/v1/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    cfg = config.load(str(write_config(tmp_path, demo / "keys")))
    service = app.build(cfg)
    try:
        routes = {(r.path, m.lower()) for r in service.app.routes if isinstance(r, Route)
                  for m in (r.methods or ()) if m != "HEAD"}
    finally:
        service.store.close()
    documented = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented, (routes - documented, documented - routes)
    ops = {(p, m): op for p, o in doc["paths"].items() for m, op in o.items()}
    for (p, _m), op in ops.items():
        ok = "202" if (p, _m) == ("/v1/exports", "post") else "200"  # an export starts: 202 Accepted
        assert ok in op["responses"] and op["summary"], p
        if op["security"]:
            assert op["x-scope"] in ("ingest", "audit:read", "audit:export", "audit:admin"), p
            assert {"401", "403"} <= set(op["responses"]), p
        for code, resp in op["responses"].items():
            if code != ok and p != "/v1/logs":
                assert resp["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        if any(x["in"] == "query" for x in op.get("parameters", [])):
            assert "400" in op["responses"] or p in ("/v1/checkpoints", "/v1/findings"), p

    def names(p: str) -> set[str]:
        return {x["name"] for x in ops[(p, "get")]["parameters"] if x["in"] == "query"}

    assert names("/v1/events") == set(q.KNOWN)
    assert names("/v1/facets") == set(q.KNOWN) - {"order", "cursor", "format", "include"} | {"field"}
    assert names("/api/audit-logs") == set(bifrost.KNOWN)
    assert names("/api/audit-logs/export") == set(bifrost.KNOWN) - {"page", "limit", "cursor"} | {"format"}
    assert ops[("/api/audit-logs/export", "get")]["x-scope"] == "audit:export"
    # every $ref resolves
    text = orjson.dumps(doc).decode()
    import re

    for ref in set(re.findall(r'"#/components/schemas/(\w+)"', text)):
        assert ref in doc["components"]["schemas"], ref


# -- otel-audit query -------------------------------------------------------------------------------------------


def _query(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    e = {k: v for k, v in os.environ.items() if k not in ("OTEL_AUDIT_TOKEN", "OTEL_AUDIT_URL")}
    return subprocess.run([CLI, "query", *args], capture_output=True, text=True, timeout=120, env={**e, **(env or {})})


def test_query_cli_formats_and_paging(svc: ServiceProcess) -> None:
    want = svc.events({"action": "authentication.*"})
    r = _query("--url", svc.url, "--action", "authentication.*", "--all", "--limit", "7", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = orjson.loads(r.stdout)
    assert doc["events"] == want and doc["count"] == len(want) and len(want) > 14
    # not a terminal: JSON lines by default; one page without --all (and a hint to go on, on stderr)
    r = _query("--url", svc.url, "--action", "authentication.*", "--limit", "5")
    assert r.returncode == 0, r.stderr
    assert [orjson.loads(x) for x in r.stdout.splitlines()] == want[:5]
    cursor = r.stderr.split("--cursor ")[1].strip()
    r = _query("--url", svc.url, "--action", "authentication.*", "--limit", "5", "--cursor", cursor, "--all")
    assert [orjson.loads(x)["id"] for x in r.stdout.splitlines()] == [e["id"] for e in want[5:]]
    r = _query("--url", svc.url, "--action", "authentication.*", "--all", "--limit", "6", "--format", "csv")
    assert r.returncode == 0 and r.stdout.count("id,time,event") == 1
    assert [x["id"] for x in _csv_events(r.stdout.replace("\n", "\r\n"))] == [e["id"] for e in want]
    r = _query("--url", svc.url, "--outcome", "failure", "--format", "table")
    rows = r.stdout.splitlines()
    assert rows[0].split() == ["TIME", "EVENT", "OUTCOME", "ACTOR", "TARGET", "CLIENT", "STATUS"]
    failed = svc.events({"outcome": "failure"})
    assert len(rows) - 1 == len(failed) > 0
    assert all(" failure " in x and e["event"][:39] in x for x, e in zip(rows[1:], failed, strict=True))
    r = _query("--url", svc.url, "--filter", 'user.id eq "bob"', "--q", "login", "--from", "0", "--all",
               "--format", "ndjson")
    assert [orjson.loads(x)["id"] for x in r.stdout.splitlines()] == [
        e["id"] for e in svc.events({"filter": 'user.id eq "bob"', "q": "login", "from": "0"})]


def test_query_cli_prints_a_table_on_a_terminal(svc: ServiceProcess) -> None:
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([CLI, "query", "--url", svc.url, "--action", "security.*"], stdout=follower,
                                stderr=subprocess.PIPE)
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
    rows = out.decode().splitlines()
    assert rows[0].split() == ["TIME", "EVENT", "OUTCOME", "ACTOR", "TARGET", "CLIENT", "STATUS"]
    assert len(rows) - 1 == len(svc.events({"action": "security.*"})) > 0
    assert all(" security." in r for r in rows[1:])


def test_query_cli_errors_are_one_line(svc: ServiceProcess, tmp_path: Path, shared_keys: Path) -> None:
    from test_service import _token

    r = _query("--url", "http://127.0.0.1:1")
    assert r.returncode == 2 and "cannot reach the service at http://127.0.0.1:1" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = _query("--url", svc.url, "--filter", "user.id eq")
    assert r.returncode == 2 and r.stderr.startswith("otel-audit query: the service refused the query: filter")
    r = _query("--url", svc.url, "--client-address", "nope")
    assert r.returncode == 2 and "client.address" in r.stderr
    r = _query("--url", svc.url, "--limit", "5000")
    assert r.returncode == 2 and "--limit" in r.stderr
    r = _query()
    assert r.returncode == 2 and "--url" in r.stderr
    reader, e1 = _token("auditor", "audit:read")
    ingest, e2 = _token("collector", "ingest")
    exporter, e3 = _token("exporter", "audit:export")
    tok = tmp_path / "token"
    with ServiceProcess(write_config(tmp_path, shared_keys, tokens=[e1, e2, e3])) as s:
        r = _query("--url", s.url)
        assert r.returncode == 2 and "(401)" in r.stderr and "--token-file" in r.stderr
        tok.write_text(ingest + "\n")
        r = _query("--url", s.url, "--token-file", str(tok))
        assert r.returncode == 2 and "(403)" in r.stderr and ingest not in r.stderr
        tok.write_text(reader + "\n")
        r = _query("--url", s.url, "--token-file", str(tok), "--format", "json")
        assert r.returncode == 0, r.stderr
        assert orjson.loads(r.stdout)["events"] == []
        r = _query("--url", s.url, env={"OTEL_AUDIT_TOKEN": "oa_wrong"})
        assert r.returncode == 2 and "(401)" in r.stderr and "oa_wrong" not in r.stderr
        # the scopes of the new routes: the export needs audit:export, the rest audit:read, the document none
        for path in ("/v1/facets", "/api/audit-logs", "/api/audit-logs/filterdata", "/api/audit-logs/x",
                     "/api/audit-logs/x/verify", "/api/audit-logs/export"):
            assert s.get(path).status_code == 401, path
            assert s.get(path, Authorization=f"Bearer {ingest}").status_code == 403, path
        assert s.get("/api/audit-logs/export", Authorization=f"Bearer {reader}").status_code == 403
        assert s.get("/api/audit-logs/export", Authorization=f"Bearer {exporter}").json() == []
        assert s.get("/v1/facets", Authorization=f"Bearer {reader}").status_code == 200
        assert s.get("/v1/openapi.json").status_code == 200
        r = _query("--url", s.url, "--token-file", str(tmp_path / "missing"))
        assert r.returncode == 2 and "--token-file" in r.stderr and "Traceback" not in r.stderr
    h = subprocess.run([CLI, "query", "--help"], capture_output=True, text=True, env={"OTEL_AUDIT_TOKEN": reader})
    assert h.returncode == 0 and reader not in h.stdout and "--token-file" in h.stdout


# -- the service's own events ---------------------------------------------------------------------------------


def _wait(check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def test_facets_bifrost_and_exports_are_signed_events_of_the_services_own_stream(
        tmp_path: Path, demo: Path) -> None:
    witness = tmp_path / "service-keys"
    keys.generate(witness, "service")
    cfg = write_config(tmp_path, demo / "keys", witness_keys=str(witness))
    with ServiceProcess(cfg) as s:
        post_archive(s, demo / "archive" / "audit.jsonl")
        assert s.get("/v1/facets", {"field": "actor"}).status_code == 200
        assert s.get("/v1/events", {"format": "csv", "limit": "3"}).status_code == 200
        assert s.get("/api/audit-logs", {"initiator_id": "alice", "limit": "2"}).status_code == 200
        assert s.get("/api/audit-logs/filterdata").status_code == 200
        n = len(s.get("/api/audit-logs/export", {"format": "jsonl", "outcome": "failure"}).content.splitlines())

        def own() -> list[dict[str, Any]]:
            return [e for e in s.events({"service": "otel-audit-service", "order": "ingest"})
                    if e["event"] != "audit.checkpoint"]

        def ready() -> bool:
            got = own()
            kinds = {(e["event"], e["attributes"].get("audit.target.type")) for e in got}
            return {("data_access.logs.queried", "audit_facets"), ("data_access.logs.queried", "audit_filter_values"),
                    ("data_access.data.exported", "audit_events")} <= kinds and any(
                "/api/audit-logs?" in e["attributes"].get("db.query.text", "") for e in got)

        assert _wait(ready), own()
        events = own()
        (exp,) = [e for e in events if e["event"] == "data_access.data.exported"]
        assert exp["attributes"]["audit.export.format"] == "jsonl"
        assert exp["attributes"]["audit.export.record_count"] == n > 0
        assert "outcome=failure" in exp["attributes"]["db.query.text"]
        assert any(e["attributes"].get("db.query.text", "").startswith("GET /v1/events?format=csv") for e in events)
        assert {e["signed"] for e in events} == {"at source"}
    assert yaml.safe_load(cfg.read_text())["witness_keys"]
