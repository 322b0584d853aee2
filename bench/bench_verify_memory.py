"""Peak memory of `verify` against archive size: it must be bounded by streams and the reorder window, not by
the number of records (docs/verify-memory.md: <= 200 MB peak RSS at 10M records).

Each size runs in a fresh child process that feeds one signed stream (a start checkpoint, a size checkpoint
every 1000 records, an end checkpoint; as the signing processor writes them) record by record from a generator
into `Verifier.add_canonical`, then `finish()`, and reports its peak RSS. Figures:
`verify_memory_peak_mb_<n>` for each size, `verify_memory_bytes_per_record` = the growth of peak RSS per
added record between the two largest sizes (about 0 when bounded; it was ~455 before), and
`verify_memory_peak_mb_10M_extrapolated` from those two points.

    python bench/bench_verify_memory.py --child 1000000   # one size, prints JSON
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from _common import Config, Figures, benchmark

EVERY = 1000


def _records(n: int) -> Iterator[tuple[str, int, str, str, str]]:
    """(stream, seq, prev hex, digest hex, canonical content) of one closed stream of n records."""
    from otel_audit import canonical
    from otel_audit.canonical import CHECKPOINT_EVENT
    from otel_audit.merkle import CompactRange
    from otel_audit.note import Checkpoint, format_note

    signer = _signer()
    sid = hashlib.sha256(b"bench-memory").hexdigest()[:32]
    head = f'["v1","{sid}",'.encode()
    prev = bytes(32)
    tree = CompactRange()
    t0 = 1_700_000_000_000_000_000
    for seq in range(n):
        t = t0 + seq * 1000
        kind = "start" if seq == 0 else "end" if seq == n - 1 else "size" if seq % EVERY == 0 else None
        if kind is None:
            content = canonical.content_bytes("gen_ai.request", t, 9, "INFO", f"request {seq}",
                                              {"user.id": f"u{seq % 97}", "gen_ai.request.model": "m"})
        else:
            cp = Checkpoint(f"otel-audit/{sid}", seq, tree.root(), prev, t, kind, {}, None, kind == "end", None,
                            60 * 10**9)
            body = cp.body()
            note = format_note(body, [signer.sign(body.encode())])
            content = canonical.content_bytes(CHECKPOINT_EVENT, t, 9, "INFO", note, {
                "audit.category": "integrity", "audit.action": "checkpoint", "audit.outcome": "success",
                "audit.checkpoint.kind": kind, "audit.checkpoint.size": seq, "audit.checkpoint.key": signer.name})
        digest = hashlib.sha256(b"\x00" + prev + head + str(seq).encode() + b"," + content[1:]).digest()
        tree.append(digest)
        yield sid, seq, prev.hex(), digest.hex(), content.decode()
        prev = digest


_SIGNER = None


def _signer():  # type: ignore[no-untyped-def]
    global _SIGNER
    if _SIGNER is None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from otel_audit.keys import Signer

        _SIGNER = Signer("bench", Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    return _SIGNER


def _child(n: int) -> dict[str, float]:
    from otel_audit.keys import Keyring
    from otel_audit.verify import Verifier

    v = Verifier(Keyring([_signer().public()]))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    for sid, seq, prev, digest, content in _records(n):
        v.add_canonical(sid, seq, prev, digest, content, "bench")
    rep = v.finish()
    seconds = time.perf_counter() - t0
    if not rep.ok or rep.proven != n:
        raise SystemExit(f"the benchmark stream does not verify: {rep.problems or rep.streams[0].problems}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"records": n, "peak_mb": peak, "base_mb": base, "seconds": seconds}


def measure(n: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    out = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True, env=env,
                         check=False)
    if out.returncode:
        raise RuntimeError(out.stderr.strip() or out.stdout.strip())
    return json.loads(out.stdout.strip().splitlines()[-1])


@benchmark("verify_memory")
def bench_verify_memory(cfg: Config) -> Figures:
    """Peak RSS of verifying one stream of n records, for growing n, each in a fresh process."""
    sizes = [50_000, 200_000] if cfg.quick else [250_000, 1_000_000, 2_000_000]
    got = [measure(n) for n in sizes]
    for g in got:
        cfg.note(f"{int(g['records']):,} records: peak RSS {g['peak_mb']:.1f} MB (at start {g['base_mb']:.1f} MB), "
                 f"{g['records'] / g['seconds']:,.0f} records/s including generating them")
    lo, hi = got[-2], got[-1]  # the growth between the two largest sizes (the window is full in both)
    per = (hi["peak_mb"] - lo["peak_mb"]) * 2**20 / (hi["records"] - lo["records"])
    cfg.note("verify_memory_bytes_per_record ~0 when memory is bounded (was ~455 when every record was kept)")
    figures = {f"verify_memory_peak_mb_{int(g['records'])}": g["peak_mb"] for g in got}
    figures["verify_memory_bytes_per_record"] = per
    figures["verify_memory_peak_mb_10M_extrapolated"] = hi["peak_mb"] + per * (10_000_000 - hi["records"]) / 2**20
    return figures


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--child":
    print(json.dumps(_child(int(sys.argv[2]))))
