"""Peak memory of the `otel-audit verify` command on OTLP/JSON archives the real pipeline wrote, on the native
integrity core and in pure Python: each run is a fresh process whose peak RSS is read by a parent of its own.

Figures: `verify_peak_rss_mb_<size>_<path>` for each archive size (1M records, and 5M to show it is flat;
`--quick`: 100k and 500k) and path, and `verify_rss_growth_mb_<path>` = the difference between the two sizes.
Goal: <= 100 MB at 1M records on either path, and no growth with size.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BenchError, Config, Figures, benchmark, core_paths, write_archive

_PEAK = """\
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True)
if proc.returncode:
    sys.exit(proc.stderr.decode(errors="replace")[-500:] or f"exit {proc.returncode}")
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _archive(folder: Path, n: int) -> tuple[Path, Path]:
    """A closed stream of n records written through the signing pipeline and the file exporter; its keyring."""
    from otel_audit.keys import Keyring, Signer

    signer = Signer.generate("bench")
    keyring = folder / "keyring.json"
    keyring.write_bytes(Keyring([signer.public()]).to_json())
    data = folder / "archive"
    data.mkdir()
    write_archive(data, signer, n)
    return data, keyring


def _peak_mb(archive: Path, keyring: Path, path: str) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of one `otel-audit verify` run on the given path."""
    cli = Path(sys.executable).with_name("otel-audit")
    env = {**os.environ, "OTEL_AUDIT_NATIVE": "required" if path == "native" else "off"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _PEAK, str(cli), "verify", "--keys", str(keyring), "--no-progress",
                          str(archive)], capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - t0
    if out.returncode:
        raise BenchError(f"otel-audit verify ({path}) failed: {out.stderr.strip()[-500:]}")
    return int(out.stdout.strip()) / 1024, seconds


@benchmark("verify_rss")
def bench_verify_rss(cfg: Config) -> Figures:
    """Peak RSS of `otel-audit verify` on 1M- and 5M-record archives (quick: 100k, 500k), both paths."""
    sizes = [100_000, 500_000] if cfg.quick else [1_000_000, 5_000_000]
    paths = core_paths(cfg)
    figures: Figures = {}
    with tempfile.TemporaryDirectory(prefix="otel-audit-bench-rss-") as tmp:
        for n in sizes:
            folder = Path(tmp) / str(n)
            folder.mkdir()
            t0 = time.perf_counter()
            archive, keyring = _archive(folder, n)
            size = sum(f.stat().st_size for f in archive.iterdir())
            cfg.note(f"{n:,} records: archive {size / 2**20:,.0f} MB written in {time.perf_counter() - t0:.0f} s")
            label = f"{n // 1_000_000}m" if n >= 1_000_000 else f"{n // 1000}k"
            for path in paths:
                mb, seconds = _peak_mb(archive, keyring, path)
                figures[f"verify_peak_rss_mb_{label}_{path}"] = mb
                cfg.note(f"{n:,} records, {path}: peak RSS {mb:.1f} MB, {n / seconds:,.0f} records/s for the whole "
                         "command (start-up included)")
            for f in archive.iterdir():
                f.unlink()
    lo, hi = (f"{n // 1_000_000}m" if n >= 1_000_000 else f"{n // 1000}k" for n in sizes)
    for path in paths:
        figures[f"verify_rss_growth_mb_{path}"] = (figures[f"verify_peak_rss_mb_{hi}_{path}"]
                                                  - figures[f"verify_peak_rss_mb_{lo}_{path}"])
    cfg.note("goal: verify_peak_rss_mb_1m <= 100 on both paths, the same at 5m (growth ~0)")
    return figures
