"""The durable spool against the in-memory SDK batch pipeline, and the burst drop figures."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from _common import (
    Config,
    Figures,
    NullExporter,
    batch_processor,
    benchmark,
    emit_all,
    make_records,
    median,
    provider_with,
)
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

from otel_audit.keys import Signer
from otel_audit.processors.signing import SigningProcessor
from otel_audit.processors.spool import SpoolProcessor

CHECKPOINT_EVERY = 1000


def _run(records: list, n: int, signer: Signer, spool_dir: Path | None) -> float:
    exporter = NullExporter()
    if spool_dir is None:
        downstream = batch_processor(exporter, n + n // CHECKPOINT_EVERY + 16)
    else:
        shutil.rmtree(spool_dir, ignore_errors=True)
        downstream = SpoolProcessor(spool_dir, {"null": exporter}, fsync_interval=0.01)
    provider = provider_with(SigningProcessor(signer, downstream=downstream, checkpoint_every=CHECKPOINT_EVERY))
    try:
        seconds = emit_all(provider, records, n)
    finally:
        provider.shutdown()
    if exporter.records < n:
        raise RuntimeError(f"only {exporter.records} of {n} records delivered")
    return seconds / n * 1e6


@benchmark("spool")
def bench_spool(cfg: Config) -> Figures:
    """Signed pipeline through the durable spool (fsync every 10 ms) vs. through the SDK batch processor."""
    records = make_records()
    signer = Signer.generate("bench")
    n = cfg.records
    tmp = Path(tempfile.mkdtemp(prefix="otel-audit-bench-spool-"))
    try:
        _run(records, min(n, 2000), signer, None)
        _run(records, min(n, 2000), signer, tmp / "spool")
        mem: list[float] = []
        disk: list[float] = []
        for _ in range(cfg.runs):
            mem.append(_run(records, n, signer, None))
            disk.append(_run(records, n, signer, tmp / "spool"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cfg.note(f"{n} records per run, emit through delivery to a do-nothing exporter, signed both ways")
    cfg.note(f"runs: batch_us={[round(x, 2) for x in mem]} spool_us={[round(x, 2) for x in disk]}")
    cfg.note("goal: spool_overhead_ratio <= 1.3 with fsync every 10 ms")
    return {
        "batch_pipeline_us_per_record": median(mem),
        "spool_pipeline_us_per_record": median(disk),
        "spool_overhead_ratio": median(disk) / median(mem),
    }


class _SlowSink(NullExporter):
    """A destination that takes 20 us a record (an HTTP SIEM at ~50k records/s)."""

    def export(self, batch):  # type: ignore[no-untyped-def]
        time.sleep(len(batch) * 20e-6)
        return super().export(batch)


@benchmark("burst")
def bench_burst(cfg: Config) -> Figures:
    """100k records from one thread as fast as it can: what the SDK's default batch processor drops, and ours."""
    n = 100_000
    records = make_records()
    signer = Signer.generate("bench")
    sdk_sink = _SlowSink()
    provider = provider_with(SigningProcessor(signer, downstream=BatchLogRecordProcessor(sdk_sink),
                                              checkpoint_every=CHECKPOINT_EVERY))
    emit_all(provider, records, n)
    provider.shutdown()
    tmp = Path(tempfile.mkdtemp(prefix="otel-audit-bench-burst-"))
    ours = _SlowSink()
    spool = SpoolProcessor(tmp / "spool", {"sink": ours}, fsync_interval=0.01)
    provider = provider_with(SigningProcessor(signer, downstream=spool, checkpoint_every=CHECKPOINT_EVERY))
    try:
        emit_all(provider, records, n)
        provider.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cps = n // CHECKPOINT_EVERY + 2
    cfg.note(f"{n} records, a destination taking 20 us/record, SDK defaults (max_queue_size=2048)")
    return {
        "sdk_batch_dropped": max(0, n + cps - sdk_sink.records),
        "durable_dropped": max(0, n + cps - ours.records) + spool.stats.dropped,
    }
