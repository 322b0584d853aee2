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
