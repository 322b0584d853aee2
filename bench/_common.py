"""Shared pieces of the benchmarks: typical audit records, pipelines, timing, the registry.

Nothing here asserts a timing. A benchmark is a function that takes a `Config` and returns a
dict of figures (name -> number); `bench/run.py` prints them as `name: value` lines.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult

Figures = dict[str, float]
CHECKPOINT_EVERY = 1000

#: How many distinct records are generated; the benchmarks cycle through them.
POOL_SIZE = 4096


@dataclass
class Config:
    """What every benchmark gets: the record count, the number of interleaved runs, a place to say things."""

    quick: bool
    records: int
    runs: int
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        """A context line, printed as `# text` before the figures of the benchmark."""
        self.notes.append(text)


Benchmark = Callable[[Config], Figures]

#: name -> benchmark, in the order they run; add one with the @benchmark decorator.
REGISTRY: dict[str, Benchmark] = {}


def benchmark(name: str) -> Callable[[Benchmark], Benchmark]:
    def register(fn: Benchmark) -> Benchmark:
        if name in REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        REGISTRY[name] = fn
        return fn

    return register


class BenchError(RuntimeError):
    """A benchmark could not measure what it claims to (e.g. the archive it wrote does not verify)."""


# -- records ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRecord:
    event_name: str
    body: str
    attributes: dict[str, Any]
    severity_number: SeverityNumber


_EVENTS = (
    ("audit.auth.login", "authentication", "login", "POST", "/v1/auth/login"),
    ("audit.auth.logout", "authentication", "logout", "POST", "/v1/auth/logout"),
    ("audit.data.read", "data_access", "read", "GET", "/v1/conversations/{id}"),
    ("audit.data.delete", "data_access", "delete", "DELETE", "/v1/conversations/{id}"),
    ("audit.model.invoke", "model_access", "invoke", "POST", "/v1/chat/completions"),
    ("audit.config.update", "configuration", "update", "PUT", "/v1/admin/routes/{id}"),
)


def make_records(n: int = POOL_SIZE, seed: int = 1) -> list[AuditRecord]:
    """`n` typical audit records: an event name, a short string body and 8 string attributes."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        event, category, action, method, path = _EVENTS[rnd.randrange(len(_EVENTS))]
        user = f"u-{rnd.randrange(100000):06d}"
        outcome = "success" if rnd.random() < 0.95 else "failure"
        url = path.replace("{id}", f"{rnd.getrandbits(48):012x}")
        out.append(
            AuditRecord(
                event_name=event,
                body=f"{user} {action} {url}: {outcome}",
                attributes={
                    "user.id": user,
                    "client.address": f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}",
                    "session.id": f"{rnd.getrandbits(64):016x}",
                    "audit.category": category,
                    "audit.action": action,
                    "audit.outcome": outcome,
                    "http.request.method": method,
                    "url.path": url,
                },
                severity_number=SeverityNumber.INFO if outcome == "success" else SeverityNumber.WARN,
            )
        )
    return out


def cycle(records: Sequence[AuditRecord], n: int) -> Iterator[AuditRecord]:
    """`n` records from the pool, round robin."""
    k = len(records)
    for i in range(n):
        yield records[i % k]


# -- pipelines --------------------------------------------------------------------------------------


class NullExporter(LogRecordExporter):
    """Accepts every batch and does nothing with it: the pipeline's own cost, without I/O."""

    def __init__(self) -> None:
        self.records = 0

    def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
        self.records += len(batch)
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def batch_processor(exporter: LogRecordExporter, records: int) -> BatchLogRecordProcessor:
    """A BatchLogRecordProcessor whose queue can hold every record of the run (none dropped)."""
    return BatchLogRecordProcessor(exporter, max_queue_size=max(records + 1024, 2048))


def provider_with(processor: LogRecordProcessor) -> LoggerProvider:
    # shutdown_on_exit=False: each run shuts its provider down itself, so no atexit handlers pile up.
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(processor)
    return provider


def emit_all(provider: LoggerProvider, records: Sequence[AuditRecord], n: int) -> float:
    """Seconds from the first `emit` of `n` records through `force_flush()`."""
    logger = provider.get_logger("otel-audit-bench")
    emit = logger.emit
    gc.collect()
    start = time.perf_counter()
    for r in cycle(records, n):
        emit(event_name=r.event_name, body=r.body, attributes=r.attributes, severity_number=r.severity_number)
    if not provider.force_flush():
        raise BenchError("force_flush() returned False")
    return time.perf_counter() - start


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of `fn` takes, after a gc pass so earlier garbage is not billed to it."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt(value: float) -> str:
    """A figure as printed: integers for rates, 4 significant digits otherwise."""
    if abs(value) >= 1000:
        return str(round(value))
    return f"{value:.4g}"


# -- the integrity core's two paths, archives ---------------------------------------------------


def use_path(path: str) -> None:
    """Switch this process to the native integrity core ("native") or the pure-Python path ("python")."""
    from otel_audit import _native

    os.environ[_native.ENV] = "required" if path == "native" else "off"
    _native.reset()


def core_paths(cfg: Config) -> list[str]:
    """Both paths when the native core is installed; pure Python alone (said in a note) otherwise."""
    from otel_audit import _native

    try:
        use_path("native")
        _native.core()
    except Exception as exc:  # noqa: BLE001 - a bench without the native core still measures pure Python
        cfg.note(f"native path not measured: {exc}")
        use_path("python")
        return ["python"]
    return ["native", "python"]


def write_archive(folder: Path, signer: Any, n: int) -> Path:
    """An OTLP/JSON archive of n records through the real signing pipeline and file exporter (a closed stream)."""
    from otel_audit.exporters.file import FileLogRecordExporter
    from otel_audit.processors.signing import SigningProcessor

    path = folder / "audit.jsonl"
    exporter = FileLogRecordExporter(path, fsync="never")
    chunk = 50_000  # flushed every chunk: the batch queue never holds more (a 5M archive in bounded memory)
    signing = SigningProcessor(signer, downstream=batch_processor(exporter, chunk + chunk // CHECKPOINT_EVERY + 16),
                               checkpoint_every=CHECKPOINT_EVERY)
    provider = provider_with(signing)
    logger = provider.get_logger("otel-audit-bench")
    emit = logger.emit
    records = make_records()
    k = len(records)
    for i in range(n):
        r = records[i % k]
        emit(event_name=r.event_name, body=r.body, attributes=r.attributes, severity_number=r.severity_number)
        if i % chunk == chunk - 1:
            provider.force_flush()
    provider.shutdown()  # writes the end checkpoint: a closed stream verifies without --allow-open
    return path
