"""Run the otel-audit benchmarks and print each figure as `name: value` (context lines start with `#`).

    python bench/run.py            # full: ~200k records per run, a few minutes
    python bench/run.py --quick    # ~20k records per run, under a minute
    python bench/run.py --only pipeline --only verify
    python bench/run.py --list

Every ratio is against a baseline measured in the same process; nothing here asserts a timing.
Add a benchmark with `@benchmark("name")` on a function `(Config) -> dict[str, float]`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from _common import (
    CHECKPOINT_EVERY,
    REGISTRY,
    AuditRecord,
    BenchError,
    Config,
    Figures,
    NullExporter,
    batch_processor,
    benchmark,
    core_paths,
    emit_all,
    fmt,
    make_records,
    median,
    provider_with,
    timed,
    use_path,
    write_archive,
)
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.version import __version__ as sdk_version

from otel_audit import _native, canonical
from otel_audit._sdk_compat import writable_attributes
from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.keys import Keyring, Signer
from otel_audit.otlpjson import decode_anyvalue, decode_attributes
from otel_audit.processors.signing import SigningProcessor
from otel_audit.verify import expand_paths, iter_records, verify_paths

QUICK_RECORDS = 20_000
FULL_RECORDS = 200_000
BATCH = 512  # the BatchLogRecordProcessor's default max_export_batch_size


# -- pipeline: plain SDK vs. signing processor ------------------------------------------------------


class _FloorProcessor(LogRecordProcessor):
    """The least a signer can do: read the record and write the four integrity attributes (fixed values,
    nothing hashed, nothing chained), then hand it on. Its cost over the plain pipeline is the floor that
    `signing_overhead_ratio` is to be read against."""

    def __init__(self, downstream: LogRecordProcessor) -> None:
        self._downstream = downstream
        self._seq = 0

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        lr = log_record.log_record
        d = writable_attributes(lr)
        self._seq += 1
        d["audit.stream.id"] = "0" * 32
        d["audit.stream.seq"] = self._seq
        d["audit.integrity.prev"] = "0" * 64
        d["audit.integrity.digest"] = "0" * 64
        self._downstream.on_emit(log_record)

    def shutdown(self) -> None:
        self._downstream.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._downstream.force_flush(timeout_millis)


def _pipeline_run(records: Sequence[AuditRecord], n: int, make_exporter: Callable[[], LogRecordExporter],
                  signer: Signer | None, floor: bool = False) -> float:
    """Microseconds per record from the first emit through force_flush; signed when a signer is given,
    through `_FloorProcessor` when `floor`."""
    exporter = make_exporter()
    expected = n if signer is None else n + n // CHECKPOINT_EVERY  # + start/size/flush checkpoints
    downstream = batch_processor(exporter, expected + 16)
    if floor:
        processor: LogRecordProcessor = _FloorProcessor(downstream)
    elif signer is None:
        processor = downstream
    else:
        processor = SigningProcessor(signer, downstream=downstream, checkpoint_every=CHECKPOINT_EVERY)
    provider = provider_with(processor)
    try:
        seconds = emit_all(provider, records, n)
    finally:
        provider.shutdown()
    exported = getattr(exporter, "records", None)
    if exported is not None and exported < expected:
        raise BenchError(f"the pipeline exported {exported} records of {expected}; some were dropped")
    return seconds / n * 1e6


def _compare(cfg: Config, make_exporter: Callable[[], LogRecordExporter], what: str,
             with_floor: bool = False, paths: Sequence[str] = ("active",)) -> dict[str, float]:
    """Median us/record over interleaved runs of the plain pipeline, the signed one on each integrity core path
    (`paths`: "native", "python", or "active" for whatever is in use) and, with `with_floor`, the floor."""
    records = make_records()
    signer = Signer.generate("bench")
    n = cfg.records
    warm = min(n, 2000)
    kinds = ["plain", *(f"signed_{p}" for p in paths), *(["floor"] if with_floor else [])]

    def once(kind: str, count: int) -> float:
        if kind == "plain":
            return _pipeline_run(records, count, make_exporter, None)
        if kind == "floor":
            return _pipeline_run(records, count, make_exporter, None, floor=True)
        path = kind.removeprefix("signed_")
        if path != "active":
            use_path(path)
        return _pipeline_run(records, count, make_exporter, signer)

    for k in kinds:
        once(k, warm)
    runs: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(cfg.runs):  # interleaved, so drift (thermal, other load) hits all alike
        for k in kinds:
            runs[k].append(once(k, n))
    cfg.note(f"{n} records per run, {cfg.runs} interleaved runs each, checkpoint_every={CHECKPOINT_EVERY}, {what}")
    cfg.note("runs (us/record): " + " ".join(f"{k}={[round(x, 2) for x in v]}" for k, v in runs.items()))
    return {k: median(v) for k, v in runs.items()}


def _startup_ms(cmd: list[str], runs: int) -> float:
    """Median wall time of a fresh process running `cmd` to completion, in milliseconds."""
    import subprocess

    # as on a user's machine: bytecode cached (a sandbox may set PYTHONDONTWRITEBYTECODE, which recompiles
    # every module at every start); one run first writes the cache
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(cmd, capture_output=True, check=False, env=env)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, check=False, env=env)
        times.append((time.perf_counter() - start) * 1000)
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}")
    return median(times)


@benchmark("pipeline")
def bench_pipeline(cfg: Config) -> Figures:
    """Emit-to-flush cost per record: SDK + BatchLogRecordProcessor, with and without SigningProcessor (on the
    native integrity core and in pure Python), and the floor (a processor that only writes the four integrity
    attributes); the CLI's start-up next to bare Python's."""
    paths = core_paths(cfg)
    m = _compare(cfg, NullExporter, "do-nothing exporter", with_floor=True, paths=paths)
    cfg.note("goal: signing_overhead_ratio_native <= 1.15, _python <= 1.30; signing_floor_ratio is what writing "
             "the attributes alone costs")
    p = m["plain"]
    figures = {"plain_pipeline_us_per_record": p}
    for path in paths:
        figures[f"signed_pipeline_us_per_record_{path}"] = m[f"signed_{path}"]
        figures[f"signing_overhead_ratio_{path}"] = m[f"signed_{path}"] / p
    figures["signing_floor_ratio"] = m["floor"] / p
    figures.update(_startup(cfg))
    return figures


def _startup(cfg: Config) -> Figures:
    """`otel-audit verify` of a tiny archive (one record) and `otel-audit --help`, fresh processes, medians,
    next to bare Python's start-up."""
    cli = Path(sys.executable).with_name("otel-audit")
    if not cli.exists():
        cfg.note(f"cli_startup_ms: not measured, no otel-audit script next to {sys.executable}")
        return {}
    runs = max(cfg.runs * 3, 11)
    bare = _startup_ms([sys.executable, "-c", "pass"], runs)
    with tempfile.TemporaryDirectory(prefix="otel-audit-bench-") as tmp:
        signer = Signer.generate("bench")
        keyring = Path(tmp) / "keyring.json"
        keyring.write_bytes(Keyring([signer.public()]).to_json())
        archive = write_archive(Path(tmp), signer, 1)
        verify = _startup_ms([str(cli), "verify", "--keys", str(keyring), "--no-progress", str(archive)], runs)
        helped = _startup_ms([str(cli), "--help"], runs)
    cfg.note(f"cli_startup_ms: {cli} verify of a one-record archive, median of {runs}; cli_help_ms: --help; "
             f"python_startup_ms: {sys.executable} -c pass. Goal: cli_startup_ratio < 2")
    return {"python_startup_ms": bare, "cli_startup_ms": verify, "cli_startup_ratio": verify / bare,
            "cli_help_ms": helped}


# -- canonical form ---------------------------------------------------------------------------------


@benchmark("canonical")
def bench_canonical(cfg: Config) -> Figures:
    """canonical.canonical_bytes of one typical record, as the signer and the verifier compute it."""
    records = make_records()
    stream = "0123456789abcdef0123456789abcdef"
    t0 = time.time_ns()
    args = [(r.event_name, t0 + i, int(r.severity_number.value), r.severity_number.name, r.body, r.attributes)
            for i, r in enumerate(records)]
    k = len(args)
    n = cfg.records
    cb = canonical.canonical_bytes

    def run() -> None:
        for i in range(n):
            ev, t, sev, text, body, attrs = args[i % k]
            cb(stream, i, ev, t, sev, text, body, attrs)

    def loop_only() -> None:  # the loop and unpacking alone, subtracted from the figure
        for i in range(n):
            ev, t, sev, text, body, attrs = args[i % k]

    run()
    overhead = min(timed(loop_only) for _ in range(3))
    times = [timed(run) for _ in range(cfg.runs)]
    us = [(x - overhead) / n * 1e6 for x in times]
    cfg.note(f"{n} calls per run, {cfg.runs} runs: {[round(x, 3) for x in us]} us (loop overhead subtracted)")
    return {"canonical_bytes_us": median(us)}


# -- file exporter ----------------------------------------------------------------------------------


class _Capture(LogRecordProcessor):
    def __init__(self) -> None:
        self.records: list[ReadWriteLogRecord] = []

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        self.records.append(log_record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _signed_batch(size: int) -> list[ReadWriteLogRecord]:
    """`size` event records as the signing processor hands them downstream (integrity attributes set)."""
    capture = _Capture()
    signing = SigningProcessor(Signer.generate("bench"), downstream=capture, checkpoint_every=10 * size)
    provider = provider_with(signing)
    logger = provider.get_logger("otel-audit-bench")
    for r in make_records(size, seed=2):
        logger.emit(event_name=r.event_name, body=r.body, attributes=r.attributes, severity_number=r.severity_number)
    provider.shutdown()
    events = [x for x in capture.records if x.log_record.event_name != canonical.CHECKPOINT_EVENT]
    return events[:size]


def _export_rate(batch: list[ReadWriteLogRecord], calls: int, path: Path) -> float:
    """Records per second that FileLogRecordExporter.export writes, `calls` times the same batch."""
    exporter = FileLogRecordExporter(path, fsync="never")

    def export_all() -> None:
        for _ in range(calls):
            exporter.export(batch)

    try:
        seconds = timed(export_all)
    finally:
        exporter.shutdown()
    return calls * len(batch) / seconds


@benchmark("file_exporter")
def bench_file_exporter(cfg: Config) -> Figures:
    """FileLogRecordExporter.export in batches of 512 (OTLP JSON encode + write, no fsync), signed vs. unsigned."""
    signed = _signed_batch(BATCH)
    unsigned = [
        ReadWriteLogRecord(
            LogRecord(timestamp=r.log_record.timestamp, observed_timestamp=r.log_record.observed_timestamp,
                      severity_number=r.log_record.severity_number, body=r.log_record.body,
                      attributes={k: v for k, v in r.log_record.attributes.items()
                                  if k not in canonical.INTEGRITY_KEYS},
                      event_name=r.log_record.event_name),
            resource=r.resource, instrumentation_scope=r.instrumentation_scope,
        )
        for r in signed
    ]
    calls = max(1, cfg.records // BATCH)
    rates: list[float] = []
    plain: list[float] = []
    with tempfile.TemporaryDirectory(prefix="otel-audit-bench-") as tmp:
        path = Path(tmp) / "audit.jsonl"
        for run in range(cfg.runs + 1):  # the first run warms up
            rs = _export_rate(signed, calls, path)
            size = path.stat().st_size
            path.unlink()
            rp = _export_rate(unsigned, calls, path)
            path.unlink()
            if run:
                rates.append(rs)
                plain.append(rp)
    cfg.note(f"{calls * BATCH} records per run in batches of {BATCH}, fsync=never, {size / calls / BATCH:.0f} "
             f"bytes per signed record; runs: signed {[round(x) for x in rates]} unsigned {[round(x) for x in plain]}")
    cfg.note("file_exporter_integrity_ratio = time per signed record / time per the same record without "
             "the 4 integrity attributes")
    return {
        "file_exporter_records_per_s": median(rates),
        "file_exporter_integrity_ratio": median(plain) / median(rates),
    }


# -- verifier ---------------------------------------------------------------------------------------


def _canonical_of_archive(folder: Path) -> list[bytes]:
    """The canonical bytes of every record in the archive, as the verifier hashes them."""
    out = []
    for _where, rec in iter_records(expand_paths([folder])):
        attrs = decode_attributes(rec.get("attributes"))
        stream = attrs.pop(canonical.STREAM_ID)
        seq = attrs.pop(canonical.STREAM_SEQ)
        body = rec.get("body")
        out.append(canonical.canonical_bytes(
            stream, seq, rec.get("eventName", ""), int(rec.get("timeUnixNano") or 0), rec.get("severityNumber", 0),
            rec.get("severityText", ""), None if body is None else decode_anyvalue(body), attrs,
        ))
    return out


@benchmark("verify")
def bench_verify(cfg: Config) -> Figures:
    """verify_paths on an archive written by the real pipeline, on the native integrity core (all cores, and one)
    and in pure Python, next to bare SHA-256 of the same bytes; then two files at once."""
    signer = Signer.generate("bench")
    keyring = Keyring([signer.public()])
    n = cfg.records
    paths = core_paths(cfg)
    figures: Figures = {}
    with tempfile.TemporaryDirectory(prefix="otel-audit-bench-") as tmp:
        folder = Path(tmp) / "one"
        folder.mkdir()
        path = write_archive(folder, signer, n)
        two = Path(tmp) / "two"  # two files of n records each, two streams
        two.mkdir()
        (two / "a.jsonl").symlink_to(path)
        write_archive(two, signer, n).rename(two / "b.jsonl")
        variants = [(p, t) for p in paths for t in ((0, 1) if p == "native" else (0,))]
        counts: dict[str, int] = {}
        for p, threads in variants:
            use_path(p)
            os.environ[_native.THREADS_ENV] = str(threads) if threads else ""
            for name, where in (("", folder), ("_2files", two)):
                report = verify_paths([where], keyring, progress=False)  # warm-up, and the check that it verifies
                if not report.ok:
                    raise BenchError(f"the benchmark archive does not verify ({p}): "
                                     f"{report.problems or report.streams[0].problems}")
                counts[name] = report.records
                times = [timed(lambda where=where: verify_paths([where], keyring, progress=False))  # type: ignore[misc]
                         for _ in range(cfg.runs)]
                rates = [report.records / x for x in times]
                key = f"verify_records_per_s_{p}{'_1core' if threads == 1 else ''}{name}"
                figures[key] = median(rates)
                cfg.note(f"{key}: {report.records} records, runs {[round(x) for x in rates]}")
        os.environ.pop(_native.THREADS_ENV, None)
        cfg.note(f"{counts['']} records ({path.stat().st_size / counts[''] :.0f} bytes each as OTLP JSON); _2files: "
                 f"two files of {n} records each (two streams); _1core: the native core on one thread")
        blobs = _canonical_of_archive(folder)
    if len(blobs) != counts[""]:
        raise BenchError(f"read {len(blobs)} records back for the SHA-256 baseline, the verifier saw {counts['']}")
    sha256 = hashlib.sha256

    def hash_each() -> None:
        for b in blobs:
            sha256(b).digest()

    sha_rates = [len(blobs) / timed(hash_each) for _ in range(cfg.runs)]
    cfg.note(f"sha256 (hashlib, one thread) runs: {[round(x) for x in sha_rates]} records/s, "
             f"{sum(map(len, blobs)) / len(blobs):.0f} canonical bytes per record")
    cfg.note("goal: native >= 500000 on one core, >= 1000000 with two files on this 2-core machine; python >= 100000")
    s_rate = median(sha_rates)
    figures["sha256_records_per_s"] = s_rate
    if "native" in paths:
        figures["verify_native_vs_python_ratio"] = figures["verify_records_per_s_native"] / figures[
            "verify_records_per_s_python"]
    return figures


# -- driver -----------------------------------------------------------------------------------------


def _load_more() -> None:
    """Benchmarks in bench/bench_*.py register themselves with @benchmark when imported."""
    import importlib

    for f in sorted(Path(__file__).parent.glob("bench_*.py")):
        importlib.import_module(f.stem)


def main(argv: Sequence[str] | None = None) -> int:
    _load_more()
    parser = argparse.ArgumentParser(description="Run the otel-audit benchmarks; prints `name: value` lines.")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RECORDS} records per run; under a minute")
    parser.add_argument("--only", action="append", metavar="NAME", choices=list(REGISTRY),
                        help="run only this benchmark (repeatable): " + ", ".join(REGISTRY))
    parser.add_argument("--records", type=int, metavar="N", help="records per run (overrides --quick)")
    parser.add_argument("--runs", type=int, metavar="R", help="timed runs per figure (default 7, --quick 5)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, fn in REGISTRY.items():
            print(f"{name}: {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    records = args.records or (QUICK_RECORDS if args.quick else FULL_RECORDS)
    runs = args.runs or (5 if args.quick else 7)
    if records < 1 or runs < 1:
        parser.error("--records and --runs must be positive")
    print(f"# otel-audit bench: {'quick' if args.quick else 'full'}, {records} records per run, python "
          f"{platform.python_version()}, opentelemetry-sdk {sdk_version}, {os.cpu_count()} cpus")
    failed = 0
    started = time.perf_counter()
    for name in args.only or list(REGISTRY):
        cfg = Config(quick=args.quick, records=records, runs=runs)
        t0 = time.perf_counter()
        try:
            figures = REGISTRY[name](cfg)
        except BenchError as exc:
            failed += 1
            print(f"# {name}: FAILED: {exc}", flush=True)
            continue
        except Exception:  # one broken benchmark (an API that moved) must not hide the others' figures
            failed += 1
            traceback.print_exc()
            print(f"# {name}: FAILED with an exception (traceback on stderr)", flush=True)
            continue
        for line in cfg.notes:
            print(f"# {name}: {line}")
        for key, value in figures.items():
            print(f"{key}: {fmt(value)}")
        print(f"# {name}: took {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"# total: {time.perf_counter() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
