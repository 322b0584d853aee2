"""Redaction's cost: the signed pipeline with and without the RedactionProcessor in front.

Two record mixes: the typical audit records of ``make_records`` (short strings), and the same
with a ~2 KB prompt-like body in which one record in fifty holds a credential. The baseline is
the signed pipeline (SigningProcessor + BatchLogRecordProcessor + do-nothing exporter) run
interleaved in the same process.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from _common import (
    AuditRecord,
    BenchError,
    Config,
    Figures,
    NullExporter,
    batch_processor,
    benchmark,
    emit_all,
    make_records,
    median,
)
from opentelemetry.sdk._logs import LoggerProvider

from otel_audit.keys import Signer
from otel_audit.processors.redaction import RedactionProcessor
from otel_audit.processors.signing import SigningProcessor

CHECKPOINT_EVERY = 1000
_WORDS = (  # noqa: SIM905 - a word list, easier to read and edit as prose
    "please summarise the quarterly report for the board and list the open risks the team found in "
    "the vendor review including data retention access control and incident response timelines"
).split(" ")


def _prompt_records(n: int) -> list[AuditRecord]:
    rnd = random.Random(7)
    out = []
    for i, r in enumerate(make_records(n)):
        words = [rnd.choice(_WORDS) for _ in range(330)]
        if i % 50 == 0:
            key = "sk-proj-" + "".join(rnd.choices("abcdefghijkLMNOP0123456789", k=40))
            words.insert(rnd.randrange(len(words)), key)
        out.append(dataclasses.replace(r, body=" ".join(words)))
    return out


def _run(records: Sequence[AuditRecord], n: int, signer: Signer, redact: bool) -> float:
    exporter = NullExporter()
    expected = n + n // CHECKPOINT_EVERY
    provider = LoggerProvider(shutdown_on_exit=False)
    if redact:
        provider.add_log_record_processor(RedactionProcessor(mode="hmac", hmac_key="hex:" + "ab" * 32))
    provider.add_log_record_processor(
        SigningProcessor(signer, downstream=batch_processor(exporter, expected + 16), checkpoint_every=CHECKPOINT_EVERY)
    )
    try:
        seconds = emit_all(provider, records, n)
    finally:
        provider.shutdown()
    if exporter.records < expected:
        raise BenchError(f"the pipeline exported {exporter.records} records of {expected}; some were dropped")
    return seconds / n * 1e6


def _pair(cfg: Config, records: Sequence[AuditRecord], n: int, what: str) -> tuple[float, float]:
    signer = Signer.generate("bench")
    _run(records, min(n, 2000), signer, False)
    _run(records, min(n, 2000), signer, True)
    base: list[float] = []
    red: list[float] = []
    for _ in range(cfg.runs):
        base.append(_run(records, n, signer, False))
        red.append(_run(records, n, signer, True))
    cfg.note(f"{what}: {n} records per run, {cfg.runs} interleaved runs; signed_us={[round(x, 2) for x in base]} "
             f"redacted_signed_us={[round(x, 2) for x in red]}")
    return median(base), median(red)


@benchmark("redaction")
def bench_redaction(cfg: Config) -> Figures:
    """Signed pipeline with vs. without RedactionProcessor (hmac), typical records and 2 KB prompt bodies."""
    n = cfg.records
    b, r = _pair(cfg, make_records(), n, "typical records")
    pb, pr = _pair(cfg, _prompt_records(1000), max(1000, n // 10), "2 KB prompt bodies")
    cfg.note("goal: redaction_overhead_ratio <= 3.0 on typical records")
    return {
        "signed_pipeline_us_per_record": b,
        "redacted_signed_pipeline_us_per_record": r,
        "redaction_overhead_ratio": r / b,
        "prompt_signed_us_per_record": pb,
        "prompt_redacted_signed_us_per_record": pr,
        "prompt_redaction_overhead_ratio": pr / pb,
    }
