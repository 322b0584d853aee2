"""Records/s from the Python producer through the real, stock OpenTelemetry Collector into its file archive.

Producer in this process: LoggerProvider -> SigningProcessor -> BatchLogRecordProcessor -> OTLP/HTTP
exporter (protobuf). Collector (the binary collector-config/build.sh builds; built on first use, which
can take minutes): otlp receiver -> batch -> file exporter (OTLP JSON lines). The clock runs from the
first emit until the archive holds every record and checkpoint of the stream; the archive is then
verified, so a figure is only reported for a complete, intact stream. Collector and producer share
the machine's cores, so the figure is a lower bound for a collector on its own host.
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path

import orjson
from _common import BenchError, Config, Figures, benchmark, cycle, make_records, median
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

from otel_audit.keys import Keyring, Signer
from otel_audit.processors.signing import SigningProcessor
from otel_audit.verify import verify_paths

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT / "tests") not in sys.path:
    sys.path.append(str(_ROOT / "tests"))

from collector import Collector, CollectorError  # noqa: E402 - needs tests/ on the path

CHECKPOINT_EVERY = 1000

CONFIG = """
extensions:
  health_check:
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${env:OTLP_HTTP}
processors:
  batch:
    timeout: 200ms
    send_batch_size: 1024
exporters:
  file:
    path: ${env:ARCHIVE}
    format: json
    append: true
    flush_interval: 50ms
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
"""


class _Counter:
    """Counts the log records of the complete lines appended to an archive so far."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.records, self._tail = path, 0, 0, b""

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        self.offset += len(data)
        data = self._tail + data
        *lines, self._tail = data.split(b"\n")
        for line in lines:
            if line.strip():
                doc = orjson.loads(line)
                self.records += sum(len(sl.get("logRecords") or ()) for rl in doc.get("resourceLogs") or ()
                                    for sl in rl.get("scopeLogs") or ())
        return self.records


def _run(records: list, n: int, signer: Signer, ring: Keyring, workdir: Path, timeout: float = 600.0) -> float:
    archive = workdir / "archive.jsonl"
    with Collector(CONFIG, env={"ARCHIVE": str(archive)}, endpoints=["OTLP_HTTP"], workdir=workdir / "otelcol") as c:
        exporter = OTLPLogExporter(endpoint=c.url("OTLP_HTTP", "/v1/logs"), timeout=30)
        batch = BatchLogRecordProcessor(exporter, max_queue_size=n + 4096, max_export_batch_size=512)
        provider = LoggerProvider(shutdown_on_exit=False)
        sp = SigningProcessor(signer, downstream=batch, checkpoint_every=CHECKPOINT_EVERY)
        provider.add_log_record_processor(sp)
        emit = provider.get_logger("otel-audit-bench").emit
        counter = _Counter(archive)
        gc.collect()
        start = time.perf_counter()
        for r in cycle(records, n):
            emit(event_name=r.event_name, body=r.body, attributes=r.attributes, severity_number=r.severity_number)
        provider.shutdown()  # end checkpoint, flush, exporter shutdown
        expected = sp.seq
        deadline = time.monotonic() + timeout
        while counter.poll() < expected:
            if time.monotonic() > deadline:
                raise BenchError(f"the archive holds {counter.records} of {expected} records after {timeout:.0f}s")
            time.sleep(0.01)
        seconds = time.perf_counter() - start
    rep = verify_paths([archive], ring)
    if not rep.ok or len(rep.streams) != 1 or rep.streams[0].records != expected:
        raise BenchError(f"the collector's archive does not verify whole: {str(rep.to_json())[:500]}")
    return n / seconds


@benchmark("collector")
def bench_collector(cfg: Config) -> Figures:
    """Signed records/s from the first emit until the collector's file archive holds every record."""
    records = make_records()
    signer = Signer.generate("bench")
    ring = Keyring([signer.public()])
    n = max(cfg.records // 4, 2000)  # 5,000 quick, 50,000 full: real HTTP, protobuf, a second process
    with tempfile.TemporaryDirectory(prefix="bench-collector-") as d:
        try:
            _run(records, min(n, 2000), signer, ring, Path(d) / "warmup")
            rates = [_run(records, n, signer, ring, Path(d) / f"run{k}") for k in range(cfg.runs)]
        except CollectorError as e:
            raise BenchError(f"the collector could not be built or started: {e}") from e
    cfg.note(f"{n} records per run, {cfg.runs} runs, otlp/http -> batch -> file (format json), "
             f"producer and collector on the same cores")
    cfg.note(f"runs: {[round(x) for x in rates]}")
    return {"collector_e2e_records_per_s": median(rates)}

