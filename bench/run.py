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
import gc
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
    REGISTRY,
    AuditRecord,
    BenchError,
    Config,
    Figures,
    NullExporter,
    batch_processor,
    benchmark,
    emit_all,
    fmt,
    make_records,
    median,
    provider_with,
    timed,
)
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.version import __version__ as sdk_version

from otel_audit import canonical
from otel_audit._sdk_compat import writable_attributes
from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.keys import Keyring, Signer
from otel_audit.otlpjson import decode_anyvalue, decode_attributes
from otel_audit.processors.signing import SigningProcessor
from otel_audit.verify import Verifier, expand_paths, iter_records, verify_paths

QUICK_RECORDS = 20_000
FULL_RECORDS = 200_000
CHECKPOINT_EVERY = 1000
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
             with_floor: bool = False) -> tuple[float, float, float]:
    """Median plain, signed (and floor, else nan) us/record over interleaved runs (plain, signed, floor, ...)."""
    records = make_records()
    signer = Signer.generate("bench")
    n = cfg.records
    warm = min(n, 2000)
    _pipeline_run(records, warm, make_exporter, None)
    _pipeline_run(records, warm, make_exporter, signer)
    if with_floor:
        _pipeline_run(records, warm, make_exporter, None, floor=True)
    plain: list[float] = []
    signed: list[float] = []
    floor: list[float] = []
    for _ in range(cfg.runs):  # interleaved, so drift (thermal, other load) hits all alike
        plain.append(_pipeline_run(records, n, make_exporter, None))
        signed.append(_pipeline_run(records, n, make_exporter, signer))
        if with_floor:
            floor.append(_pipeline_run(records, n, make_exporter, None, floor=True))
    cfg.note(f"{n} records per run, {cfg.runs} interleaved runs each, checkpoint_every={CHECKPOINT_EVERY}, {what}")
    cfg.note(f"runs: plain_us={[round(x, 2) for x in plain]} signed_us={[round(x, 2) for x in signed]}"
             + (f" floor_us={[round(x, 2) for x in floor]}" if floor else ""))
    return median(plain), median(signed), (median(floor) if floor else float("nan"))


def _startup_ms(cmd: list[str], runs: int) -> float:
    """Median wall time of a fresh process running `cmd` to completion, in milliseconds."""
    import subprocess

    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, check=False)
        times.append((time.perf_counter() - start) * 1000)
        if proc.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-300:]}")
    return median(times)


@benchmark("pipeline")
def bench_pipeline(cfg: Config) -> Figures:
    """Emit-to-flush cost per record: SDK + BatchLogRecordProcessor, with and without SigningProcessor, and
    the floor (a processor that only writes the four integrity attributes); the CLI's start-up next to bare
    Python's."""
    p, s, f = _compare(cfg, NullExporter, "do-nothing exporter", with_floor=True)
    cfg.note("goal: signing_overhead_ratio <= 1.10; signing_floor_ratio is what writing the attributes alone costs")
    cli = Path(sys.executable).with_name("otel-audit")
    runs = max(cfg.runs * 3, 11)
    bare = _startup_ms([sys.executable, "-c", "pass"], runs)
    figures = {
        "plain_pipeline_us_per_record": p,
        "signed_pipeline_us_per_record": s,
        "signing_overhead_ratio": s / p,
        "signing_floor_ratio": f / p,
        "python_startup_ms": bare,
    }
    if cli.exists():
        figures["cli_startup_ms"] = _startup_ms([str(cli), "--help"], runs)
        figures["cli_startup_ratio"] = figures["cli_startup_ms"] / bare
        cfg.note(f"cli_startup_ms: {cli} --help, median of {runs}; python_startup_ms: {sys.executable} -c pass")
    else:
        cfg.note(f"cli_startup_ms: not measured, no otel-audit script next to {sys.executable}")
    return figures


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


def _write_archive(folder: Path, signer: Signer, n: int) -> Path:
    path = folder / "audit.jsonl"
    exporter = FileLogRecordExporter(path, fsync="never")
    signing = SigningProcessor(signer, downstream=batch_processor(exporter, n + n // CHECKPOINT_EVERY + 16),
                               checkpoint_every=CHECKPOINT_EVERY)
    provider = provider_with(signing)
    logger = provider.get_logger("otel-audit-bench")
    emit = logger.emit
    records = make_records()
    k = len(records)
    for i in range(n):
        r = records[i % k]
        emit(event_name=r.event_name, body=r.body, attributes=r.attributes, severity_number=r.severity_number)
    provider.shutdown()  # writes the end checkpoint: a closed stream verifies without --allow-open
    return path


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
    """verify_paths on an archive written by the real pipeline, next to bare SHA-256 of the same bytes."""
    signer = Signer.generate("bench")
    keyring = Keyring([signer.public()])
    n = cfg.records
    with tempfile.TemporaryDirectory(prefix="otel-audit-bench-") as tmp:
        folder = Path(tmp)
        path = _write_archive(folder, signer, n)
        report = verify_paths([folder], keyring, progress=False)  # warm-up, and the check that it verifies
        if not report.ok:
            raise BenchError(f"the benchmark archive does not verify: {report.problems or report.streams[0].problems}")
        count = report.records
        times = [timed(lambda: verify_paths([folder], keyring, progress=False)) for _ in range(cfg.runs)]
        rates = [count / x for x in times]

        v = Verifier(keyring)
        files = expand_paths([folder])
        gc.collect()
        gc.disable()  # as verify_paths does; the split is only a hint of where the time goes
        try:
            read = timed(lambda: v.add_files(files))
            prove = timed(v.finish)
        finally:
            gc.enable()
        cfg.note(f"{count} records ({path.stat().st_size / count:.0f} bytes each as OTLP JSON), {cfg.runs} runs: "
                 f"{[round(x) for x in rates]} records/s, single thread")
        cfg.note(f"split (Verifier API, gc off): read+parse+canonicalize+hash (add_files) {read / (read + prove):.0%}, "
                 f"prove (finish) {prove / (read + prove):.0%}")
        blobs = _canonical_of_archive(folder)
    if len(blobs) != count:
        raise BenchError(f"read {len(blobs)} records back for the SHA-256 baseline, the verifier saw {count}")
    sha256 = hashlib.sha256

    def hash_each() -> None:
        for b in blobs:
            sha256(b).digest()

    def hash_floor() -> None:  # what proving needs at least: the chained record digest and ~1 Merkle node each
        prev = bytes(32)
        for b in blobs:
            digest = sha256(b"\x00" + prev + b).digest()
            sha256(b"\x01" + prev + digest).digest()
            prev = digest

    sha_rates = [len(blobs) / timed(hash_each) for _ in range(cfg.runs)]
    floor = median([len(blobs) / timed(hash_floor) for _ in range(cfg.runs)])
    cfg.note(f"sha256 runs: {[round(x) for x in sha_rates]} records/s, "
             f"{sum(map(len, blobs)) / len(blobs):.0f} canonical bytes per record")
    cfg.note(f"hash floor (chained record digest + one Merkle node per record): {floor:.0f} records/s")
    cfg.note("goal: verify_records_per_s >= 500000; verify_vs_sha256_ratio = verify / sha256 rate")
    v_rate, s_rate = median(rates), median(sha_rates)
    return {
        "verify_records_per_s": v_rate,
        "sha256_records_per_s": s_rate,
        "verify_vs_sha256_ratio": v_rate / s_rate,
    }


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
