"""Signed audit records through the real collector's own SIEM and forwarding exporters, checked at the far end.

Paths: contrib `splunk_hec` -> SplunkHecStandIn; contrib `elasticsearch` (otel mapping mode) ->
ElasticStandIn; `otlp_http` -> a second collector -> file; a loadbalancing gateway over two back-end
collectors; and the Splunk stand-in down for 30 s behind a persistent queue.

One stand-in rule is relaxed here, in a subclass, because the contrib exporter breaks it and real
servers are believed not to [unverified against a real Splunk]:
* SplunkHecStandIn refuses `fields` values that are not strings (HEC code 15; Splunk's "Automate indexed
  field extractions with HEC" page says "Only strings can be used as field values"); the contrib exporter
  sends numbers and booleans there (audit.stream.seq, otel.log.severity.number, int/bool attributes;
  pkg/translator/splunk logs_to_splunk.go of v0.147.0).
(The Elasticsearch stand-in needs no relaxing: `_bulk` with Content-Type application/json, which the
contrib exporter's bulk indexer sends, is accepted by Elasticsearch's RestController, and so by the stand-in.)

What the contrib splunk_hec exporter (v0.147.0) cannot carry, so that a record cannot be re-verified
from Splunk alone: the event name (not sent), the timestamp below the millisecond, empty bodies (the
record is dropped). The tests prove what it does carry: every seq, its chained digests, its fields.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from collector import CONFIG_DIR, Collector
from conftest import Archive, is_checkpoint, mixed_record, seq_of, stream_of
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from standins.elastic import DEFAULT_API_KEY, ElasticStandIn
from standins.splunk import DEFAULT_TOKEN, SplunkHecStandIn
from test_collector_e2e import Produced, cli_verify

from otel_audit import keys
from otel_audit.canonical import DIGEST, PREV_DIGEST, STREAM_ID, STREAM_SEQ
from otel_audit.keys import Keyring
from otel_audit.processors.signing import SigningProcessor
from otel_audit.sources.elastic import records_from_otel_documents
from otel_audit.sources.splunk import contrib_hec_mismatches, records_from_contrib_hec
from otel_audit.verify import Verifier

KEY_NAME = "collector-siem-e2e"
RESOURCE_ATTR = ("collector.e2e", "added-in-transit")


# -- the HEC stand-in, with the one rule the contrib exporter breaks relaxed ----------------------


class LenientHec(SplunkHecStandIn):
    """The HEC stand-in, but numbers and booleans in `fields` are accepted (checked as their text)."""

    def _check(self, env: Any, n: int, tok: Any) -> None:
        if isinstance(env, dict) and isinstance(env.get("fields"), dict):
            def text(v: Any) -> Any:
                return v if isinstance(v, (str, list, dict)) or v is None else json.dumps(v)
            env = {**env, "fields": {k: text(v) for k, v in env["fields"].items()}}
        super()._check(env, n, tok)



# -- the producer -------------------------------------------------------------------------------------


def siem_record(i: int) -> dict[str, Any]:
    """Record i for the SIEM paths: mixed_record's attributes (every type) and a non-empty string body.

    The contrib exporters drop or re-type other bodies (an empty body never leaves splunk_hec; a body
    whose JSON type changes between records breaks an Elasticsearch dynamic mapping)."""
    kw = mixed_record(i)
    kw["body"] = f"event {i}: caf\u00e9 \U0001f600"
    return kw


def produce(endpoint: str, keys_dir: Path, n: int, *, record: Callable[[int], dict[str, Any]] = siem_record,
            instance: str = "producer-1", pause_every: int = 0, pause_s: float = 0.0,
            progress: list[int] | None = None, embed_record: bool = False) -> Produced:
    """Emit n signed records to an OTLP/HTTP base URL, then shut down (end checkpoint)."""
    exporter = OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", timeout=30)
    batch = BatchLogRecordProcessor(exporter, max_queue_size=100_000, max_export_batch_size=64,
                                    schedule_delay_millis=50)
    resource = Resource.create({"service.name": "collector-siem-e2e", "service.instance.id": instance})
    provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
    sp = SigningProcessor(keys_dir, downstream=batch, checkpoint_every=50, checkpoint_interval=3600.0,
                          resource=resource, embed_record=embed_record)
    provider.add_log_record_processor(sp)
    logger = provider.get_logger("otel_audit.tests.collector_siem")
    for i in range(n):
        logger.emit(**record(i))
        if progress is not None:
            progress.append(i)
        if pause_every and i % pause_every == pause_every - 1:
            time.sleep(pause_s)
    provider.shutdown()
    return Produced(sp.stream_id, sp.seq)


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _attrs(rec: dict[str, Any]) -> dict[str, Any]:
    from otel_audit.verify import decode_value

    return {kv["key"]: decode_value(kv.get("value") or {}) for kv in rec.get("attributes") or ()}


def _verify(records: Iterator[tuple[str, dict[str, Any]]], ring: Keyring) -> Any:
    v = Verifier(ring)
    for where, rec in records:
        v.add_record(rec, where)
    return v.finish()


@pytest.fixture(scope="module")
def siem_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("siem-keys")
    keys.generate(d, KEY_NAME)
    return d


PIPELINE = """
extensions:
  health_check:
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${env:OTLP_HTTP}
processors:
  resource:
    attributes:
      - {key: collector.e2e, value: added-in-transit, action: upsert}
  batch:
    timeout: 200ms
    send_batch_size: 128
exporters:
%(exporters)s
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [resource, batch]
      exporters: [%(names)s]
"""


# -- 1. splunk_hec --------------------------------------------------------------------------------------

HEC_EXPORTER = """
  splunk_hec:
    endpoint: ${env:HEC_URL}/services/collector
    token: ${env:HEC_TOKEN}
    disable_compression: true
"""


ARCHIVE_EXPORTER = """
  file:
    path: ${env:ARCHIVE}
    format: json
    append: true
    flush_interval: 100ms
"""


@pytest.fixture(scope="module")
def through_hec(tmp_path_factory: pytest.TempPathFactory, siem_keys: Path
                ) -> Iterator[tuple[list[dict], Produced, Path]]:
    """120 signed records through the collector's splunk_hec exporter into the (lenient) HEC stand-in, and
    through the same collector's file exporter into an archive (the verifiable copy)."""
    d = tmp_path_factory.mktemp("siem-hec")
    archive = d / "archive.jsonl"
    cfg = PIPELINE % {"exporters": HEC_EXPORTER + ARCHIVE_EXPORTER, "names": "splunk_hec, file"}
    with LenientHec() as hec:
        with Collector(cfg, env={"HEC_URL": hec.url, "HEC_TOKEN": DEFAULT_TOKEN, "ARCHIVE": str(archive)},
                       endpoints=["OTLP_HTTP"], workdir=d / "otelcol") as c:
            produced = produce(c.url("OTLP_HTTP"), siem_keys, 120)
            _wait(lambda: hec.count >= produced.length and _seq_count(archive) >= produced.length, 30,
                  "every record at the HEC stand-in and in the archive")
        yield hec.events(), produced, archive


def test_hec_carries_every_seq_and_its_chain(through_hec: tuple[list[dict], Produced, Path]) -> None:
    """Every seq arrives once at Splunk with its chained digests intact: prev of n is the digest of n-1."""
    events, produced, _ = through_hec
    fields = [e["fields"] for e in events]
    assert all(f[STREAM_ID] == produced.stream_id for f in fields)
    by_seq = {f[STREAM_SEQ]: f for f in fields}
    assert sorted(by_seq) == list(range(produced.length)) and len(fields) == produced.length
    for s in range(1, produced.length):
        assert by_seq[s][PREV_DIGEST] == by_seq[s - 1][DIGEST], s
    # The resource processor's attribute went through, merged into the flat fields.
    assert all(f[RESOURCE_ATTR[0]] == RESOURCE_ATTR[1] for f in fields)


def test_hec_rebuild_keeps_body_severity_attributes_but_not_event_name_or_nanoseconds(
    through_hec: tuple[list[dict], Produced, Path], siem_keys: Path
) -> None:
    """The rebuilt records carry body, severity and scalar attributes exactly, but no event name and only
    millisecond time, so the verifier must (and does) call every one of them modified."""
    events, produced, _ = through_hec
    recs = list(records_from_contrib_hec(events, resource_keys=(RESOURCE_ATTR[0], "service.name",
                                                                 "service.instance.id", "telemetry.sdk.language",
                                                                 "telemetry.sdk.name", "telemetry.sdk.version")))
    for _, rec in recs:
        a = _attrs(rec)
        if a.get("i") is None:
            continue  # a checkpoint
        i = a["i"]
        want = siem_record(i)
        assert rec["body"] == {"stringValue": want["body"]}
        assert (rec["severityNumber"], rec["severityText"]) == (int(want["severity_number"].value),
                                                                 want["severity_text"])
        assert a["user.id"] == want["attributes"]["user.id"] and a["ok"] is want["attributes"]["ok"]
        assert "eventName" not in rec  # the contrib exporter does not send it
        assert int(rec["timeUnixNano"]) % 1_000_000 == 0  # milliseconds only
    assert not any("event_name" in json.dumps(e) or "eventName" in json.dumps(e) for e in events)
    rep = _verify(iter(recs), Keyring.load(siem_keys))
    assert not rep.ok
    (s,) = rep.streams
    assert s.modified == list(range(produced.length))
    assert s.checkpoints == 0  # without an event name not even a checkpoint is recognisable


def test_hec_events_match_the_verified_archive(through_hec: tuple[list[dict], Produced, Path], siem_keys: Path
                                              ) -> None:
    """Every part the HEC events carry equals the collector archive's record of the same seq, and that archive
    verifies: what reached Splunk is proven through the copy that can be verified."""
    events, produced, archive = through_hec
    out = cli_verify(siem_keys, archive, fmt="json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert contrib_hec_mismatches(events, list(Archive.load(archive).records())) == []


def test_hec_event_altered_at_rest_is_named(through_hec: tuple[list[dict], Produced, Path]) -> None:
    """One field of one stored HEC event changed at rest: the cross-check against the verified archive names its seq."""
    events, _, archive = through_hec
    edited = json.loads(json.dumps(events))
    target = next(e for e in edited if e["fields"].get("i") == 77)
    seq = target["fields"][STREAM_SEQ]
    target["fields"]["user.id"] = "someone-else"
    found = contrib_hec_mismatches(edited, list(Archive.load(archive).records()))
    assert found == [f"stream {target['fields'][STREAM_ID]} seq {seq}: field user.id differs from the signed record"]


# -- 2. elasticsearch (otel mapping mode) -------------------------------------------------------------------

ES_EXPORTER = """
  elasticsearch:
    endpoint: ${env:ES_URL}
    api_key: ${env:ES_KEY}
    mapping:
      mode: otel
    sending_queue:
      batch:
        flush_timeout: 200ms
"""


@pytest.fixture(scope="module")
def through_es(tmp_path_factory: pytest.TempPathFactory, siem_keys: Path) -> Iterator[tuple[ElasticStandIn, Produced]]:
    """120 signed records through the collector's elasticsearch exporter (otel mode) into the ES stand-in."""
    d = tmp_path_factory.mktemp("siem-es")
    cfg = PIPELINE % {"exporters": ES_EXPORTER, "names": "elasticsearch"}
    es = ElasticStandIn().start()
    try:
        with Collector(cfg, env={"ES_URL": es.url, "ES_KEY": DEFAULT_API_KEY}, endpoints=["OTLP_HTTP"],
                       workdir=d / "otelcol") as c:
            produced = produce(c.url("OTLP_HTTP"), siem_keys, 120)
            _wait(lambda: len(es.documents()) >= produced.length, 30, "every record at the ES stand-in")
        yield es, produced
    finally:
        es.stop()


def test_es_otel_documents_rebuild_and_verify(through_es: tuple[ElasticStandIn, Produced], siem_keys: Path) -> None:
    """Records rebuilt from the otel-mode documents verify: every seq, event name, ns time, types, bytes."""
    es, produced = through_es
    hits = es.search_response()["hits"]["hits"]
    rep = _verify(records_from_otel_documents(hits), Keyring.load(siem_keys))
    assert rep.ok, json.dumps(rep.to_json())[:3000]
    (s,) = rep.streams
    assert (s.stream_id, s.records, s.state) == (produced.stream_id, produced.length, "closed")


def test_es_document_altered_at_rest_is_named(through_es: tuple[ElasticStandIn, Produced], siem_keys: Path) -> None:
    """Changing one attribute of one stored document makes the verifier fail and name that seq."""
    es, _ = through_es
    hits = json.loads(json.dumps(es.search_response()["hits"]["hits"]))
    target = next(h for h in hits if (h["_source"].get("attributes") or {}).get("i") == 77)
    seq = target["_source"]["attributes"][STREAM_SEQ]
    target["_source"]["attributes"]["user.id"] = "someone-else"
    rep = _verify(records_from_otel_documents(hits), Keyring.load(siem_keys))
    assert not rep.ok
    assert rep.streams[0].modified == [seq]


# -- 3. otlp_http -> a second collector -> file -----------------------------------------------------------

SINK = """
extensions:
  health_check:
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:OTLP_GRPC}
      http:
        endpoint: ${env:OTLP_HTTP}
exporters:
  file:
    path: ${env:ARCHIVE}
    format: json
    append: true
    flush_interval: 100ms
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
"""

FORWARD_EXPORTER = """
  otlp_http:
    endpoint: ${env:NEXT_HOP}
"""


def test_otlp_http_to_a_second_collector_verifies(tmp_path: Path, siem_keys: Path) -> None:
    """Producer -> collector -> otlp_http exporter -> second collector -> file: `otel-audit verify` exits 0."""
    archive = tmp_path / "sink" / "archive.jsonl"
    with Collector(SINK, env={"ARCHIVE": str(archive)}, endpoints=["OTLP_GRPC", "OTLP_HTTP"],
                   workdir=tmp_path / "sink") as sink:
        cfg = PIPELINE % {"exporters": FORWARD_EXPORTER, "names": "otlp_http"}
        with Collector(cfg, env={"NEXT_HOP": sink.url("OTLP_HTTP")}, endpoints=["OTLP_HTTP"],
                       workdir=tmp_path / "first") as first:
            produced = produce(first.url("OTLP_HTTP"), siem_keys, 300, record=mixed_record)
            _wait(lambda: archive.exists() and _seq_count(archive) >= produced.length, 30, "the sink archive")
    out = cli_verify(siem_keys, archive, fmt="json")
    assert out.returncode == 0, out.stdout + out.stderr
    (s,) = json.loads(out.stdout)["streams"]
    assert (s["stream_id"], s["records"], s["state"]) == (produced.stream_id, produced.length, "closed")


def _seq_count(path: Path) -> int:
    """Distinct (stream, seq) pairs in an archive a collector may still be writing to."""
    try:
        return len({(stream_of(r), seq_of(r)) for r in Archive.load(path).records()})
    except (ValueError, json.JSONDecodeError):
        return 0  # a line half written


# -- 4. a loadbalancing gateway over two back ends ------------------------------------------------------


def test_gateway_keeps_each_stream_whole_on_one_back_end(tmp_path: Path, siem_keys: Path) -> None:
    """Three producers through gateway.yaml over two back-end collectors: each stream lands whole on exactly
    one back end, and all back-end archives together verify with exit 0."""
    archives = [tmp_path / f"backend{k}" / "archive.jsonl" for k in range(2)]
    backends = [Collector(SINK, env={"ARCHIVE": str(a)}, endpoints=["OTLP_GRPC", "OTLP_HTTP"],
                          workdir=a.parent) for a in archives]
    hostnames = "[" + ", ".join(b.endpoint("OTLP_GRPC") for b in backends) + "]"
    gateway = Collector(
        CONFIG_DIR / "gateway.yaml",
        env={"OTEL_AUDIT_BACKENDS": hostnames, "OTEL_AUDIT_BACKENDS_INSECURE": "true",
             "OTEL_AUDIT_GATEWAY_DIR": str(tmp_path / "gateway")},
        endpoints=["OTEL_AUDIT_GATEWAY_GRPC_ENDPOINT", "OTEL_AUDIT_GATEWAY_HTTP_ENDPOINT"],
        workdir=tmp_path / "gateway-run",
    )
    for b in backends:
        b.start()
    try:
        gateway.start()
        url = f"http://{gateway.endpoint('OTEL_AUDIT_GATEWAY_HTTP_ENDPOINT')}"
        streams = [produce(url, siem_keys, 150, record=mixed_record, instance=f"producer-{k}") for k in range(3)]
        total = sum(p.length for p in streams)
        _wait(lambda: sum(_seq_count(a) for a in archives if a.exists()) >= total, 60, "every stream at a back end")
    finally:
        gateway.stop()
        for b in backends:
            b.stop()
    present = [a for a in archives if a.exists()]
    out = cli_verify(siem_keys, *present, fmt="json")
    assert out.returncode == 0, out.stdout + out.stderr
    rep = json.loads(out.stdout)
    assert {s["stream_id"] for s in rep["streams"]} == {p.stream_id for p in streams}
    for p in streams:
        holders = [a for a in present if any(stream_of(r) == p.stream_id for r in Archive.load(a).records())]
        assert len(holders) == 1, f"stream {p.stream_id} on {len(holders)} back ends"
        alone = json.loads(cli_verify(siem_keys, holders[0], fmt="json").stdout)
        (s,) = [s for s in alone["streams"] if s["stream_id"] == p.stream_id]
        assert (s["records"], s["missing"], s["state"]) == (p.length, [], "closed")


# -- 5. the Splunk stand-in down for 30 s behind a persistent queue --------------------------------------

FAULT = """
extensions:
  health_check:
  file_storage/queue:
    directory: ${env:QUEUE_DIR}
    create_directory: true
    fsync: true
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${env:OTLP_HTTP}
processors:
  resource:
    attributes:
      - {key: collector.e2e, value: added-in-transit, action: upsert}
exporters:
  file:
    path: ${env:ARCHIVE}
    format: json
    append: true
    flush_interval: 100ms
  splunk_hec:
    endpoint: ${env:HEC_URL}/services/collector
    token: ${env:HEC_TOKEN}
    disable_compression: true
    sending_queue:
      enabled: true
      storage: file_storage/queue
      block_on_overflow: true
      queue_size: 1000000
    retry_on_failure:
      enabled: true
      initial_interval: 500ms
      max_interval: 2s
      max_elapsed_time: 0
service:
  extensions: [health_check, file_storage/queue]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [resource]
      exporters: [file, splunk_hec]
"""


@pytest.mark.slow
def test_splunk_down_30s_loses_nothing(tmp_path: Path, siem_keys: Path) -> None:
    """The HEC stand-in down for 30 s mid-stream behind a file_storage queue retrying forever: every seq reaches
    it (duplicates at most), with the digests of the collector's own archive, which verifies."""
    archive = tmp_path / "archive.jsonl"
    progress: list[int] = []
    result: dict[str, Any] = {}
    n = 1500
    with LenientHec() as hec:
        cfg_env = {"HEC_URL": hec.url, "HEC_TOKEN": DEFAULT_TOKEN, "ARCHIVE": str(archive),
                   "QUEUE_DIR": str(tmp_path / "queue")}
        with Collector(FAULT, env=cfg_env, endpoints=["OTLP_HTTP"], workdir=tmp_path / "otelcol") as c:
            def run() -> None:
                try:
                    result["p"] = produce(c.url("OTLP_HTTP"), siem_keys, n, pause_every=10, pause_s=0.25,
                                          progress=progress)
                except BaseException as e:  # surfaced below
                    result["e"] = e

            t = threading.Thread(target=run, name="siem-fault-producer")
            t.start()
            _wait(lambda: hec.count > 0, 30, "first events at the HEC stand-in")
            hec.go_down()
            down_at = len(progress)
            time.sleep(30)
            during = len(progress) - down_at
            hec.come_up()
            t.join(180)
            assert not t.is_alive() and "e" not in result, result.get("e")
            produced: Produced = result["p"]
            _wait(lambda: len({e["fields"][STREAM_SEQ] for e in hec.events()}) >= produced.length, 120,
                  "the queue to drain into the HEC stand-in")
        assert during > 100, "the outage did not fall mid-stream"
        events = hec.events()
    out = cli_verify(siem_keys, archive, fmt="json")
    assert out.returncode == 0, out.stdout + out.stderr
    archived = {seq_of(r): r for r in Archive.load(archive).records()}
    digests = {s: next(kv["value"]["stringValue"] for kv in r["attributes"] if kv["key"] == DIGEST)
               for s, r in archived.items()}
    seen: dict[int, str] = {}
    for e in events:
        f = e["fields"]
        assert f[STREAM_ID] == produced.stream_id
        assert seen.setdefault(f[STREAM_SEQ], f[DIGEST]) == f[DIGEST]  # a duplicate is the same record
    assert seen == digests and sorted(seen) == list(range(produced.length))
    assert len([s for s, r in archived.items() if not is_checkpoint(r)]) == n


# -- 1b. splunk_hec with the signing processor's embed_record: verifiable from Splunk alone ------------


def test_hec_with_embedded_records_verifies_from_splunk_alone(tmp_path: Path, siem_keys: Path) -> None:
    """With embed_record, what the collector's splunk_hec exporter leaves in Splunk verifies on its own
    (exit 0 from a search export), and an edit of one stored record is named by seq (exit 1)."""
    import subprocess

    cfg = PIPELINE % {"exporters": HEC_EXPORTER, "names": "splunk_hec"}
    with LenientHec() as hec:
        with Collector(cfg, env={"HEC_URL": hec.url, "HEC_TOKEN": DEFAULT_TOKEN},
                       endpoints=["OTLP_HTTP"], workdir=tmp_path / "otelcol") as c:
            produced = produce(c.url("OTLP_HTTP"), siem_keys, 80, embed_record=True)
            _wait(lambda: hec.count >= produced.length, 30, "every record at the HEC stand-in")
        export = tmp_path / "splunk-export.json"
        export.write_bytes(hec.search_export())
    cmd = [sys.executable, "-m", "otel_audit.cli", "verify", "--no-progress", "--keys", str(siem_keys)]
    ok = subprocess.run([*cmd, str(export)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "closed" in ok.stdout and "VERIFIED" in ok.stdout, ok.stdout
    # alter one stored record's canonical content at rest (a user id inside it)
    lines = export.read_text().splitlines()
    for i, line in enumerate(lines):
        doc = json.loads(line)
        res = doc.get("result") or {}
        rec = res.get("audit.integrity.record")
        if isinstance(rec, str) and '"user.id":"' in rec:
            res["audit.integrity.record"] = rec.replace('"user.id":"', '"user.id":"x', 1)
            seq = int(res["audit.stream.seq"])
            lines[i] = json.dumps(doc)
            break
    else:
        raise AssertionError("no stored record with a user.id")
    export.write_text("\n".join(lines) + "\n")
    bad = subprocess.run([*cmd, "--format", "json", str(export)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert json.loads(bad.stdout)["streams"][0]["modified"] == [seq]
