"""The batch processor of the no-spool path (otel_audit.processors.batch): its shutdown keeps a deadline while
a destination is down, and every record it does not deliver is counted and logged.

The destination is a real loopback port nobody listens on (connection refused, as a SIEM that is down); the
SIGTERM test starts a real Python process built by `otel_audit.configure()` from a config file."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import child_env, mixed_record
from opentelemetry.sdk._logs import LoggerProvider

from otel_audit.exporters.splunk_hec import SplunkHecLogExporter
from otel_audit.processors.batch import BatchProcessor

TOKEN = "11111111-2222-3333-4444-555555555555"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_shutdown_with_the_destination_down_keeps_its_deadline_and_counts_what_is_lost(
        caplog: pytest.LogCaptureFixture) -> None:
    """With the SIEM unreachable and the exporter backing off (5 s first wait, 300 s budget), shutdown(1500 ms)
    returns within about that time (not after the SDK's 30 s), and the exporter counts every record as not
    delivered, loudly."""
    exporter = SplunkHecLogExporter(f"http://127.0.0.1:{_closed_port()}", TOKEN, health_check_enabled=False)
    batch = BatchProcessor(exporter, schedule_delay_millis=50)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(batch)
    logger = provider.get_logger("batch-tests")
    for i in range(3):
        logger.emit(**mixed_record(i))
    time.sleep(0.5)  # the worker has taken the batch and is waiting to retry it
    for i in range(3, 5):
        logger.emit(**mixed_record(i))  # still queued at shutdown
    caplog.set_level(logging.WARNING)
    t0 = time.monotonic()
    batch.shutdown(timeout_millis=1500)
    took = time.monotonic() - t0
    assert took < 4.5, f"shutdown took {took:.1f} s"  # the SDK alone: 30 s
    assert batch.accepted == 5 and exporter.counters.failed == 5 and exporter.counters.delivered == 0
    assert batch.undelivered == 0  # every record reached the exporter, which counted it
    assert any("5 audit record(s) in all were NOT delivered" in r.getMessage() and r.levelno == logging.ERROR
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_shutdown_default_deadline_is_the_delivery_default() -> None:
    """Without a timeout (atexit, the signing processor's own shutdown), the deadline is 5 s, not the SDK's 30 s."""
    exporter = SplunkHecLogExporter(f"http://127.0.0.1:{_closed_port()}", TOKEN, health_check_enabled=False)
    batch = BatchProcessor(exporter, schedule_delay_millis=50)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(batch)
    provider.get_logger("batch-tests").emit(**mixed_record(0))
    time.sleep(0.3)
    t0 = time.monotonic()
    batch.shutdown()
    took = time.monotonic() - t0
    assert 3.0 < took < 8.0, f"shutdown took {took:.1f} s"  # the SDK alone: 30 s
    assert exporter.counters.failed == 1


def test_sigterm_with_the_siem_down_and_no_spool_ends_within_the_shutdown_timeout(
        tmp_path: Path, keys_dir: Path) -> None:
    """A configured process (signing -> splunk_hec, no delivery processor) stopped by SIGTERM while its SIEM is
    down exits within the 5 s shutdown timeout (under Docker's 10 s grace), saying how many records were NOT
    delivered."""
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        processors:
          signing: {{keys_dir: {keys_dir}, state_dir: state}}
        exporters:
          splunk_hec: {{endpoint: "http://127.0.0.1:{_closed_port()}", token: "{TOKEN}"}}
        service:
          pipelines:
            logs/audit: {{processors: [signing], exporters: [splunk_hec]}}
        """))
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent("""\
        import sys, time, otel_audit
        a = otel_audit.configure(sys.argv[1])
        a.logger.login_succeeded("alice", client_address="203.0.113.7", session_id="s-1")
        print("ready", flush=True)
        time.sleep(120)
        """))
    p = subprocess.Popen([sys.executable, str(app), str(cfg)], cwd=tmp_path, env=child_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(1.5)  # the first export has failed; the exporter waits to retry
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert took < 9.0, f"SIGTERM to exit took {took:.1f} s"  # 4 s measured; 30 s+ before
    # the start checkpoint, the event and the end checkpoint
    assert "3 audit record(s) in all were NOT delivered" in err, err[-2000:]


_MASKS = """\
import os, signal, sys, threading, time
import otel_audit
audit = otel_audit.configure(sys.argv[1])

def blocked(tid):
    with open(f"/proc/self/task/{tid}/status") as f:
        mask = int(next(line for line in f if line.startswith("SigBlk")).split()[1], 16)
    return all(mask & (1 << (s - 1)) for s in (signal.SIGTERM, signal.SIGINT))

def report(who):
    main = blocked(threading.get_native_id())
    batch = [blocked(t.native_id) for t in threading.enumerate() if t.name.startswith("OtelBatch")]
    print(who, main, batch, flush=True)

report("parent")
pid = os.fork()
if pid == 0:
    time.sleep(0.3)
    report("child")
    os._exit(0)
os.waitpid(pid, 0)
audit.shutdown()
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads thread signal masks from /proc")
def test_batch_worker_threads_leave_sigterm_to_the_main_thread(tmp_path: Path, keys_dir: Path) -> None:
    """The batch processor's worker thread, in the parent and the one the SDK re-creates in a fork child, blocks
    SIGTERM and SIGINT, so the main thread takes them (and a blocking call there is interrupted)."""
    cfg = tmp_path / "audit.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        processors:
          signing: {{keys_dir: {keys_dir}, state_dir: state}}
        exporters:
          file: {{path: out/audit.jsonl}}
        service:
          pipelines:
            logs/audit: {{processors: [signing], exporters: [file]}}
        """))
    script = tmp_path / "masks.py"
    script.write_text(_MASKS)
    res = subprocess.run([sys.executable, str(script), str(cfg)], cwd=tmp_path, env=child_env(),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split("\n")[:2] == ["parent False [True]", "child False [True]"], res.stdout + res.stderr
