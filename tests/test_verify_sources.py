"""`otel-audit verify` on what the SIEMs hold: exports written to files are told apart by content,
read back through the signed `audit.otlp` each exporter ships, and proven with the public keys.

Starts the Elasticsearch stand-in (a real HTTP server on loopback), reads back through the
official `elasticsearch` client, and runs the real CLI as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from elasticsearch import Elasticsearch, helpers
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from standins.elastic import DEFAULT_API_KEY, ElasticStandIn

from otel_audit.exporters.elastic import ElasticLogExporter
from otel_audit.processors.signing import SigningProcessor
from otel_audit.verify import kinds_of


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_audit.cli", "verify", "--no-progress", *args],
                          capture_output=True, text=True, timeout=120)


def _ship(es: ElasticStandIn, keys_dir: Path, n: int) -> None:
    provider = LoggerProvider(shutdown_on_exit=False)
    exporter = ElasticLogExporter(es.url, api_key=DEFAULT_API_KEY, timeout=5)
    provider.add_log_record_processor(SigningProcessor(
        keys_dir, downstream=BatchLogRecordProcessor(exporter), checkpoint_every=25, checkpoint_interval=3600))
    log = provider.get_logger("t")
    for i in range(n):
        log.emit(event_name="authentication.login.succeeded", body=f"login {i}",
                 attributes={"user.id": f"u{i % 7}", "audit.outcome": "success", "n": i})
    provider.shutdown()


def _dump(es: ElasticStandIn, path: Path) -> list[dict]:
    client = Elasticsearch(es.url, api_key=DEFAULT_API_KEY, request_timeout=10)
    hits = list(helpers.scan(client, index="logs-*", query={"query": {"match_all": {}}}, size=200))
    path.write_text(json.dumps({"hits": {"hits": hits}}))
    return hits


def test_elasticsearch_dump_verifies_through_the_cli(tmp_path: Path, shared_keys: Path) -> None:
    """A _search dump read back with the official client verifies with exit 0; an altered signed record gives 1."""
    with ElasticStandIn() as es:
        _ship(es, shared_keys, 120)
        dump = tmp_path / "hits.json"
        hits = _dump(es, dump)
    assert kinds_of(dump) == {"elastic": 1}
    ok = _cli("--keys", str(shared_keys), str(dump))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "VERIFIED" in ok.stdout
    # alter one signed record at rest
    victim = next(h for h in hits if json.loads(h["_source"]["audit"]["otlp"]).get("eventName") != "audit.checkpoint")
    rec = json.loads(victim["_source"]["audit"]["otlp"])
    seq = next(int(kv["value"]["intValue"]) for kv in rec["attributes"] if kv["key"] == "audit.stream.seq")
    rec["body"] = {"stringValue": "nothing to see"}
    victim["_source"]["audit"]["otlp"] = json.dumps(rec)
    dump.write_text(json.dumps({"hits": {"hits": hits}}))
    bad = _cli("--keys", str(shared_keys), "--format", "json", str(dump))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    report = json.loads(bad.stdout)
    assert report["streams"][0]["modified"] == [seq]


def test_searchable_field_edited_in_the_siem_is_a_problem(tmp_path: Path, shared_keys: Path) -> None:
    """A searchable field changed in the SIEM while audit.otlp stayed intact fails verification, naming the field."""
    with ElasticStandIn() as es:
        _ship(es, shared_keys, 30)
        dump = tmp_path / "hits.json"
        hits = _dump(es, dump)
    victim = next(h for h in hits if h["_source"].get("user", {}).get("id"))
    victim["_source"]["user"]["id"] = "mallory"
    dump.write_text(json.dumps({"hits": {"hits": hits}}))
    res = _cli("--keys", str(shared_keys), "--source", "elastic", str(dump))
    assert res.returncode == 1
    assert "mallory" in res.stdout


def test_unknown_source_kind_is_a_usage_error(tmp_path: Path, shared_keys: Path) -> None:
    """--source with an unknown kind exits 2 with argparse's message, not a traceback."""
    f = tmp_path / "x.json"
    f.write_text("{}")
    res = _cli("--keys", str(shared_keys), "--source", "graylog", str(f))
    assert res.returncode == 2 and "Traceback" not in res.stderr


# -- documents the collector's own elasticsearch exporter wrote (otel mapping mode) -------------------

#: 26 `_source` documents (24 events and 2 checkpoints of one stream) that the contrib elasticsearch exporter
#: (v0.147.0, collector-config/agent.yaml) wrote into the Elasticsearch stand-in, and the public keyring
COLLECTOR_ES = Path(__file__).parent / "data" / "collector-es"
COLLECTOR_STREAM = "5b51e8a87814d4faba473627987ef349"


def _collector_sources() -> list[dict]:
    return [json.loads(line) for line in (COLLECTOR_ES / "sources.ndjson").read_text(encoding="utf-8").splitlines()]


def _stream_of(out: subprocess.CompletedProcess[str]) -> dict:
    (s,) = json.loads(out.stdout)["streams"]
    return s


def test_collector_otel_documents_verify_in_every_export_shape(tmp_path: Path) -> None:
    """The collector's otel-mode documents verify from the CLI as bare `_source` NDJSON, as a `_search` response,
    as NDJSON of hits and as a JSON array of hits: exit 0, every seq, the stream closed."""
    sources = _collector_sources()
    hits = [{"_index": ".ds-logs-otel_audit.otel-default-2026.12.02-000001", "_id": f"id{n}", "_score": 1.0,
             "_source": s} for n, s in enumerate(sources)]
    shapes = {
        "sources.ndjson": "".join(json.dumps(s) + "\n" for s in sources),
        "search.json": json.dumps({"took": 1, "timed_out": False, "hits": {"total": {"value": len(hits)},
                                                                           "hits": hits}}, indent=2),
        "hits.ndjson": "".join(json.dumps(h) + "\n" for h in hits),
        "hits.json": json.dumps(hits),
    }
    for name, text in shapes.items():
        f = tmp_path / name
        f.write_text(text, encoding="utf-8")
        out = _cli("--keys", str(COLLECTOR_ES / "keyring.json"), "--format", "json", str(f))
        assert out.returncode == 0, (name, out.stdout[-2000:], out.stderr[-2000:])
        s = _stream_of(out)
        assert (s["stream_id"], s["records"], s["missing"], s["state"]) == (COLLECTOR_STREAM, 26, [], "closed"), name
        assert set(kinds_of(f)) == {"elastic"}, name


def test_collector_otel_document_altered_or_removed_is_named(tmp_path: Path) -> None:
    """An attribute of one collector-written document edited at rest: exit 1, its seq modified; one document
    removed: exit 1, its seq missing."""
    sources = _collector_sources()
    target = next(s for s in sources if s["attributes"].get("user.id"))
    seq = target["attributes"]["audit.stream.seq"]
    target["attributes"]["user.id"] = "someone-else"
    edited = tmp_path / "edited.ndjson"
    edited.write_text("".join(json.dumps(s) + "\n" for s in sources), encoding="utf-8")
    out = _cli("--keys", str(COLLECTOR_ES / "keyring.json"), "--format", "json", str(edited))
    assert out.returncode == 1 and _stream_of(out)["modified"] == [seq], out.stdout[-2000:]
    text = _cli("--keys", str(COLLECTOR_ES / "keyring.json"), str(edited))
    assert text.returncode == 1 and f"modified: seq {seq}\n" in text.stdout

    sources = _collector_sources()
    gone = sources.pop(5)["attributes"]["audit.stream.seq"]
    gap = tmp_path / "gap.ndjson"
    gap.write_text("".join(json.dumps(s) + "\n" for s in sources), encoding="utf-8")
    out = _cli("--keys", str(COLLECTOR_ES / "keyring.json"), "--format", "json", str(gap))
    assert out.returncode == 1 and _stream_of(out)["missing"] == [[gone, gone]], out.stdout[-2000:]
