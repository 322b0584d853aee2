"""Elasticsearch 413 (a `_bulk` body over the cluster's ``http.max_content_length``): split, never lost.

The stand-in (tests/standins/elastic.py) counts the limit on the body before compression, as the
setting is documented, and answers 413 with an empty body and ``Connection: close`` — with
``early_413`` before it has read an uncompressed body at all. Records go through the real pipeline
(LoggerProvider -> SigningProcessor -> BatchLogRecordProcessor or SpoolProcessor -> ElasticLogExporter)
and what the stand-in stored is verified by the real ``otel-audit verify``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult

from otel_audit.canonical import STREAM_SEQ
from otel_audit.errors import ConfigError
from otel_audit.exporters.elastic import MAX_CONTENT_LENGTH, ElasticLogExporter
from otel_audit.keys import Keyring
from otel_audit.processors.spool import SpoolProcessor
from otel_audit.sources import elastic as source
from tests.standins.elastic import DEFAULT_API_KEY, ElasticStandIn
from tests.test_elastic import DS, FAST, audit_record, bulk_requests, pipeline, signed_records

LIMIT = 40_000  # the stand-in's http.max_content_length: a few documents of about 7 kB fit, a batch does not
N = 300


def padded(i: int) -> dict[str, Any]:
    """An audit record of about 7 kB as a document (a batch of 100 is a ~700 kB body)."""
    rec = audit_record(i)
    rec["attributes"]["audit.reason"] = f"r{i} " + "".join(f"{(i * 7919 + k) % 10007:05d}" for k in range(300))
    return rec


def exporter_for(es: ElasticStandIn, **kw: Any) -> ElasticLogExporter:
    return ElasticLogExporter(es.url, api_key=DEFAULT_API_KEY, timeout=5, retry=FAST, **kw)


def cli_verify(es: ElasticStandIn, keys: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    dump = tmp_path / "dump.ndjson"
    dump.write_bytes(es.export_ndjson(DS))
    return subprocess.run([sys.executable, "-m", "otel_audit.cli", "verify", "--no-progress", "--keys", str(keys),
                           str(dump)], capture_output=True, text=True, timeout=120)


def stored_seqs(es: ElasticStandIn) -> list[int]:
    """The audit.stream.seq of every stored document, in the order the stand-in stored them."""
    return [int(d.id.rpartition("-")[2]) for d in es.documents(DS)]


def assert_complete(es: ElasticStandIn, exp: ElasticLogExporter, seq: int, keys: Path, tmp_path: Path) -> None:
    assert 413 in [s.status for s in bulk_requests(es)] and exp.splits > 0
    assert exp.counters.rejected == 0 and exp.counters.failed == 0
    seqs = stored_seqs(es)
    assert seqs == list(range(seq)), "every record stored once, in the order it was signed"
    res = cli_verify(es, keys, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    report, _reader = source.verify_export([es.export_ndjson(DS)], Keyring.load(keys))
    assert report.ok, report.problems
    assert report.streams[0].records == seq and report.streams[0].missing == []


@pytest.mark.parametrize("compression, early", [(True, False), (False, False), (False, True)],
                         ids=["gzip", "plain", "plain-413-before-reading"])
def test_a_batch_over_the_limit_is_split_and_delivered_without_the_spool(
        shared_keys: Path, tmp_path: Path, compression: bool, early: bool) -> None:
    """A 413 splits the body in halves until the parts fit; nothing is rejected, failed or stored twice. With gzip
    a body sent under the limit still 413s: the limit counts it decompressed."""
    with ElasticStandIn(max_content_length=LIMIT, early_413=early) as es:
        exp = exporter_for(es, compression=compression)
        provider, sp = pipeline(shared_keys, BatchLogRecordProcessor(exp, max_queue_size=N + 1024,
                                                                     max_export_batch_size=100))
        logger = provider.get_logger("otel_audit.tests")
        for i in range(N):
            logger.emit(**padded(i))
        provider.shutdown()
        if compression:
            # a 413 for a body sent under the limit: the limit counts it decompressed
            assert any(s.status == 413 and s.body_bytes < LIMIT for s in bulk_requests(es))
        assert_complete(es, exp, sp.seq, shared_keys, tmp_path)


def test_a_batch_over_the_limit_is_split_and_delivered_through_the_spool(shared_keys: Path, tmp_path: Path) -> None:
    """Behind the durable spool (batches of up to 512 records), every record is delivered, none given up."""
    with ElasticStandIn(max_content_length=LIMIT) as es:
        exp = exporter_for(es)
        spool = SpoolProcessor(tmp_path / "spool", {"elastic": exp}, retry_initial=0.05, retry_max=0.2)
        provider, sp = pipeline(shared_keys, spool)
        logger = provider.get_logger("otel_audit.tests")
        for i in range(N):
            logger.emit(**padded(i))
        provider.shutdown()
        assert spool.stats.rejected.get("elastic", 0) == 0
        assert spool.stats.delivered.get("elastic", 0) == sp.seq
        assert_complete(es, exp, sp.seq, shared_keys, tmp_path)


def oversize(victim: int) -> Any:
    def record(i: int) -> dict[str, Any]:
        rec = padded(i)
        if i == victim:
            rec["attributes"]["audit.reason"] = "x" * (LIMIT + 1000)
        return rec
    return record


def test_one_record_over_the_limit_fails_alone_loudly_and_counted(
        shared_keys: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A document over the limit on its own is rejected (in last_rejected, counted, an ERROR naming it and the
    setting); the rest of its batch is delivered; the export is SUCCESS, so a spool does not resend it forever."""
    records = signed_records(shared_keys, 40, oversize(17))
    pos = next(k for k, r in enumerate(records) if r.log_record.attributes.get("i") == 17)
    attrs = records[pos].log_record.attributes
    victim_id = f"{attrs['audit.stream.id']}-{attrs[STREAM_SEQ]}"
    with ElasticStandIn(max_content_length=LIMIT) as es:
        exp = exporter_for(es)
        with caplog.at_level(logging.WARNING, logger="otel_audit.exporters"):
            assert exp.export(records) is LogRecordExportResult.SUCCESS
        assert exp.last_rejected == (pos,)
        assert exp.counters.rejected == 1 and exp.counters.delivered == len(records) - 1 and exp.counters.failed == 0
        assert victim_id not in {d.id for d in es.documents(DS)} and len(es.documents(DS)) == len(records) - 1
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "rejected 1 audit record(s) for good" in errors[0]
        assert "413" in errors[0] and victim_id in errors[0] and "http.max_content_length" in errors[0]


def test_one_record_over_the_limit_behind_the_spool_is_rejected_and_sealed(shared_keys: Path, tmp_path: Path) -> None:
    """Behind the spool the oversize record is counted rejected (and named to the stream, which seals a marker),
    every other record is delivered once, and the verifier finds the gap of that one seq only."""
    with ElasticStandIn(max_content_length=LIMIT) as es:
        exp = exporter_for(es)
        spool = SpoolProcessor(tmp_path / "spool", {"elastic": exp}, retry_initial=0.05, retry_max=0.2)
        provider, sp = pipeline(shared_keys, spool)
        logger = provider.get_logger("otel_audit.tests")
        make = oversize(17)
        for i in range(60):
            logger.emit(**make(i))
        provider.shutdown()
        assert spool.stats.rejected.get("elastic", 0) == 1 and exp.counters.rejected == 1
        seqs = stored_seqs(es)
        victim = next(s for s in range(sp.seq) if s not in set(seqs))
        assert sorted(set(seqs)) == seqs and len(seqs) == sp.seq - 1
        report, _reader = source.verify_export([es.export_ndjson(DS)], Keyring.load(shared_keys), allow_open=True)
        assert report.streams[0].missing == [[victim, victim]]


def test_max_bulk_bytes_is_bounded_by_the_default_http_max_content_length() -> None:
    assert ElasticLogExporter("http://127.0.0.1:9", max_bulk_bytes=MAX_CONTENT_LENGTH).max_bulk_bytes == 100 * 2**20
    with pytest.raises(ConfigError, match="max_bulk_bytes.*http.max_content_length"):
        ElasticLogExporter("http://127.0.0.1:9", max_bulk_bytes=MAX_CONTENT_LENGTH + 1)
