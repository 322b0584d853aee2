"""Signed audit records through the Standard Webhooks exporter into the loopback receiver stand-in."""

from __future__ import annotations

import sys
from pathlib import Path

from _common import (
    BenchError,
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

from otel_audit.exporters._http import RetrySettings
from otel_audit.exporters.webhook import WebhookLogExporter
from otel_audit.keys import Signer
from otel_audit.processors.signing import SigningProcessor

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.standins.webhook import WebhookReceiver  # noqa: E402 - needs the repo root on sys.path

CHECKPOINT_EVERY = 1000
SECRET = "whsec_" + "YmVuY2gtd2ViaG9vay1zZWNyZXQtMzItYnl0ZXMhIQ=="  # 32 bytes, a benchmark-only secret
MAX_RUNS = 3  # each run is a full HTTP round trip per 100 records: keep the full benchmark to minutes


def _run(records: list, n: int, signer: Signer, exporter_factory) -> float:  # type: ignore[no-untyped-def]
    """Records per second from the first emit through force_flush, signed, into the given exporter."""
    exporter = exporter_factory()
    expected = n + n // CHECKPOINT_EVERY
    provider = provider_with(SigningProcessor(signer, downstream=batch_processor(exporter, expected + 16),
                                              checkpoint_every=CHECKPOINT_EVERY))
    try:
        seconds = emit_all(provider, records, n)
    finally:
        provider.shutdown()
    counters = getattr(exporter, "counters", None)
    if counters is not None and (counters.rejected or counters.failed):
        raise BenchError(f"the webhook exporter did not deliver everything: {counters}")
    return n / seconds


@benchmark("webhook")
def bench_webhook(cfg: Config) -> Figures:
    """Signed pipeline into WebhookLogExporter (batches of 100, one v1 signature) vs. a do-nothing exporter."""
    records = make_records()
    signer = Signer.generate("bench")
    n = cfg.records
    runs = min(cfg.runs, MAX_RUNS)
    with WebhookReceiver(secrets=[SECRET], keep=False) as rx:
        def webhook() -> WebhookLogExporter:
            return WebhookLogExporter(rx.url, secrets=[SECRET], timeout=30,
                                      retry=RetrySettings(initial_interval=0.05, max_interval=0.5))

        _run(records, min(n, 2000), signer, webhook)  # warm up
        before = rx.accepted_events
        rates: list[float] = []
        null_rates: list[float] = []
        for _ in range(runs):
            rates.append(_run(records, n, signer, webhook))
            null_rates.append(_run(records, n, signer, NullExporter))
        if rx.accepted_events - before < runs * n:
            raise BenchError(f"the receiver stored {rx.accepted_events - before} events of {runs * n}")
    cfg.note(f"{n} records per run, {runs} runs, max_batch_size 100, uncompressed, one HMAC secret; the receiver "
             "(same process) verifies each message with the standardwebhooks package and parses it")
    cfg.note(f"runs: webhook={[round(x) for x in rates]} null={[round(x) for x in null_rates]} records/s")
    return {
        "webhook_records_per_s": median(rates),
        "webhook_vs_null_exporter_ratio": median(rates) / median(null_rates),
    }
