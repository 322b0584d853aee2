"""Proving many streams that were each delivered twice (at-least-once delivery): time per stream must not grow
with the number of streams.

`verify_duplicates_scaling_ratio` = (seconds per stream with 2N streams) / (seconds per stream with N
streams), both measured in this run: about 1.0 when choosing one record per seq is linear in the number of
duplicated streams, about 2.0 when it is quadratic (as it was: every stream scanned every duplicate).
"""

from __future__ import annotations

import gc
import hashlib
import secrets
import time

from _common import Config, Figures, benchmark, median

from otel_audit.keys import Keyring
from otel_audit.verify import Verifier

RECORDS_PER_STREAM = 4


def _records(streams: int) -> list[tuple[str, int, str, str, str]]:
    """Chained records of `streams` streams (unsigned: proving fails them, which is beside the point here)."""
    out = []
    for _ in range(streams):
        sid = secrets.token_hex(16)
        prev = bytes(32)
        for seq in range(RECORDS_PER_STREAM):
            content = f'["gen_ai.request","{1_700_000_000_000_000_000 + seq}",9,"INFO","body {seq}",{{}}]'
            digest = hashlib.sha256(b"\x00" + prev + f'["v1","{sid}",{seq},'.encode() + content.encode()[1:]).digest()
            out.append((sid, seq, prev.hex(), digest.hex(), content))
            prev = digest
    return out


def _seconds(records: list[tuple[str, int, str, str, str]]) -> float:
    v = Verifier(Keyring())
    for _copy in range(2):  # every record delivered twice
        for sid, seq, prev, digest, content in records:
            v.add_canonical(sid, seq, prev, digest, content, "bench")
    gc.collect()
    t0 = time.perf_counter()
    v.finish()
    return time.perf_counter() - t0


@benchmark("verify_duplicates")
def bench_verify_duplicates(cfg: Config) -> Figures:
    """Verifier.finish() over N and 2N streams each delivered twice: time per stream, and the ratio."""
    n = 3000 if cfg.quick else 12000
    small, large = _records(n), _records(2 * n)
    per_small: list[float] = []
    per_large: list[float] = []
    for _ in range(max(1, min(cfg.runs, 3))):
        per_small.append(_seconds(small) / n)
        per_large.append(_seconds(large) / (2 * n))
    cfg.note(f"{n} and {2 * n} streams of {RECORDS_PER_STREAM} records, each record twice; finish() "
             f"us per stream: {[round(x * 1e6, 1) for x in per_small]} vs {[round(x * 1e6, 1) for x in per_large]}")
    cfg.note("verify_duplicates_scaling_ratio ~1.0 linear, ~2.0 quadratic")
    return {
        "verify_duplicates_us_per_stream": median(per_large) * 1e6,
        "verify_duplicates_scaling_ratio": median(per_large) / median(per_small),
    }
