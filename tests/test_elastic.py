"""The Elasticsearch exporter and reader, against the strict `_bulk` stand-in and the official client.

Starts, per test: an ``ElasticStandIn`` (tests/standins/elastic.py), a real HTTP server on
127.0.0.1. Pipelines are real: LoggerProvider + SigningProcessor + BatchLogRecordProcessor +
ElasticLogExporter; records are read back through the official ``elasticsearch`` client.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from conftest import mixed_record
from elasticsearch import Elasticsearch, helpers
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from otel_audit.canonical import CHECKPOINT_EVENT
from otel_audit.errors import ConfigError, InputError
from otel_audit.exporters._http import RetrySettings
from otel_audit.exporters.elastic import ElasticLogExporter, decode_cloud_id
from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.keys import Keyring
from otel_audit.processors.signing import SigningProcessor
from otel_audit.sources import elastic as source
from tests.standins import export_in_forked_child
from tests.standins.elastic import DEFAULT_API_KEY, ElasticStandIn

FAST = RetrySettings(initial_interval=0.05, max_interval=0.5, max_elapsed_time=60)
BRIEF = RetrySettings(initial_interval=0.05, max_interval=0.1, max_elapsed_time=0.5)  # gives up quickly
DS = "logs-otel_audit-default"
SECRET_ID, SECRET_VALUE = "k3y-id", "sup3r-s3cret-api-key-value"
SECRET_KEY = base64.b64encode(f"{SECRET_ID}:{SECRET_VALUE}".encode()).decode()
SECRET_PASSWORD = "pa55-w0rd-never-shown"


@pytest.fixture(autouse=True)
def _no_elastic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the machine's Elasticsearch settings out of every test."""
    import os

    for name in list(os.environ):
        if name.startswith("OTEL_AUDIT_ELASTIC_") or name == "ELASTICSEARCH_URL":
            monkeypatch.delenv(name)


@pytest.fixture
def es() -> Iterator[ElasticStandIn]:
    with ElasticStandIn(api_keys=(DEFAULT_API_KEY,)) as standin:
        yield standin


def exporter_for(es: ElasticStandIn, **kw: Any) -> ElasticLogExporter:
    kw.setdefault("api_key", DEFAULT_API_KEY)
    kw.setdefault("timeout", 5)
    kw.setdefault("retry", FAST)
    return ElasticLogExporter(es.url, **kw)


# records ------------------------------------------------------------------------------------------

_AUDIT = (
    ("authentication.login.succeeded", {"user.id": "u-1", "user.name": "alice", "client.address": "10.1.2.3",
                                        "audit.outcome": "success", "session.id": "s-1"}),
    ("authentication.login.failed", {"user.id": "u-2", "audit.reason": "bad password", "audit.outcome": "failure",
                                     "client.address": "gw.example.com"}),
    ("authorization.model.accessed", {"gen_ai.request.model": "gpt-x", "user.id": "u-3", "audit.outcome": "success",
                                      "http.request.method": "POST", "url.path": "/v1/chat"}),
    ("configuration.virtual_key.created", {"audit.actor.id": "admin-1", "audit.target.id": "vk-9",
                                           "audit.change.after": "{}", "audit.outcome": "success"}),
)


def audit_record(i: int) -> dict[str, Any]:
    name, attrs = _AUDIT[i % len(_AUDIT)]
    return {"event_name": name, "body": f"{name} #{i}", "attributes": {**attrs, "i": i},
            "severity_number": SeverityNumber.INFO, "severity_text": "INFO"}


class Capture(LogRecordProcessor):
    """Keeps the signed records (events and checkpoints) handed downstream, to export them by hand."""

    def __init__(self) -> None:
        self.records: list[ReadWriteLogRecord] = []

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.records.append(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def pipeline(keys: Path, downstream: LogRecordProcessor | Sequence[LogRecordProcessor], *,
             resource: dict[str, Any] | None = None, checkpoint_every: int = 50,
             ) -> tuple[LoggerProvider, SigningProcessor]:
    res = Resource.create({"service.name": "gateway", **(resource or {})})
    provider = LoggerProvider(resource=res, shutdown_on_exit=False)
    sp = SigningProcessor(keys, downstream=downstream, checkpoint_every=checkpoint_every, checkpoint_interval=3600,
                          resource=res)
    provider.add_log_record_processor(sp)
    return provider, sp


def run(exporter: ElasticLogExporter, keys: Path, n: int, *, record: Any = audit_record,
        resource: dict[str, Any] | None = None) -> SigningProcessor:
    """Emit n records through the real pipeline into the exporter and shut it down cleanly."""
    provider, sp = pipeline(keys, BatchLogRecordProcessor(exporter, max_queue_size=n + 1024,
                                                          max_export_batch_size=100), resource=resource)
    logger = provider.get_logger("otel_audit.tests")
    for i in range(n):
        logger.emit(**record(i))
    provider.shutdown()
    return sp


def signed_records(keys: Path, n: int, record: Any = audit_record) -> list[ReadWriteLogRecord]:
    """n signed events (plus the start checkpoint) as the signing processor hands them downstream."""
    cap = Capture()
    provider, _sp = pipeline(keys, cap)
    logger = provider.get_logger("otel_audit.tests")
    for i in range(n):
        logger.emit(**record(i))
    return list(cap.records)


def client_for(es: ElasticStandIn) -> Elasticsearch:
    return Elasticsearch(es.url, api_key=DEFAULT_API_KEY, request_timeout=10)


def scan_all(es: ElasticStandIn, index: str = DS) -> list[dict[str, Any]]:
    """Every stored hit, read back through the official client's scroll helper."""
    return list(helpers.scan(client_for(es), index=index, query={"query": {"match_all": {}}}, size=500))


def bulk_requests(es: ElasticStandIn) -> list[Any]:
    return [s for s in es.seen if s.path.endswith("/_bulk")]


# contract ----------------------------------------------------------------------------------------


def test_bulk_is_gzip_ndjson_of_create_actions_into_the_data_stream(es: ElasticStandIn, shared_keys: Path) -> None:
    """Every record goes as a `create` action with the audit id as _id, NDJSON, gzip, into logs-otel_audit-default."""
    exporter = exporter_for(es)
    sp = run(exporter, shared_keys, 120)
    bulks = bulk_requests(es)
    assert bulks and all(s.headers["content-type"] == "application/x-ndjson" and s.gzip for s in bulks)
    assert all(s.status == 200 for s in bulks)
    assert es.indices == {DS: True}
    docs = es.documents(DS)
    assert len(docs) == sp.seq == exporter.counters.delivered
    assert {d.id for d in docs} == {f"{sp.stream_id}-{seq}" for seq in range(sp.seq)}
    assert docs[0].backing.startswith(f".ds-{DS}-")
    assert exporter.counters.rejected == exporter.counters.failed == exporter.counters.retries == 0


def test_document_carries_ecs_fields_next_to_otel_attributes(es: ElasticStandIn, shared_keys: Path) -> None:
    """A login document has the catalog's ECS category/type, user, source.ip, related, message and attributes.*."""
    run(exporter_for(es), shared_keys, 4)
    by_action = {d.source["event"].get("action"): d.source for d in es.documents(DS)}
    login = by_action["authentication.login.succeeded"]
    assert login["event"]["kind"] == "event"
    assert login["event"]["category"] == ["authentication", "session"]
    assert login["event"]["type"] == ["start"]
    assert login["event"]["outcome"] == "success"
    assert login["user"] == {"id": "u-1", "name": "alice"}
    assert login["source"] == {"address": "10.1.2.3", "ip": "10.1.2.3"}
    assert login["related"] == {"ip": ["10.1.2.3"], "user": ["u-1", "alice"]}
    assert login["message"] == "authentication.login.succeeded #0"
    assert login["attributes"]["session.id"] == "s-1"
    assert login["attributes"]["i"] == 0
    assert login["data_stream"] == {"type": "logs", "dataset": "otel_audit", "namespace": "default"}
    assert login["service"] == {"name": "gateway"}
    assert login["@timestamp"].endswith("Z")
    failed = by_action["authentication.login.failed"]
    assert failed["event"]["outcome"] == "failure" and failed["event"]["reason"] == "bad password"
    assert failed["source"] == {"address": "gw.example.com", "domain": "gw.example.com"}  # not an IP: no source.ip
    model = by_action["authorization.model.accessed"]
    assert model["http"] == {"request": {"method": "POST"}} and model["url"] == {"path": "/v1/chat"}
    assert model["event"]["category"] == ["api"]
    assert by_action["configuration.virtual_key.created"]["related"] == {"user": ["admin-1"]}
    checkpoint = by_action[CHECKPOINT_EVENT]
    assert checkpoint["event"]["category"] == ["process"]


def test_audit_otlp_is_exactly_the_record_the_file_exporter_writes(
        es: ElasticStandIn, shared_keys: Path, tmp_path: Path) -> None:
    """`audit.otlp` holds the same OTLP/JSON logRecord as the file exporter's archive, for every type of value."""
    archive = tmp_path / "audit.jsonl"
    exporter = exporter_for(es)
    provider, sp = pipeline(shared_keys, [BatchLogRecordProcessor(exporter),
                                          SimpleLogRecordProcessor(FileLogRecordExporter(archive, fsync="never"))])
    logger = provider.get_logger("otel_audit.tests")
    for i in range(60):
        logger.emit(**mixed_record(i))
    provider.shutdown()
    from otel_audit.verify import iter_records

    written = {json.dumps(rec, sort_keys=True) for _where, rec in iter_records([archive])}
    embedded = {json.dumps(json.loads(d.source["audit"]["otlp"]), sort_keys=True) for d in es.documents(DS)}
    assert len(embedded) == sp.seq
    assert embedded == written


def test_same_records_sent_twice_are_409s_counted_as_delivered(es: ElasticStandIn, shared_keys: Path) -> None:
    """A batch sent again (a retry after a lost answer) gets 409 per item: no second copy, counted delivered."""
    records = signed_records(shared_keys, 30)
    exporter = exporter_for(es)
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert len(es.documents(DS)) == len(records)
    assert exporter.duplicates == len(records)
    assert exporter.counters.delivered == 2 * len(records)
    conflicts = [r for r in es.rejections if r["status"] == 409]
    assert len(conflicts) == len(records)
    assert all(r["type"] == "version_conflict_engine_exception" for r in conflicts)
    assert "version conflict, document already exists" in conflicts[0]["reason"]


def test_static_logs_index_and_dynamic_routing(es: ElasticStandIn, shared_keys: Path) -> None:
    """logs_index wins; otherwise elasticsearch.index, then data_stream.* attributes (sanitized), then the defaults."""
    run(exporter_for(es, logs_index="logs-static-prod"), shared_keys, 3)
    assert set(es.indices) == {"logs-static-prod"}
    assert all(d.source["data_stream"]["dataset"] == "static" for d in es.documents("logs-static-prod"))
    run(exporter_for(es), shared_keys, 3, resource={"data_stream.dataset": "My-App", "data_stream.namespace": "eu"})
    assert "logs-my_app-eu" in es.indices
    run(exporter_for(es, dataset="gw", namespace="prod"), shared_keys, 3)
    assert "logs-gw-prod" in es.indices

    def with_index(i: int) -> dict[str, Any]:
        rec = audit_record(i)
        rec["attributes"]["elasticsearch.index"] = "audit-plain"
        return rec

    run(exporter_for(es), shared_keys, 3, record=with_index)
    assert es.indices["audit-plain"] is False  # a plain index: create works there too
    assert len(es.documents("audit-plain")) == 3


def test_basic_auth_and_credentials_in_the_url(shared_keys: Path) -> None:
    """user/password go as Basic auth; user:password written in the URL is moved out of it."""
    with ElasticStandIn(users={"writer": SECRET_PASSWORD}) as standin:
        exp = ElasticLogExporter(standin.url, user="writer", password=SECRET_PASSWORD, retry=FAST, timeout=5)
        sp = run(exp, shared_keys, 5)
        assert exp.counters.delivered == sp.seq == 7 and exp.counters.rejected == 0
        url = standin.url.replace("http://", f"http://writer:{SECRET_PASSWORD}@")
        exp2 = ElasticLogExporter(url, retry=FAST, timeout=5)
        assert SECRET_PASSWORD not in repr(exp2) and SECRET_PASSWORD not in str(exp2.endpoints)
        run(exp2, shared_keys, 5)
        assert exp2.counters.delivered == 7


def test_cloud_id_decodes_to_the_elasticsearch_url() -> None:
    """A Cloud ID decodes to https://<es id>.<host>, with a port when one is given (known answers)."""
    assert decode_cloud_id("foo:YmFyLmNsb3VkLmVzLmlvJGFiYzEyMyRkZWY0NTY=") == "https://abc123.bar.cloud.es.io"
    enc = base64.b64encode(b"us-east-1.aws.found.io:9243$cec6f261a74bf24ce33bb8811b84294f$c6c2ca6d").decode()
    assert decode_cloud_id(f"staging:{enc}") == "https://cec6f261a74bf24ce33bb8811b84294f.us-east-1.aws.found.io:9243"
    enc = base64.b64encode(b"h.example.io$es1:9400$kb").decode().rstrip("=")
    assert decode_cloud_id(enc) == "https://es1.h.example.io:9400"
    exp = ElasticLogExporter(cloudid="foo:YmFyLmNsb3VkLmVzLmlvJGFiYzEyMyRkZWY0NTY=", api_key="k")
    assert exp.endpoints == ["https://abc123.bar.cloud.es.io"]
    for bad in ("foo:not base64!", "foo:" + base64.b64encode(b"only-host").decode()):
        with pytest.raises(ValueError):
            decode_cloud_id(bad)


def test_endpoints_are_used_round_robin(shared_keys: Path) -> None:
    """With several endpoints, bulk requests go to each in turn."""
    with ElasticStandIn() as a, ElasticStandIn() as b:
        exp = ElasticLogExporter([a.url, b.url], api_key=DEFAULT_API_KEY, retry=FAST, timeout=5)
        records = signed_records(shared_keys, 20)
        for k in range(4):
            assert exp.export(records[k * 5:(k + 1) * 5]) is LogRecordExportResult.SUCCESS
        assert len(bulk_requests(a)) == 2 and len(bulk_requests(b)) == 2


def test_standin_is_strict_about_the_bulk_contract(es: ElasticStandIn) -> None:
    """The stand-in refuses what Elasticsearch refuses, with ES's error bodies and X-Elastic-Product on every answer."""
    auth = {"Authorization": f"ApiKey {DEFAULT_API_KEY}"}
    nd = {**auth, "Content-Type": "application/x-ndjson"}
    ok_doc = b'{"@timestamp":"2024-05-01T00:00:00Z","m":1}\n'
    r = requests.post(f"{es.url}/_bulk", data=b'{"create":{"_index":"logs-a-b"}}\n' + ok_doc)
    assert r.status_code == 401 and r.json()["error"]["type"] == "security_exception"
    assert r.headers["X-Elastic-Product"] == "Elasticsearch"
    r = requests.post(f"{es.url}/_bulk", data=b'{"create":{"_index":"logs-a-b"}}\n' + ok_doc,
                      headers={**auth, "Content-Type": "application/yaml"})
    assert r.status_code == 406 and r.headers["X-Elastic-Product"] == "Elasticsearch"
    assert "does not support stream parsing" in r.json()["error"]
    r = requests.post(f"{es.url}/_bulk", data=b'{"create":{"_index":"logs-a-b"}}\n' + ok_doc,
                      headers={**auth, "Content-Type": "text/plain"})
    assert r.status_code == 406
    r = requests.post(f"{es.url}/_bulk", data=b'{"create":{"_index":"logs-a-b"}}\n' + ok_doc.rstrip(), headers=nd)
    assert r.status_code == 400 and "terminated by a newline" in r.json()["error"]["reason"]
    r = requests.post(f"{es.url}/_bulk?bogus=1", data=b'{"create":{"_index":"logs-a-b"}}\n' + ok_doc, headers=nd)
    assert r.status_code == 400 and "unrecognized parameter: [bogus]" in r.json()["error"]["reason"]
    r = requests.post(f"{es.url}/_bulk", data=b'{"upsert":{"_index":"logs-a-b"}}\n' + ok_doc, headers=nd)
    assert r.status_code == 400 and "expected one of [create, delete, index, update]" in r.json()["error"]["reason"]
    body = (b'{"index":{"_index":"logs-a-b","_id":"1"}}\n' + ok_doc
            + b'{"create":{"_index":"logs-a-b","_id":"2"}}\n{"m":1}\n'
            + b'{"create":{"_index":"logs-a-b","_id":"3"}}\n' + ok_doc
            + b'{"create":{"_index":"logs-a-b","_id":"3"}}\n' + ok_doc
            + b'{"create":{"_index":"logs-a-b","_id":"4"}}\n{"@timestamp":"2024-05-01T00:00:00Z","m":"text"}\n'
            + b'{"create":{"_index":"logs-a-b","_id":"5"}}\n{"@timestamp":"2024-05-01T00:00:00Z",'
              b'"data_stream":{"dataset":"other"}}\n')
    r = requests.post(f"{es.url}/_bulk", data=body, headers=nd)
    assert r.status_code == 200 and r.headers["X-Elastic-Product"] == "Elasticsearch"
    doc = r.json()
    assert doc["errors"] is True and isinstance(doc["took"], int)
    items = [it["create"] if "create" in it else it["index"] for it in doc["items"]]
    assert [it["status"] for it in items] == [400, 400, 201, 409, 400, 400]
    assert items[0]["error"]["reason"] == "only write ops with an op_type of create are allowed in data streams"
    assert "timestamp field [@timestamp] is missing" in items[1]["error"]["reason"]
    assert items[2]["result"] == "created" and items[2]["_index"].startswith(".ds-logs-a-b-")
    assert items[3]["error"]["type"] == "version_conflict_engine_exception"
    assert items[4]["error"]["type"] == "document_parsing_exception" and "of type [long]" in items[4]["error"]["reason"]
    assert "constant_keyword" in items[5]["error"]["caused_by"]["reason"]
    banner = requests.get(es.url, headers=auth).json()
    assert banner["tagline"] == "You Know, for Search" and banner["version"]["number"].startswith("9.")


def test_batches_are_cut_below_max_bulk_bytes_and_413_splits(shared_keys: Path) -> None:
    """Bodies stay under max_bulk_bytes (several _bulk requests); a body over http.max_content_length is a 413,
    after which the request is split in halves until the parts fit, and every document is stored."""
    records = signed_records(shared_keys, 40)
    with ElasticStandIn(max_content_length=20_000) as small:
        exp = ElasticLogExporter(small.url, api_key=DEFAULT_API_KEY, compression=False, max_bulk_bytes=15_000,
                                 retry=FAST, timeout=5)
        assert exp.export(records) is LogRecordExportResult.SUCCESS
        sizes = [s.body_bytes for s in bulk_requests(small)]
        assert len(sizes) > 1 and max(sizes) <= 15_000 and len(small.documents(DS)) == len(records)
    with ElasticStandIn(max_content_length=20_000) as small:
        big = ElasticLogExporter(small.url, api_key=DEFAULT_API_KEY, compression=False, retry=FAST, timeout=5)
        assert big.export(records) is LogRecordExportResult.SUCCESS and big.last_rejected == ()
        assert big.counters.rejected == 0 and big.counters.retries == 0 and big.counters.delivered == len(records)
        statuses = [s.status for s in bulk_requests(small)]
        assert statuses[0] == 413 and len(statuses) > 2 and len(small.documents(DS)) == len(records)


def test_official_client_reads_back_with_search_after_count_and_scan(es: ElasticStandIn, shared_keys: Path) -> None:
    """The official client pages with sort + search_after, counts and scrolls; the reader verifies all of it."""
    sp = run(exporter_for(es), shared_keys, 250)
    client = client_for(es)
    assert client.info()["tagline"] == "You Know, for Search"
    assert client.count(index=DS)["count"] == sp.seq
    pages: list[dict[str, Any]] = []
    after = None
    while True:
        kw: dict[str, Any] = {"search_after": after} if after else {}
        page = client.search(index=DS, size=64, sort=[{"@timestamp": "asc"}, {"_id": "asc"}],
                             query={"match_all": {}}, **kw).body
        if not page["hits"]["hits"]:
            break
        pages.append(page)
        after = page["hits"]["hits"][-1]["sort"]
    assert sum(len(p["hits"]["hits"]) for p in pages) == sp.seq
    ring = Keyring.load(shared_keys)
    report, _reader = source.verify_export(pages, ring)
    assert report.ok, report.problems
    assert report.streams[0].records == sp.seq and report.streams[0].state == "closed"
    assert source.verify_export(scan_all(es), ring)[0].ok


def test_reader_takes_every_export_shape(es: ElasticStandIn, shared_keys: Path, tmp_path: Path) -> None:
    """One response, an array of responses, NDJSON of hits or of responses, gzip, a file: the same records."""
    sp = run(exporter_for(es), shared_keys, 40)
    ring = Keyring.load(shared_keys)
    response = es.search_response(DS)
    hits = response["hits"]["hits"]
    halves = [{"hits": {"hits": hits[:20]}}, {"hits": {"hits": hits[20:]}}]
    ndjson_hits = es.export_ndjson(DS)
    ndjson_responses = b"".join(orjson.dumps(h) + b"\n" for h in halves)
    path = tmp_path / "dump.ndjson.gz"
    path.write_bytes(gzip.compress(ndjson_hits))
    for data in (response, halves, orjson.dumps(response), ndjson_hits, ndjson_responses.decode(), path, str(path)):
        reader = source.ElasticReader()
        assert len(list(reader.records_in(data))) == sp.seq
        assert reader.records == reader.hits == sp.seq and not reader.mismatches and not reader.problems
        assert source.verify_export([data], ring)[0].ok
    wheres = [w for w, _ in source.ElasticReader().records_in(ndjson_hits, "dump.ndjson")]
    assert wheres[0].startswith("dump.ndjson:1 [.ds-logs-otel_audit-default-")


# faults ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_outage_of_30s_mid_stream_loses_nothing(es: ElasticStandIn, shared_keys: Path) -> None:
    """10k records with a 30 s outage in the middle: all delivered after recovery, at most duplicates, verify ok."""
    n = 10_000
    retry = RetrySettings(initial_interval=0.2, max_interval=2.0, max_elapsed_time=120)
    exporter = ElasticLogExporter(es.url, api_key=DEFAULT_API_KEY, timeout=5, retry=retry)
    provider, sp = pipeline(shared_keys, BatchLogRecordProcessor(exporter, max_queue_size=n + 2048),
                            checkpoint_every=500)
    logger = provider.get_logger("otel_audit.tests")
    for i in range(3000):
        logger.emit(**audit_record(i))
    provider.force_flush()
    es.go_down()
    down_at = time.monotonic()
    for i in range(3000, 7000):  # emitted while nothing answers, spread over the outage
        logger.emit(**audit_record(i))
        if i % 400 == 0:
            time.sleep(2.5)
    assert exporter.counters.retries > 0
    time.sleep(max(0.0, 30 - (time.monotonic() - down_at)))
    es.come_up()
    for i in range(7000, n):
        logger.emit(**audit_record(i))
    provider.shutdown()
    assert exporter.counters.failed == 0 and exporter.counters.rejected == 0
    assert len(es.documents(DS)) == sp.seq  # every seq once: retried documents were 409s, not copies
    report, _reader = source.verify_export([es.export_ndjson(DS)], Keyring.load(shared_keys))
    assert report.ok, report.problems
    stream = report.streams[0]
    assert stream.records == sp.seq and stream.missing == [] and stream.state == "closed"


def test_503_and_429_with_retry_after_are_retried(es: ElasticStandIn, shared_keys: Path) -> None:
    """A whole-request 503 is retried with backoff; a 429's Retry-After is waited out; then all is delivered."""
    records = signed_records(shared_keys, 10)
    exporter = exporter_for(es)
    es.fail_requests(503, times=2)
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert exporter.counters.retries == 2 and exporter.counters.delivered == len(records)
    es.fail_requests(429, times=1, retry_after="1")
    more = signed_records(shared_keys, 5)
    assert exporter.export(more) is LogRecordExportResult.SUCCESS
    attempts = bulk_requests(es)[-2:]
    assert attempts[0].status == 429 and attempts[1].status == 200
    assert attempts[1].at - attempts[0].at >= 0.95  # Retry-After: 1, far above the 0.05 s backoff
    assert "circuit_breaking_exception" in " ".join(str(r) for r in es.rejections)


def test_per_item_429_retries_only_those_items(es: ElasticStandIn, shared_keys: Path) -> None:
    """Items refused with 429 es_rejected_execution_exception are sent again alone; the others are not resent."""
    records = signed_records(shared_keys, 20)
    ids = {f"{r.log_record.attributes['audit.stream.id']}-{r.log_record.attributes['audit.stream.seq']}"
           for r in records}
    es.fail_items(429, times=3)
    exporter = exporter_for(es)
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    first, second = bulk_requests(es)
    assert first.items == len(records) and second.items == 3
    assert set(second.ids) < ids and set(second.ids) <= set(first.ids[:3])
    assert {d.id for d in es.documents(DS)} == ids
    assert exporter.counters.retries == 1 and exporter.counters.rejected == 0 and exporter.duplicates == 0


def test_per_item_5xx_is_retried(es: ElasticStandIn, shared_keys: Path) -> None:
    """An item that failed with 503 unavailable_shards_exception is retried and then stored."""
    records = signed_records(shared_keys, 5)
    es.fail_items(503, times=1)
    exporter = exporter_for(es)
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert [s.items for s in bulk_requests(es)] == [len(records), 1]
    assert len(es.documents(DS)) == len(records)


def test_per_item_400_is_reported_with_reason_counted_and_not_retried(
        es: ElasticStandIn, shared_keys: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A mapper_parsing_exception item is a permanent rejection: its index in last_rejected, logged with type and
    reason, counted, not resent, and the export is SUCCESS."""
    records = signed_records(shared_keys, 8)
    victim = records[4].log_record.attributes
    victim_id = f"{victim['audit.stream.id']}-{victim['audit.stream.seq']}"
    es.fail_items(400, times=None, match=lambda doc_id, _src: doc_id == victim_id)
    exporter = exporter_for(es)
    with caplog.at_level(logging.ERROR, logger="otel_audit.exporters"):
        result = exporter.export(records)
    assert result is LogRecordExportResult.SUCCESS and exporter.last_rejected == (4,)
    assert exporter.counters.rejected == 1 and exporter.counters.delivered == len(records) - 1
    assert exporter.counters.retries == 0 and len(bulk_requests(es)) == 1
    assert "mapper_parsing_exception" in caplog.text and victim_id in caplog.text
    assert "failed to parse field [attributes.audit.stream.seq]" in exporter.counters.reasons[0]
    report, _reader = source.verify_export([es.search_response(DS)], Keyring.load(shared_keys), allow_open=True)
    assert report.streams[0].missing == [[victim["audit.stream.seq"], victim["audit.stream.seq"]]]


def test_mapping_conflict_is_a_permanent_document_parsing_exception(es: ElasticStandIn, shared_keys: Path) -> None:
    """A field whose type changes (long, then text) is refused by the dynamic mapping, reported and counted."""
    def typed(i: int) -> dict[str, Any]:
        rec = audit_record(i)
        rec["attributes"]["tokens"] = 7 if i < 3 else "seven"
        return rec

    exporter = exporter_for(es)
    run(exporter, shared_keys, 5, record=typed)
    assert exporter.counters.rejected == 2
    assert "document_parsing_exception" in exporter.counters.reasons[0]
    assert "[attributes.tokens] of type [long]" in exporter.counters.reasons[0]


def test_401_is_kept_for_later_and_never_shows_the_key(shared_keys: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A wrong API key (401 security_exception) is retried, then failed, not rejected (a spool keeps the records
    until the key is fixed); the key appears in no log, reason or repr."""
    with ElasticStandIn() as standin:
        exporter = ElasticLogExporter(standin.url, api_key=SECRET_KEY, retry=BRIEF, timeout=5)
        records = signed_records(shared_keys, 5)
        with caplog.at_level(logging.DEBUG):
            assert exporter.export(records) is LogRecordExportResult.FAILURE
        assert exporter.counters.failed == len(records) and exporter.counters.rejected == 0
        assert exporter.last_rejected == () and exporter.counters.delivered == 0
        assert "security_exception" in exporter.counters.reasons[0] and "check api_key" in exporter.counters.reasons[0]
        assert len(bulk_requests(standin)) >= 1
        text = caplog.text + repr(exporter) + str(exporter.counters)
        for secret in (SECRET_KEY, SECRET_VALUE):
            assert secret not in text


def test_403_for_a_read_only_key_is_failed_not_dropped(shared_keys: Path) -> None:
    """A key without write privileges gets 403 security_exception: retried, then failed and counted, reason kept."""
    with ElasticStandIn(api_keys=(), readonly_api_keys=(SECRET_KEY,)) as standin:
        exporter = ElasticLogExporter(standin.url, api_key=SECRET_KEY, retry=BRIEF, timeout=5)
        records = signed_records(shared_keys, 3)
        assert exporter.export(records) is LogRecordExportResult.FAILURE and exporter.last_rejected == ()
        assert exporter.counters.failed == 4 and "is unauthorized" in exporter.counters.reasons[0]
        assert exporter.counters.delivered == 0 and standin.documents(DS) == []
        standin.api_keys.add(SECRET_KEY)  # the key is given the privilege: the same records go through
        assert exporter.export(records) is LogRecordExportResult.SUCCESS and exporter.last_rejected == ()
        assert len(standin.documents(DS)) == len(records)


@pytest.mark.parametrize("status", [401, 403])
def test_credential_refusal_of_the_bulk_request_is_failure_never_rejection(es: ElasticStandIn, shared_keys: Path,
                                                                           status: int) -> None:
    """A 401 or 403 for the whole _bulk request is retried, then FAILURE with last_rejected empty and nothing
    delivered; once Elasticsearch accepts again the same records are delivered."""
    records = signed_records(shared_keys, 5)
    es.fail_requests(status, times=1000)
    exporter = exporter_for(es, retry=BRIEF)
    assert exporter.export(records) is LogRecordExportResult.FAILURE
    assert exporter.last_rejected == () and exporter.counters.rejected == 0 and exporter.counters.delivered == 0
    assert exporter.counters.retries >= 1 and es.documents(DS) == []
    es.clear_faults()
    assert exporter.export(records) is LogRecordExportResult.SUCCESS and exporter.last_rejected == ()
    assert exporter.counters.delivered == len(records) and len(es.documents(DS)) == len(records)


def test_per_item_403_is_retried_not_rejected(es: ElasticStandIn, shared_keys: Path) -> None:
    """An item refused with 403 (no privilege on its index) is retried, then FAILURE, never in last_rejected."""
    records = signed_records(shared_keys, 4)
    es.fail_items(403, times=None, match=lambda _id, _src: True)
    exporter = exporter_for(es, retry=BRIEF)
    assert exporter.export(records) is LogRecordExportResult.FAILURE and exporter.last_rejected == ()
    assert exporter.counters.rejected == 0 and exporter.counters.failed == len(records)
    es.clear_faults()
    assert exporter.export(records) is LogRecordExportResult.SUCCESS and len(es.documents(DS)) == len(records)


def test_a_400_for_the_whole_request_of_one_record_rejects_it(es: ElasticStandIn, shared_keys: Path) -> None:
    """A 400 for a _bulk request of one document puts its index in last_rejected and the export is SUCCESS."""
    records = signed_records(shared_keys, 2)
    es.fail_requests(400, times=2)
    exporter = exporter_for(es)
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    # 3 documents -> 400; halves [0] -> 400 (rejected) and [1, 2] -> stored
    assert [s.status for s in bulk_requests(es)] == [400, 400, 200]
    assert exporter.last_rejected == (0,) and exporter.counters.rejected == 1
    assert len(es.documents(DS)) == len(records) - 1


def test_slow_server_times_out_then_duplicates_are_409s(es: ElasticStandIn, shared_keys: Path) -> None:
    """A request that times out is sent again; what the slow server stored anyway comes back 409, not twice."""
    records = signed_records(shared_keys, 10)
    exporter = exporter_for(es, timeout=0.3)
    es.slow(1.0)
    threading.Timer(1.5, es.slow, args=(0.0,)).start()
    assert exporter.export(records) is LogRecordExportResult.SUCCESS
    assert exporter.counters.retries >= 1
    assert len(es.documents(DS)) == len(records)
    assert exporter.counters.delivered >= len(records)
    assert source.verify_export([es.search_response(DS)], Keyring.load(shared_keys), allow_open=True)[0].ok


def test_verification_survives_a_retyped_field(es: ElasticStandIn, shared_keys: Path) -> None:
    """Accepted with audit.stream.seq stored as a string: the reader still verifies, no mismatch."""
    es.retype("attributes.audit.stream.seq", str)
    sp = run(exporter_for(es), shared_keys, 30)
    hits = scan_all(es)
    assert isinstance(hits[0]["_source"]["attributes"]["audit.stream.seq"], str)
    report, reader = source.verify_export(hits, Keyring.load(shared_keys))
    assert report.ok, report.problems
    assert reader.mismatches == [] and report.streams[0].records == sp.seq


def test_round_trip_then_tamper_at_rest(es: ElasticStandIn, shared_keys: Path) -> None:
    """Stored data -> official client -> reader -> Verifier is ok; an altered record or searchable field is caught."""
    sp = run(exporter_for(es), shared_keys, 60)
    ring = Keyring.load(shared_keys)
    assert source.verify_export(scan_all(es), ring)[0].ok

    # the signed record itself altered at rest (the body inside audit.otlp)
    target = f"{sp.stream_id}-17"

    def alter_otlp(src: dict[str, Any]) -> None:
        rec = json.loads(src["audit"]["otlp"])
        rec["body"] = {"stringValue": "nothing happened here"}
        src["audit"]["otlp"] = json.dumps(rec)

    es.alter(target, alter_otlp)
    report, _reader = source.verify_export(scan_all(es), ring)
    assert not report.ok and report.streams[0].modified == [17]

    # only searchable fields altered; audit.otlp left alone
    with ElasticStandIn() as fresh:
        run(exporter_for(fresh), shared_keys, 20)
        sid = fresh.documents(DS)[0].id.rsplit("-", 1)[0]
        fresh.alter(f"{sid}-5", lambda s: s["user"].update(id="mallory"))
        fresh.alter(f"{sid}-6", lambda s: s["attributes"].update({"audit.stream.seq": 99}))
        report, reader = source.verify_export(scan_all(fresh), ring)
        assert report.streams[0].status == "verified"  # the signed records are intact
        assert not report.ok  # but the searchable copy is not
        assert len(reader.mismatches) == 2
        assert "user.id is 'mallory'" in reader.mismatches[0] and f"stream {sid} seq 5" in reader.mismatches[0]
        assert "audit.stream.seq is '99'" in reader.mismatches[1] and "seq 6" in reader.mismatches[1]
        assert any("mallory" in p for p in report.problems)


def test_hits_without_audit_otlp_are_problems_when_ours_and_skipped_otherwise(
        es: ElasticStandIn, shared_keys: Path) -> None:
    """An otel-audit document whose audit.otlp was removed is a problem (missing seq); a foreign document is skipped."""
    sp = run(exporter_for(es), shared_keys, 10)
    es.alter(f"{sp.stream_id}-4", lambda s: s.pop("audit"))
    response = es.search_response(DS)
    response["hits"]["hits"].append({"_index": "other", "_id": "x", "_source": {"message": "not ours"}})
    report, reader = source.verify_export([response], Keyring.load(shared_keys))
    assert reader.skipped == 1 and reader.records == sp.seq - 1
    assert len(reader.problems) == 1 and "no audit.otlp field" in reader.problems[0]
    assert not report.ok and report.streams[0].missing == [[4, 4]]
    with pytest.raises(InputError):
        source.verify_export([{"hits": {"hits": []}}], Keyring.load(shared_keys))


def test_cross_check_reports_each_searchable_field() -> None:
    """Event name, user.id, outcome, @timestamp, stream id/seq and _id are each compared with the signed record."""
    rec = {"timeUnixNano": "1714521600123456789", "eventName": "authentication.login.failed",
           "attributes": [{"key": "user.id", "value": {"stringValue": "u-1"}},
                          {"key": "audit.outcome", "value": {"stringValue": "failure"}},
                          {"key": "audit.stream.id", "value": {"stringValue": "ab" * 16}},
                          {"key": "audit.stream.seq", "value": {"intValue": "3"}}]}
    good = {"_id": "ab" * 16 + "-3", "_source": {
        "@timestamp": "2024-05-01T00:00:00.123456789Z", "event": {"action": "authentication.login.failed",
                                                                  "outcome": "failure", "id": "ab" * 16 + "-3"},
        "user": {"id": "u-1"}, "attributes": {"audit.stream.id": "ab" * 16, "audit.stream.seq": "3"}}}
    assert source.cross_check(good, rec) == []
    millis = {"_source": {"@timestamp": 1714521600123}}
    assert source.cross_check(millis, rec) == []
    bad = json.loads(json.dumps(good))
    bad["_id"] = "x"
    bad["_source"].update({"@timestamp": "2024-05-01T00:00:01Z", "event": {"action": "authentication.login.succeeded",
                                                                           "outcome": "success"},
                           "user.id": "u-2"})
    bad["_source"].pop("user")
    found = " ".join(source.cross_check(bad, rec))
    for name in ("event.action", "event.outcome", "user.id", "@timestamp", "_id"):
        assert f"searchable field {name} " in found


# configuration -----------------------------------------------------------------------------------


def test_env_only_construction(es: ElasticStandIn, shared_keys: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no arguments the exporter takes endpoint, API key, dataset and namespace from OTEL_AUDIT_ELASTIC_*."""
    monkeypatch.setenv("OTEL_AUDIT_ELASTIC_ENDPOINT", es.url)
    monkeypatch.setenv("OTEL_AUDIT_ELASTIC_API_KEY", DEFAULT_API_KEY)
    monkeypatch.setenv("OTEL_AUDIT_ELASTIC_DATASET", "gateway")
    monkeypatch.setenv("OTEL_AUDIT_ELASTIC_NAMESPACE", "prod")
    monkeypatch.setenv("OTEL_AUDIT_ELASTIC_TIMEOUT", "5s")
    monkeypatch.setenv("OTEL_AUDIT_ELASTIC_COMPRESSION", "none")
    exporter = ElasticLogExporter()
    assert exporter.timeout == 5 and not exporter.compression
    sp = run(exporter, shared_keys, 5)
    assert len(es.documents("logs-gateway-prod")) == sp.seq
    assert not any(s.gzip for s in bulk_requests(es))


def test_env_elasticsearch_url_and_argument_precedence(es: ElasticStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """ELASTICSEARCH_URL is the fallback endpoint (as in the collector); an argument beats the environment."""
    monkeypatch.setenv("ELASTICSEARCH_URL", f"{es.url},http://127.0.0.1:1")
    assert ElasticLogExporter(api_key="k").endpoints == [es.url, "http://127.0.0.1:1"]
    monkeypatch.setenv("OTEL_AUDIT_ELASTIC_ENDPOINT", "http://10.9.9.9:9200")
    assert ElasticLogExporter(api_key="k").endpoints == ["http://10.9.9.9:9200"]
    assert ElasticLogExporter("http://arg:9200", api_key="k").endpoints == ["http://arg:9200"]
    exp = ElasticLogExporter.from_config({"api_key": "k"}, where="exporters.elasticsearch")
    assert exp.endpoints == [es.url, "http://127.0.0.1:1"]  # a config block falls back to ELASTICSEARCH_URL only


def test_bad_env_values_warn_and_fall_back(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A bad environment value logs a warning naming the variable and the default is used; keys are never echoed."""
    monkeypatch.setenv("OTEL_AUDIT_ELASTIC_TIMEOUT", "soon")
    monkeypatch.setenv("OTEL_AUDIT_ELASTIC_COMPRESSION", "zstd")
    monkeypatch.setenv("OTEL_AUDIT_ELASTIC_DATASET", "has-dash")
    monkeypatch.setenv("OTEL_AUDIT_ELASTIC_LOGS_INDEX", "UPPER")
    monkeypatch.setenv("OTEL_AUDIT_ELASTIC_ENDPOINT", "ftp://nope")
    monkeypatch.setenv("OTEL_AUDIT_ELASTIC_API_KEY", "bad key\nwith newline " + SECRET_VALUE)
    with caplog.at_level(logging.WARNING, logger="otel_audit.exporters.elastic"):
        exp = ElasticLogExporter()
    assert exp.timeout == 90 and exp.compression and exp.dataset == "otel_audit" and exp.logs_index is None
    assert exp.endpoints == ["http://localhost:9200"]
    for name in ("OTEL_AUDIT_ELASTIC_TIMEOUT", "OTEL_AUDIT_ELASTIC_COMPRESSION", "OTEL_AUDIT_ELASTIC_DATASET",
                 "OTEL_AUDIT_ELASTIC_LOGS_INDEX", "OTEL_AUDIT_ELASTIC_ENDPOINT", "OTEL_AUDIT_ELASTIC_API_KEY"):
        assert name in caplog.text
    assert SECRET_VALUE not in caplog.text


def test_from_config_takes_a_collector_block(es: ElasticStandIn, shared_keys: Path) -> None:
    """A contrib elasticsearch exporter block works unchanged; collector-only keys are accepted and ignored."""
    cfg = {
        "endpoints": [es.url],
        "api_key": DEFAULT_API_KEY,
        "logs_index": "logs-audit-prod",
        "logs_dynamic_index": {"enabled": False},
        "logs_dynamic_id": {"enabled": True},
        "compression": "none",
        "timeout": "5s",
        "retry": {"enabled": True, "initial_interval": "50ms", "max_interval": "500ms", "retry_on_status": [429, 503]},
        "num_workers": 4,
        "flush": {"bytes": 1000000, "interval": "1s"},
        "discover": {"on_start": False},
        "telemetry": {"log_request_body": False},
        "traces_index": "traces-x-y",
        "sending_queue": {"enabled": True},
        "headers": {"X-Opaque-Id": "otel-audit"},
    }
    exp = ElasticLogExporter.from_config(cfg, where="exporters.elasticsearch")
    assert exp.retry_on_status == {429, 503} and exp.retry.initial_interval == 0.05 and not exp.compression
    sp = run(exp, shared_keys, 5)
    assert len(es.documents("logs-audit-prod")) == sp.seq
    assert bulk_requests(es)[0].headers["x-opaque-id"] == "otel-audit"


@pytest.mark.parametrize(("cfg", "key", "hint"), [
    ({"endpoint": "http://a:9200", "bogus": 1}, "bogus", "unknown key"),
    ({"endpoint": "http://a:9200", "cloudid": "x:eA=="}, "cloudid", "exactly one of"),
    ({"endpoint": "ftp://a"}, "endpoint", "not an http(s) URL"),
    ({"endpoints": "http://a:9200"}, "endpoints", "list of URLs"),
    ({"cloudid": "foo:%%%"}, "cloudid", "not base64"),
    ({}, "endpoint", "ELASTICSEARCH_URL"),
    ({"endpoint": "http://a:9200", "api_key": "k", "user": "u"}, "api_key", "one way to authenticate"),
    ({"endpoint": "http://a:9200", "password": "p"}, "user", "without user"),
    ({"endpoint": "http://a:9200", "auth": {"authenticator": "basicauth"}}, "auth", "extensions"),
    ({"endpoint": "http://a:9200", "logs_index": "Logs-A-B"}, "logs_index", "lowercase"),
    ({"endpoint": "http://a:9200", "compression": "zstd"}, "compression", "gzip or none"),
    ({"endpoint": "http://a:9200", "retry": {"enabled": True}, "retry_on_failure": {"enabled": True}}, "retry",
     "only one"),
    ({"endpoint": "http://a:9200", "retry": {"retry_on_status": ["429"]}}, "retry.retry_on_status", "status codes"),
    ({"endpoint": "http://a:9200", "retry": {"max_tries": 3}}, "retry.max_tries", "unknown key"),
    ({"endpoint": "http://a:9200", "logstash_format": {"enabled": True}}, "logstash_format.enabled", "data stream"),
    ({"endpoint": "http://a:9200", "mapping": {"mode": "fancy"}}, "mapping.mode", "not a mapping mode"),
    ({"endpoint": "http://a:9200", "timeout": "soon"}, "timeout", "not a duration"),
    ({"endpoint": "http://a:9200", "include_source_on_error": "yes"}, "include_source_on_error", "true, false"),
])
def test_config_errors_name_the_key(cfg: dict[str, Any], key: str, hint: str) -> None:
    """Each wrong block raises ConfigError naming the exact key and saying what to do."""
    with pytest.raises(ConfigError) as info:
        ElasticLogExporter.from_config(cfg, where="exporters.elasticsearch")
    assert f"exporters.elasticsearch.{key}:" in str(info.value)
    assert hint in str(info.value)


def test_secrets_never_appear_in_errors_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    """API keys and passwords stay out of ConfigErrors, ValueErrors, reprs and logs."""
    with caplog.at_level(logging.DEBUG):
        msgs: list[str] = []
        for cfg in ({"endpoint": "http://a:9200", "api_key": SECRET_KEY, "user": "u", "password": SECRET_PASSWORD},
                    {"endpoint": "http://a:9200", "api_key": 12345678},
                    {"endpoint": "http://a:9200", "api_key": SECRET_VALUE + "\nX"},
                    {"endpoint": f"ftp://u:{SECRET_PASSWORD}@a"}):
            with pytest.raises(ConfigError) as info:
                ElasticLogExporter.from_config(cfg, where="exporters.elasticsearch")
            msgs.append(str(info.value))
        with pytest.raises(ValueError) as info2:
            ElasticLogExporter("http://a:9200", api_key=SECRET_KEY, password=SECRET_PASSWORD)
        msgs.append(str(info2.value))
        exp = ElasticLogExporter(f"http://u:{SECRET_PASSWORD}@a:9200", timeout=1)
        msgs.append(repr(exp))
        exp2 = ElasticLogExporter("http://a:9200", api_key=SECRET_KEY)
        msgs.append(repr(exp2))
    text = " ".join(msgs) + caplog.text
    for secret in (SECRET_KEY, SECRET_VALUE, SECRET_PASSWORD, "12345678"):
        assert secret not in text


# fork safety --------------------------------------------------------------------------------------


def test_a_forked_child_delivers_through_its_own_connection(es: ElasticStandIn, shared_keys: Path) -> None:
    """After os.fork() the child sends through a fresh session on a new TCP connection, the parent keeps its
    own pool, and the deliveries of both arrive."""
    records = signed_records(shared_keys, 5)
    exporter = exporter_for(es)
    assert exporter.export(records[:2]) is LogRecordExportResult.SUCCESS
    child = export_in_forked_child(exporter, records[2:4])
    assert child["exit_code"] == 0 and child["result"] == "SUCCESS" and child["fresh_session"], child
    assert exporter.export(records[4:]) is LogRecordExportResult.SUCCESS
    assert len(es.client_ports) == 2 and es.client_ports[0] != es.client_ports[1]
    assert len(es.documents(DS)) == len(records)


def test_standin_accepts_bulk_as_application_json(es: ElasticStandIn) -> None:
    """`_bulk` with Content-Type application/json is accepted, as Elasticsearch does (its canonical type is JSON)."""
    auth = {"Authorization": f"ApiKey {DEFAULT_API_KEY}", "Content-Type": "application/json"}
    r = requests.post(f"{es.url}/_bulk", headers=auth,
                      data=b'{"create":{"_index":"logs-a-b"}}\n{"@timestamp":"2024-05-01T00:00:00Z","m":1}\n')
    assert r.status_code == 200 and r.json()["errors"] is False


def test_standin_refuses_require_data_stream_on_a_plain_index(es: ElasticStandIn) -> None:
    """With require_data_stream=true a name no data-stream template matches, and an existing plain index, are
    refused per item with Elasticsearch's 404s; a `logs-*-*` name becomes a data stream."""
    auth = {"Authorization": f"ApiKey {DEFAULT_API_KEY}", "Content-Type": "application/x-ndjson"}
    doc = b'{"@timestamp":"2024-05-01T00:00:00Z","m":1}\n'

    def bulk(index: str, query: str = "?require_data_stream=true") -> dict:
        r = requests.post(f"{es.url}/_bulk{query}", headers=auth,
                          data=b'{"create":{"_index":"' + index.encode() + b'"}}\n' + doc)
        assert r.status_code == 200
        return r.json()["items"][0]["create"]

    item = bulk("otel-audit")
    assert item["status"] == 404 and item["error"]["type"] == "index_not_found_exception"
    assert "requires a data stream" in item["error"]["reason"]
    assert bulk("plain", query="")["status"] == 201  # auto-created as an ordinary index
    item = bulk("plain")
    assert item["status"] == 404 and item["error"]["type"] == "resource_not_found_exception"
    assert item["error"]["reason"] == "[require_data_stream] request flag is [true] and [plain] is not a data stream"
    item = bulk("logs-otel_audit.otel-default")
    assert item["status"] == 201 and item["_index"].startswith(".ds-logs-otel_audit.otel-default-")
    assert es.indices == {"plain": False, "logs-otel_audit.otel-default": True}
