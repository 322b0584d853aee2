"""Records per second through DatadogLogExporter to the Datadog stand-in, next to encoding alone.

The stand-in (tests/standins/datadog.py) runs in this process on loopback and does real work per
request (gunzip, JSON parse, per-log size check), sharing the GIL with the exporter: the figure
is a floor for a real intake, not a ceiling.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from _common import BenchError, Config, Figures, benchmark, make_records, median, provider_with, timed
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord

from otel_audit import canonical
from otel_audit.exporters._http import RetrySettings
from otel_audit.exporters.datadog import DatadogLogExporter
from otel_audit.keys import Signer
from otel_audit.processors.signing import SigningProcessor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root, for tests.standins
from tests.standins.datadog import DEFAULT_API_KEY, DatadogStandIn  # noqa: E402

BATCH = 512  # the BatchLogRecordProcessor's default max_export_batch_size


class _Capture(LogRecordProcessor):
    def __init__(self) -> None:
        self.records: list[ReadWriteLogRecord] = []

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.records.append(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _signed_batch(size: int) -> list[Any]:
    """`size` typical event records as the signing processor hands them to an exporter."""
    capture = _Capture()
    provider = provider_with(SigningProcessor(Signer.generate("bench"), downstream=capture,
                                              checkpoint_every=10 * size, checkpoint_interval=3600))
    logger = provider.get_logger("otel-audit-bench")
    for r in make_records(size, seed=3):
        logger.emit(event_name=r.event_name, body=r.body, attributes=r.attributes, severity_number=r.severity_number)
    provider.shutdown()
    return [x for x in capture.records if x.log_record.event_name != canonical.CHECKPOINT_EVENT][:size]


@benchmark("datadog")
def bench_datadog(cfg: Config) -> Figures:
    """DatadogLogExporter.export in batches of 512 to the stand-in (gzip, JSON, HTTP), and encoding alone."""
    batch = _signed_batch(BATCH)
    calls = max(1, cfg.records // BATCH)
    with DatadogStandIn(store=False) as standin:
        exporter = DatadogLogExporter(DEFAULT_API_KEY, endpoint=standin.url, timeout=30.0,
                                      retry=RetrySettings(initial_interval=0.1, max_elapsed_time=30))
        try:
            exporter.export(batch)  # warm-up: connection, caches

            def send() -> None:
                for _ in range(calls):
                    exporter.export(batch)

            def encode() -> None:
                for _ in range(calls):
                    exporter._requests(batch)

            rates = [calls * BATCH / timed(send) for _ in range(cfg.runs)]
            encode_rates = [calls * BATCH / timed(encode) for _ in range(cfg.runs)]
        finally:
            exporter.shutdown()
        expected = (1 + calls * cfg.runs) * BATCH
        c = exporter.counters
        if c.delivered != expected or c.rejected or c.failed or standin.received != expected:
            raise BenchError(f"delivered {c.delivered} of {expected} records (stand-in got {standin.received}, "
                             f"rejected {c.rejected}, failed {c.failed}): {c.reasons[:1]}")
        wire = sum(s.wire_bytes for s in standin.seen) / max(1, standin.received)
        raw = sum(s.body_bytes for s in standin.seen) / max(1, standin.received)
    cfg.note(f"{calls * BATCH} records per run in batches of {BATCH}, {cfg.runs} runs: "
             f"{[round(x) for x in rates]} records/s; {raw:.0f} bytes per entry, {wire:.0f} gzipped")
    cfg.note(f"encoding alone (entries + gzip, no HTTP): {[round(x) for x in encode_rates]} records/s")
    cfg.note("the stand-in shares this process and its GIL: datadog_records_per_s is a floor")
    return {
        "datadog_records_per_s": median(rates),
        "datadog_encode_records_per_s": median(encode_rates),
    }
