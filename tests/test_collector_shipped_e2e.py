"""The shipped collector configs, run as shipped, delivering signed records into every SIEM stand-in.

Starts, on loopback: the Splunk HEC and Elasticsearch stand-ins (tests/standins/), two back-end
collectors (OTLP in, file archive out), `collector-config/gateway.yaml` load-balancing over them, and
`collector-config/agent.yaml` with every exporter pointed by its environment variables alone (no
edited copy of the file) at those: splunk_hec/audit -> HEC stand-in, elasticsearch/audit -> ES
stand-in, otlp_http/audit -> the gateway -> the back ends. Two producers send signed records (with
`embed_record`, so that Splunk's copy verifies on its own) to the agent. What each far end stored is
then checked by `otel-audit verify` with the public keys only: the agent's archive, the back ends'
archives, a Splunk search export, an Elasticsearch `_search` response and an NDJSON of its
`_source` documents (what the contrib exporter writes in otel mapping mode) -- every seq of both
streams present, both streams closed. One agent run serves those tests; a second one, of agent.yaml
with the agent-datadog.yaml overlay on the datadog build (DD_LOGS_ENDPOINT at the Datadog stand-in),
serves the Datadog tests.

The HEC stand-in is run with the relaxation tests/test_collector_siem_e2e.py explains (numbers and
booleans in `fields`, which the contrib exporter sends). The Elasticsearch stand-in runs strict; a
separate run shows it refusing what a real Elasticsearch refuses: a plain index as `logs_index`
(agent.yaml used to ship `otel-audit`), because the exporter's otel mode sends require_data_stream=true.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from collector import CONFIG_DIR, Collector, collector_binary, free_port
from conftest import child_env
from standins.datadog import DEFAULT_API_KEY as DD_API_KEY
from standins.datadog import DatadogStandIn
from standins.elastic import DEFAULT_API_KEY, ElasticStandIn
from standins.splunk import DEFAULT_TOKEN
from test_collector_e2e import AGENT_ENDPOINTS, Produced
from test_collector_siem_e2e import SINK, LenientHec, _seq_count, _wait, produce

from otel_audit import keys
from otel_audit.canonical import STREAM_SEQ

KEY_NAME = "collector-shipped-e2e"
N_RECORDS = 150  # per producer; two producers
GATEWAY_ENDPOINTS = ("OTEL_AUDIT_GATEWAY_GRPC_ENDPOINT", "OTEL_AUDIT_GATEWAY_HTTP_ENDPOINT")


@dataclass
class Delivered:
    """What one run of the shipped configs left at each far end."""

    streams: list[Produced]
    agent_archive: Path
    backend_archives: list[Path]
    hec_export: Path  # a Splunk search export (GET /services/search/jobs/export?output_mode=json)
    es_search: Path  # one Elasticsearch _search response holding every stored document
    es_sources: Path  # NDJSON, one `_source` per line
    es_indices: dict[str, bool]
    es_rejections: list[dict[str, Any]]
    agent_log: str


def cli(keys_dir: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """`python -m otel_audit.cli verify --keys <public keyring> ...`, as an auditor runs it."""
    return subprocess.run(
        [sys.executable, "-m", "otel_audit.cli", "verify", "--no-progress", "--keys",
         str(keys_dir / keys.KEYRING_FILE), *map(str, args)],
        capture_output=True, text=True, env=child_env(), timeout=120, check=False,
    )


def _streams_of(out: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return {s["stream_id"]: s for s in json.loads(out.stdout)["streams"]}


def assert_whole(out: subprocess.CompletedProcess[str], streams: list[Produced]) -> None:
    """Exit 0, and every stream verified with every seq present and its end checkpoint (closed)."""
    got = _streams_of(out)
    assert set(got) == {p.stream_id for p in streams}, sorted(got)
    for p in streams:
        s = got[p.stream_id]
        assert (s["status"], s["records"], s["length"], s["missing"], s["modified"], s["state"]) == (
            "verified", p.length, p.length, [], [], "closed"), s


def _agent_env(d: Path, hec: LenientHec, es: ElasticStandIn, otlp_url: str, **over: str) -> dict[str, str]:
    """Every variable agent.yaml requires, pointed at the stand-ins and at an OTLP/HTTP receiver."""
    return {
        "OTEL_AUDIT_AGENT_DIR": str(d / "agent"),
        "SPLUNK_HEC_ENDPOINT": f"{hec.url}/services/collector",
        "SPLUNK_HEC_TOKEN": DEFAULT_TOKEN,
        "ELASTICSEARCH_ENDPOINT": es.url,
        "ELASTICSEARCH_API_KEY": DEFAULT_API_KEY,
        "AUDIT_OTLP_ENDPOINT": otlp_url,
        "AUDIT_OTLP_AUTHORIZATION": "Bearer shipped-e2e",
        "TELEMETRY_OTLP_ENDPOINT": f"127.0.0.1:{free_port()}",  # the telemetry pipeline is not under test
        **over,
    }


@pytest.fixture(scope="module")
def shipped_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("shipped-keys")
    keys.generate(d, KEY_NAME)
    return d


def _seqs_at_hec(hec: LenientHec) -> set[tuple[str, int]]:
    return {(e["fields"].get("audit.stream.id"), e["fields"].get(STREAM_SEQ)) for e in hec.events()}


def _seqs_at_es(es: ElasticStandIn) -> set[tuple[str, int]]:
    out = set()
    for src in es.sources():
        a = src.get("attributes") or {}
        out.add((a.get("audit.stream.id"), a.get(STREAM_SEQ)))
    return out


@pytest.fixture(scope="module")
def delivered(tmp_path_factory: pytest.TempPathFactory, shipped_keys: Path) -> Iterator[Delivered]:
    """One run: two producers -> agent.yaml -> {archive, HEC stand-in, ES stand-in, gateway.yaml -> 2 back ends}."""
    d = tmp_path_factory.mktemp("shipped")
    archives = [d / f"backend{k}" / "archive.jsonl" for k in range(2)]
    backends = [Collector(SINK, env={"ARCHIVE": str(a)}, endpoints=["OTLP_GRPC", "OTLP_HTTP"], workdir=a.parent)
                for a in archives]
    hostnames = "[" + ", ".join(b.endpoint("OTLP_GRPC") for b in backends) + "]"
    gateway = Collector(CONFIG_DIR / "gateway.yaml",
                        env={"OTEL_AUDIT_BACKENDS": hostnames, "OTEL_AUDIT_BACKENDS_INSECURE": "true",
                             "OTEL_AUDIT_GATEWAY_DIR": str(d / "gateway")},
                        endpoints=GATEWAY_ENDPOINTS, workdir=d / "gateway-run")
    started: list[Collector] = []
    with LenientHec() as hec, ElasticStandIn() as es:
        agent = Collector(CONFIG_DIR / "agent.yaml",
                          env=_agent_env(d, hec, es, f"http://{gateway.endpoint('OTEL_AUDIT_GATEWAY_HTTP_ENDPOINT')}"),
                          endpoints=AGENT_ENDPOINTS, workdir=d / "agent-run")
        try:
            for c in (*backends, gateway, agent):
                c.start()
                started.append(c)
            url = f"http://{agent.endpoint('OTEL_AUDIT_AGENT_HTTP_ENDPOINT')}"
            results: dict[int, Produced] = {}

            def run(k: int) -> None:
                results[k] = produce(url, shipped_keys, N_RECORDS, instance=f"producer-{k}", embed_record=True)

            threads = [threading.Thread(target=run, args=(k,), name=f"shipped-producer-{k}") for k in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert len(results) == 2, "a producer did not finish"
            streams = [results[0], results[1]]
            want = {(p.stream_id, s) for p in streams for s in range(p.length)}
            total = len(want)

            def at() -> dict[str, int]:
                return {"HEC stand-in": len(want & _seqs_at_hec(hec)), "ES stand-in": len(want & _seqs_at_es(es)),
                        "back ends": sum(_seq_count(a) for a in archives if a.exists())}

            # the ES exporter's batch waits up to its flush_timeout (5 s in agent.yaml)
            deadline = time.monotonic() + 60
            while any(n < total for n in at().values()) and time.monotonic() < deadline:
                time.sleep(0.2)
            short = {k: n for k, n in at().items() if n < total}
            assert not short, (f"after 60 s, of {total} seqs only {short} arrived; ES refused "
                               f"{len(es.rejections)}, e.g. {es.rejections[:1]}")
        finally:
            for c in reversed(started):
                c.stop()
        agent_log = agent.log_text()
        hec_export = d / "splunk-export.json"
        hec_export.write_bytes(hec.search_export())
        es_search = d / "es-search.json"
        es_search.write_text(json.dumps(es.search_response()), encoding="utf-8")
        es_sources = d / "es-sources.ndjson"
        es_sources.write_text("".join(json.dumps(s) + "\n" for s in es.sources()), encoding="utf-8")
        yield Delivered(streams, d / "agent" / "archive" / "audit.jsonl", [a for a in archives if a.exists()],
                        hec_export, es_search, es_sources, es.indices, list(es.rejections), agent_log)


def test_agent_archive_verifies(delivered: Delivered, shipped_keys: Path) -> None:
    """agent.yaml's own archive holds both streams whole: `otel-audit verify` exits 0."""
    assert_whole(cli(shipped_keys, "--format", "json", delivered.agent_archive), delivered.streams)


def test_splunk_copy_verifies_from_splunk_alone(delivered: Delivered, shipped_keys: Path) -> None:
    """What agent.yaml's splunk_hec/audit left in Splunk, as a search export, verifies on its own: every seq."""
    assert_whole(cli(shipped_keys, "--format", "json", delivered.hec_export), delivered.streams)


def test_elasticsearch_copy_is_a_data_stream_and_refused_nothing(delivered: Delivered) -> None:
    """agent.yaml's elasticsearch/audit writes into the data stream it names, and the stand-in refused nothing."""
    assert delivered.es_indices == {"logs-otel_audit.otel-default": True}
    assert delivered.es_rejections == []
    assert "require_data_stream" not in delivered.agent_log


def test_elasticsearch_search_response_verifies_from_the_cli(delivered: Delivered, shipped_keys: Path) -> None:
    """`otel-audit verify` on a _search response of the collector-written documents: exit 0, every seq."""
    assert_whole(cli(shipped_keys, "--format", "json", delivered.es_search), delivered.streams)
    text = cli(shipped_keys, delivered.es_search)
    assert text.returncode == 0 and "VERIFIED" in text.stdout, text.stdout + text.stderr


def test_elasticsearch_source_documents_verify_from_the_cli(delivered: Delivered, shipped_keys: Path) -> None:
    """`otel-audit verify` on an NDJSON of the stored `_source` documents: exit 0, every seq."""
    assert_whole(cli(shipped_keys, "--format", "json", "--source", "elastic", delivered.es_sources),
                 delivered.streams)


def test_elasticsearch_document_altered_at_rest_is_named(delivered: Delivered, shipped_keys: Path,
                                                         tmp_path: Path) -> None:
    """One attribute of one stored document changed: exit 1, that stream failed and the seq named as modified."""
    resp = json.loads(delivered.es_search.read_text(encoding="utf-8"))
    hits = resp["hits"]["hits"]
    target = next(h for h in hits if (h["_source"].get("attributes") or {}).get("i") == 77)
    attrs = target["_source"]["attributes"]
    stream, seq = attrs["audit.stream.id"], attrs[STREAM_SEQ]
    attrs["user.id"] = "someone-else"
    edited = tmp_path / "es-search-edited.json"
    edited.write_text(json.dumps(resp), encoding="utf-8")
    out = cli(shipped_keys, "--format", "json", edited)
    assert out.returncode == 1, out.stdout + out.stderr
    rep = {s["stream_id"]: s for s in json.loads(out.stdout)["streams"]}
    assert rep[stream]["modified"] == [seq]
    text = cli(shipped_keys, edited)
    assert text.returncode == 1
    failed = next(line for line in text.stdout.splitlines() if line.startswith("FAILED   stream"))
    assert stream in failed and f"PROBLEM: modified: seq {seq}\n" in text.stdout, text.stdout[-3000:]


def test_gateway_back_ends_hold_each_stream_whole(delivered: Delivered, shipped_keys: Path) -> None:
    """Through agent.yaml's otlp_http/audit and gateway.yaml: the back ends' archives together verify, and each
    stream lies whole on exactly one back end."""
    assert_whole(cli(shipped_keys, "--format", "json", *delivered.backend_archives), delivered.streams)
    for p in delivered.streams:
        holders = [a for a in delivered.backend_archives if p.stream_id in a.read_text(encoding="utf-8")]
        assert len(holders) == 1, f"stream {p.stream_id} on {len(holders)} back ends"


# -- what a real Elasticsearch refuses, and agent.yaml used to ship ------------------------------------


def test_a_plain_index_as_logs_index_is_refused(tmp_path: Path, shipped_keys: Path) -> None:
    """agent.yaml with a plain index as its Elasticsearch target (`otel-audit`, the name it used to ship): the
    exporter's otel mode sends require_data_stream=true, and the strict stand-in refuses every document as
    Elasticsearch does (404 index_not_found_exception), storing none -- while the archive still gets them."""
    dead = f"127.0.0.1:{free_port()}"
    with LenientHec() as hec, ElasticStandIn() as es:
        env = _agent_env(tmp_path, hec, es, f"http://{dead}", ELASTICSEARCH_AUDIT_DATA_STREAM="otel-audit")
        with Collector(CONFIG_DIR / "agent.yaml", env=env, endpoints=AGENT_ENDPOINTS,
                       workdir=tmp_path / "agent-run") as agent:
            produced = produce(f"http://{agent.endpoint('OTEL_AUDIT_AGENT_HTTP_ENDPOINT')}", shipped_keys, 20)
            _wait(lambda: sum(1 for r in es.rejections if r.get("level") == "item") >= produced.length, 30,
                  "the ES stand-in to refuse every document")
            time.sleep(0.5)
        assert es.documents() == [] and es.indices == {}
        refused = [r for r in es.rejections if r.get("level") == "item"]
        assert {(r["status"], r["type"]) for r in refused} == {(404, "index_not_found_exception")}
        assert all("requires a data stream" in r["reason"] for r in refused)
        assert _seq_count(tmp_path / "agent" / "archive" / "audit.jsonl") == produced.length


# -- agent.yaml + agent-datadog.yaml (the datadog build) ---------------------------------------------


@pytest.fixture(scope="module")
def delivered_datadog(tmp_path_factory: pytest.TempPathFactory, shipped_keys: Path
                      ) -> Iterator[tuple[DatadogStandIn, Produced, Path]]:
    """One run of agent.yaml with the agent-datadog.yaml overlay (the collector of builder-config-datadog.yaml),
    every exporter at a stand-in, Datadog's logs intake at the Datadog stand-in (DD_LOGS_ENDPOINT)."""
    d = tmp_path_factory.mktemp("shipped-dd")
    binary = collector_binary(CONFIG_DIR / "builder-config-datadog.yaml")
    sink = Collector(SINK, env={"ARCHIVE": str(d / "sink.jsonl")}, endpoints=["OTLP_GRPC", "OTLP_HTTP"],
                     workdir=d / "sink")
    with LenientHec() as hec, ElasticStandIn() as es, DatadogStandIn() as dd, sink:
        env = _agent_env(d, hec, es, sink.url("OTLP_HTTP"), DD_API_KEY=DD_API_KEY, DD_LOGS_ENDPOINT=dd.url)
        with Collector(CONFIG_DIR / "agent.yaml", env=env, endpoints=AGENT_ENDPOINTS, binary=binary,
                       extra_configs=[CONFIG_DIR / "agent-datadog.yaml"], workdir=d / "agent-run") as agent:
            produced = produce(f"http://{agent.endpoint('OTEL_AUDIT_AGENT_HTTP_ENDPOINT')}", shipped_keys, 80,
                               embed_record=True)

            def seqs() -> set[int]:
                return {ev["attributes"]["attributes"].get("audit", {}).get("stream", {}).get("seq")
                        for ev in dd.events()}

            # the exporter's batch (5 s) and the embedded logs-agent's batch_wait (5 s)
            _wait(lambda: set(range(produced.length)) <= seqs(), 60, "every seq at the Datadog stand-in")
        export = d / "datadog-export.json"
        export.write_text(json.dumps(dd.export()), encoding="utf-8")
        yield dd, produced, export


def test_datadog_copy_verifies_from_datadog_alone(delivered_datadog: tuple[DatadogStandIn, Produced, Path],
                                                  shipped_keys: Path) -> None:
    """What agent-datadog.yaml's datadog/audit left in Datadog, as saved search pages, verifies on its own
    (embed_record): exit 0, every seq, the stream closed."""
    _, produced, export = delivered_datadog
    assert_whole(cli(shipped_keys, "--format", "json", export), [produced])


def test_datadog_log_altered_at_rest_is_named(delivered_datadog: tuple[DatadogStandIn, Produced, Path],
                                              shipped_keys: Path, tmp_path: Path) -> None:
    """One stored log's canonical content edited at rest: exit 1, its seq named as modified."""
    _, produced, export = delivered_datadog
    pages = json.loads(export.read_text(encoding="utf-8"))
    for ev in pages[0]["data"]:
        a = ev["attributes"]["attributes"]
        rec = (a.get("audit") or {}).get("integrity", {}).get("record")
        if isinstance(rec, str) and '"user.id":"' in rec:
            a["audit"]["integrity"]["record"] = rec.replace('"user.id":"', '"user.id":"x', 1)
            seq = a["audit"]["stream"]["seq"]
            break
    else:
        raise AssertionError("no stored log with a user.id")
    edited = tmp_path / "datadog-edited.json"
    edited.write_text(json.dumps(pages), encoding="utf-8")
    out = cli(shipped_keys, "--format", "json", edited)
    assert out.returncode == 1, out.stdout + out.stderr
    (s,) = json.loads(out.stdout)["streams"]
    assert s["stream_id"] == produced.stream_id and s["modified"] == [seq]
