"""`BatchProcessor`: the SDK's BatchLogRecordProcessor with a shutdown that keeps its deadline and
accounts for every record it does not deliver.

Without a delivery processor (no durable spool), records wait in the SDK's in-memory batch queue on
their way to an exporter. The SDK's own shutdown waits up to 30 s for its worker while the exporter
retries a destination that is down, which is past Docker's 10 s grace (SIGKILL comes first and the
end checkpoint is never written), and then drops whatever is still queued without a word. Here:

* `shutdown(timeout_millis)` takes about `DEFAULT_SHUTDOWN_TIMEOUT_MILLIS` at most (5 s, the delivery
  processor's default `shutdown_timeout`) unless given another time, for an exporter that stops when
  it is shut down (every exporter of otel-audit, and the SDK's OTLP exporters, do);
* when the worker is still busy shortly before that deadline (`GRACE`), the exporter is shut down:
  its retry wait ends at once (our HTTP exporters sleep on an event, the SDK's OTLP exporters too)
  and it counts and logs at ERROR every record it then still holds or is handed as not delivered;
* what never reached the exporter (still queued when the time was up) is counted in `undelivered`
  and logged at ERROR here, saying how to keep such records (a delivery processor).

The batching itself (queue, schedule, batch size) is the SDK's, unchanged.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult

from otel_audit import lifecycle

_log = logging.getLogger(__name__)

DEFAULT_SHUTDOWN_TIMEOUT_MILLIS = 5000
#: How long before the deadline a busy exporter is told to stop (at most; a fifth of a short timeout).
GRACE = 1.0

_KEEP = ("add a delivery processor (processors: delivery: {directory: ...}) or set OTEL_AUDIT_SPOOL_DIR, "
         "so that undelivered records wait on disk for the next start")


class _Tally(LogRecordExporter):
    """The exporter, counting what it is handed; shut down at most once."""

    def __init__(self, inner: LogRecordExporter) -> None:
        self.inner = inner
        self.handed = 0
        self.failed = 0  # records of export calls that did not return SUCCESS
        self._shut = False
        self._lock = threading.Lock()
        self._takes_timeout = _takes_timeout(inner.shutdown)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self.handed += len(batch)  # the SDK calls export under its export lock: one call at a time
        try:
            result = self.inner.export(batch)
        except Exception:
            self.failed += len(batch)
            raise
        if result is not LogRecordExportResult.SUCCESS:
            self.failed += len(batch)
        return result

    def shutdown(self, timeout_millis: float | None = None) -> None:
        with self._lock:
            if self._shut:
                return
            self._shut = True
        if self._takes_timeout and timeout_millis is not None:
            self.inner.shutdown(timeout_millis=timeout_millis)  # type: ignore[call-arg]
        else:
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


class BatchProcessor(BatchLogRecordProcessor):
    """A BatchLogRecordProcessor whose shutdown ends by its deadline and says what it did not deliver."""

    def __init__(self, exporter: LogRecordExporter, **kwargs: Any) -> None:
        self._tally = _Tally(exporter)
        self.exporter = exporter
        self.accepted = 0  # records taken into the queue
        self.undelivered = 0  # records never handed to the exporter (queued at the deadline, or after shutdown)
        self._count_lock = threading.Lock()
        self._closed = False
        with lifecycle.signals_blocked():  # its worker thread leaves SIGTERM/SIGINT to the main thread
            super().__init__(self._tally, **kwargs)
        # After a fork the SDK re-creates that thread in an at-fork hook registered just now; one of ours
        # after it keeps the signals blocked until then (otel_audit.lifecycle), so the new thread inherits it.
        lifecycle.after_fork_in_child(self, "_after_fork_in_child")

    def _after_fork_in_child(self) -> None:
        """Nothing of its own to renew (the SDK renews its queue and thread); see __init__."""

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        if self._closed:
            with self._count_lock:
                self.undelivered += 1
            _log.error("%s: an audit record arrived after shutdown; it is NOT delivered",
                       type(self.exporter).__name__)
            return
        with self._count_lock:
            self.accepted += 1
        super().on_emit(log_record)

    def shutdown(self, timeout_millis: int = DEFAULT_SHUTDOWN_TIMEOUT_MILLIS) -> None:
        if self._closed:
            return
        self._closed = True
        timeout = max(0.0, float(timeout_millis)) / 1000
        started = time.monotonic()
        done = threading.Event()

        def stop_exporter_in_time() -> None:
            if not done.wait(max(0.0, timeout - min(GRACE, timeout / 5))):
                _log.warning("%s: still exporting %.1f s into a shutdown of at most %.1f s; stopping its retries",
                             type(self.exporter).__name__, time.monotonic() - started, timeout)
                try:
                    self._tally.shutdown(timeout_millis=0)
                except Exception:  # noqa: BLE001 - the shutdown goes on regardless
                    _log.exception("%s failed to shut down", type(self.exporter).__name__)

        watcher = lifecycle.background_thread(stop_exporter_in_time, name="otel-audit-batch-shutdown")
        watcher.start()
        try:
            # The SDK's shutdown takes no time limit (it waits up to 30 s for its worker); the watcher above
            # keeps the deadline: once the exporter is stopped, the worker hands it the rest and ends at once.
            super().shutdown()  # type: ignore[no-untyped-call]  # unannotated in the SDK
        finally:
            done.set()
        with self._count_lock:
            left = self.accepted - self._tally.handed
            self.undelivered += max(0, left)
        if left > 0:
            _log.error("%s: shut down after %.1f s with %d audit record(s) never handed to it; they are NOT "
                       "delivered; %s", type(self.exporter).__name__, time.monotonic() - started, left, _KEEP)
        # our exporters count exactly (a batch may be partly delivered); others say per batch
        counters = getattr(self.exporter, "counters", None)
        failed = getattr(counters, "failed", 0) if counters is not None else self._tally.failed
        if failed:
            _log.error("%s: %d audit record(s) in all were NOT delivered (given up or cut short by shutdown); %s",
                       type(self.exporter).__name__, failed, _KEEP)


def _takes_timeout(fn: Any) -> bool:
    try:
        return "timeout_millis" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


__all__ = ["DEFAULT_SHUTDOWN_TIMEOUT_MILLIS", "BatchProcessor"]
