"""Records per second through ElasticLogExporter into the Elasticsearch stand-in on loopback.

The whole real pipeline runs: SDK LoggerProvider + SigningProcessor + BatchLogRecordProcessor +
ElasticLogExporter (documents, NDJSON, gzip, `_bulk` over HTTP, per-item judging). The stand-in
(tests/standins/elastic.py) runs in a child process, started afresh for every run so its stored
documents never pile up, and so its own parsing does not share this process's GIL. It is a Python
server that parses every document: the figure is a floor for what a real cluster would take.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _common import (
    BenchError,
    Config,
    Figures,
    batch_processor,
    benchmark,
    emit_all,
    make_records,
    median,
    provider_with,
    timed,
)

from otel_audit.exporters._http import RetrySettings
from otel_audit.exporters.elastic import ElasticLogExporter
from otel_audit.keys import Signer
from otel_audit.processors.signing import SigningProcessor

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_EVERY = 1000
_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from tests.standins.elastic import ElasticStandIn
es = ElasticStandIn().start()
print(es.port, flush=True)
sys.stdin.read()
es.stop()
"""


@contextmanager
def _standin() -> Iterator[str]:
    """A stand-in in a child process; yields its URL."""
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(ROOT)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.strip().isdigit():
            raise BenchError("the Elasticsearch stand-in did not start")
        yield f"http://127.0.0.1:{int(line)}"
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _run(url: str, n: int, signer: Signer) -> tuple[float, ElasticLogExporter]:
    from tests.standins.elastic import DEFAULT_API_KEY

    exporter = ElasticLogExporter(url, api_key=DEFAULT_API_KEY, timeout=60,
                                  retry=RetrySettings(initial_interval=0.1, max_interval=1, max_elapsed_time=60))
    expected = n + n // CHECKPOINT_EVERY + 2
    signing = SigningProcessor(signer, downstream=batch_processor(exporter, expected + 16),
                               checkpoint_every=CHECKPOINT_EVERY)
    provider = provider_with(signing)
    try:
        seconds = emit_all(provider, make_records(), n)
    finally:
        provider.shutdown()
    c = exporter.counters
    if c.failed or c.rejected or c.delivered != signing.seq:
        raise BenchError(f"the stand-in did not take every record: {c}")
    return n / seconds, exporter


@benchmark("elastic")
def bench_elastic(cfg: Config) -> Figures:
    """Records/s through the real pipeline + ElasticLogExporter (_bulk, gzip) into the stand-in in a child process."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    signer = Signer.generate("bench")
    n = cfg.records
    runs = min(cfg.runs, 3)  # each run sends every record over HTTP to a Python server: keep it to minutes
    rates: list[float] = []
    with _standin() as url:  # warm-up: imports, connections, the stand-in's first data stream
        _run(url, min(n, 2000), signer)
    for _ in range(runs):
        with _standin() as url:
            rate, exporter = _run(url, n, signer)
            rates.append(rate)
    # where the time goes: building documents + NDJSON + gzip alone, without HTTP
    batch = _signed_batch(512, signer)
    calls = max(1, min(n, 50_000) // len(batch))
    encode = calls * len(batch) / timed(lambda: [exporter._requests(batch) for _ in range(calls)])
    cfg.note(f"{n} records per run, {runs} runs: {[round(x) for x in rates]} records/s; stand-in in a child process")
    cfg.note(f"documents + NDJSON + gzip alone (no HTTP): {encode:.0f} records/s")
    return {"elastic_records_per_s": median(rates)}


def _signed_batch(size: int, signer: Signer) -> list[object]:
    from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord

    class Capture(LogRecordProcessor):
        def __init__(self) -> None:
            self.records: list[ReadWriteLogRecord] = []

        def on_emit(self, log_record: ReadWriteLogRecord) -> None:
            self.records.append(log_record)

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    capture = Capture()
    provider = provider_with(SigningProcessor(signer, downstream=capture, checkpoint_every=10 * size))
    logger = provider.get_logger("otel-audit-bench")
    for r in make_records(size, seed=3):
        logger.emit(event_name=r.event_name, body=r.body, attributes=r.attributes, severity_number=r.severity_number)
    provider.shutdown()
    return list(capture.records[1:size + 1])


if __name__ == "__main__":  # python bench/bench_elastic.py [records]
    start = time.perf_counter()
    conf = Config(quick=True, records=int(sys.argv[1]) if len(sys.argv) > 1 else 20_000, runs=3)
    figures = bench_elastic(conf)
    for line in conf.notes:
        print(f"# elastic: {line}")
    for key, value in figures.items():
        print(f"{key}: {value:.0f}")
    print(f"# took {time.perf_counter() - start:.1f} s")
