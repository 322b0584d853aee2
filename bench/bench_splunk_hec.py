"""Records/s through the real Splunk HEC exporter, against the HEC stand-in on loopback.

Signed pipeline (SigningProcessor -> BatchLogRecordProcessor -> SplunkHecLogExporter, gzip on,
the default 2 MiB requests) into tests/standins/splunk.py, with and without indexer
acknowledgement; the baseline is the same signed pipeline into a do-nothing exporter, in the same
process. The stand-in runs in a child process (its JSON parsing would otherwise share our GIL);
on a 2-core machine it still competes for CPU, so the figures are a lower bound.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
from otel_audit.exporters.splunk_hec import SplunkHecLogExporter
from otel_audit.keys import Signer
from otel_audit.processors.signing import SigningProcessor

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

from tests.standins.splunk import DEFAULT_TOKEN, SplunkHecStandIn  # noqa: E402 - needs the repo root on the path

CHECKPOINT_EVERY = 1000


def _serve(conn: Any, use_ack: bool) -> None:
    with SplunkHecStandIn(use_ack=use_ack) as hec:
        conn.send(hec.port)
        conn.recv()  # until the run is over
        conn.send(hec.count)


@contextmanager
def _standin(use_ack: bool) -> Iterator[tuple[str, Any]]:
    """The stand-in in a child process, so its parsing does not share our GIL: (url, count())."""
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(theirs, use_ack), daemon=True)
    proc.start()
    try:
        if not ours.poll(10):
            raise BenchError("the HEC stand-in did not start")
        port = ours.recv()

        def count() -> int:
            ours.send("count")
            return int(ours.recv())

        yield f"http://127.0.0.1:{port}", count
    finally:
        proc.kill()
        proc.join(5)


def _run(records: list, n: int, signer: Signer, *, use_ack: bool | None) -> float:
    """Records/s from the first emit through force_flush; use_ack None: the do-nothing baseline."""
    expected = n + n // CHECKPOINT_EVERY + 2
    if use_ack is None:
        exporter = NullExporter()
        provider = provider_with(SigningProcessor(signer, downstream=batch_processor(exporter, expected),
                                                  checkpoint_every=CHECKPOINT_EVERY))
        try:
            seconds = emit_all(provider, records, n)
        finally:
            provider.shutdown()
        return n / seconds
    with _standin(use_ack) as (url, count):
        hec_exporter = SplunkHecLogExporter(url, DEFAULT_TOKEN, index="audit", sourcetype="_json",
                                            use_ack=use_ack, ack_poll_interval=1.0,
                                            retry=RetrySettings(initial_interval=0.1, max_elapsed_time=60))
        provider = provider_with(SigningProcessor(signer, downstream=batch_processor(hec_exporter, expected),
                                                  checkpoint_every=CHECKPOINT_EVERY))
        try:
            seconds = emit_all(provider, records, n)
        finally:
            provider.shutdown()
        c = hec_exporter.counters
        took = count()
        if c.rejected or c.failed or took < n:
            raise BenchError(f"the stand-in took {took} of {n}+ records (rejected {c.rejected}, "
                             f"failed {c.failed}): {c.reasons[:1]}")
    return n / seconds


@benchmark("splunk_hec")
def bench_splunk_hec(cfg: Config) -> Figures:
    """Signed records/s into the HEC stand-in, with and without indexer acknowledgement."""
    records = make_records()
    signer = Signer.generate("bench")
    n = max(cfg.records // 4, 2000)  # a quarter of the pipeline benchmarks' count: HTTP + gzip + parse
    for use_ack in (None, False, True):
        _run(records, min(n, 2000), signer, use_ack=use_ack)  # warm-up
    base: list[float] = []
    plain: list[float] = []
    acked: list[float] = []
    for _ in range(cfg.runs):
        base.append(_run(records, n, signer, use_ack=None))
        plain.append(_run(records, n, signer, use_ack=False))
        acked.append(_run(records, n, signer, use_ack=True))
    cfg.note(f"{n} records per run, {cfg.runs} interleaved runs, gzip, batches of 512, stand-in in a child process")
    cfg.note(f"runs: null={[round(x) for x in base]} hec={[round(x) for x in plain]} "
             f"hec_ack={[round(x) for x in acked]}")
    return {
        "splunk_hec_records_per_s": median(plain),
        "splunk_hec_ack_records_per_s": median(acked),
        "splunk_hec_vs_null_ratio": median(plain) / median(base),
    }
