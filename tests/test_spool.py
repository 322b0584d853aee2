"""The durable spool: records reach disk before emit returns, survive outages and kill -9, and
leave the spool only when every exporter has them. Real pipelines, real files, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

from otel_audit import keys
from otel_audit.errors import DeliveryError
from otel_audit.exporters.file import FileLogRecordExporter
from otel_audit.keys import Keyring
from otel_audit.processors.signing import SigningProcessor
from otel_audit.processors.spool import SpoolProcessor
from otel_audit.verify import iter_records, verify_paths

ATTRS = {"user.id": "alice", "audit.category": "authentication", "audit.outcome": "success"}


@pytest.fixture
def kdir(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    keys.generate(d, "spool-test")
    return d


def _pipeline(kdir: Path, spool: SpoolProcessor, every: int = 100) -> tuple[LoggerProvider, SigningProcessor]:
    provider = LoggerProvider()
    signing = SigningProcessor(kdir, downstream=spool, checkpoint_every=every, checkpoint_interval=3600)
    spool.on_drop = signing.record_gap
    provider.add_log_record_processor(signing)
    return provider, signing


def _seqs(path: Path) -> list[int]:
    out = []
    for _, rec in iter_records(sorted(path.parent.glob(path.name + "*")) if path.exists() else []):
        for kv in rec.get("attributes", []):
            if kv["key"] == "audit.stream.seq":
                out.append(int(kv["value"]["intValue"]))
    return out


def test_records_flow_to_every_exporter_and_verify(tmp_path: Path, kdir: Path) -> None:
    """Two exporters each get every record from their own cursor; both archives verify; the spool empties."""
    a, b = tmp_path / "a" / "audit.jsonl", tmp_path / "b" / "audit.jsonl"
    spool = SpoolProcessor(tmp_path / "spool", {"a": FileLogRecordExporter(path=a), "b": FileLogRecordExporter(path=b)},
                           segment_bytes=64 << 10)
    provider, _ = _pipeline(kdir, spool)
    log = provider.get_logger("t")
    for i in range(2000):
        log.emit(event_name="authentication.login.succeeded", body=f"login {i}", attributes=ATTRS)
    provider.shutdown()
    ring = Keyring.load(kdir)
    for path in (a, b):
        rep = verify_paths([path], ring, progress=False)
        assert rep.ok, rep.streams[0].problems
        assert rep.streams[0].events == 2000
    assert spool.stats.delivered["a"] >= 2000 and spool.stats.delivered["b"] >= 2000
    left = list((tmp_path / "spool" / "segments").iterdir())
    assert len(left) <= 2, "fully delivered segments are deleted (the current one and the next, allocated ahead, stay)"


def test_outage_then_recovery_loses_nothing(tmp_path: Path, kdir: Path) -> None:
    """While the destination is unwritable every record waits in the spool; after recovery all arrive and verify."""
    blocker = tmp_path / "dest"
    blocker.write_text("a file where the archive folder should be: every export fails")
    path = blocker / "audit.jsonl"
    spool = SpoolProcessor(tmp_path / "spool", {"file": FileLogRecordExporter(path=path)},
                           retry_initial=0.05, retry_max=0.2)
    provider, _ = _pipeline(kdir, spool)
    log = provider.get_logger("t")
    for i in range(3000):
        log.emit(event_name="authentication.login.succeeded", body=f"login {i}", attributes=ATTRS)
    time.sleep(0.5)
    assert spool.stats.retries.get("file", 0) >= 1
    assert spool.pending("file") > 0
    blocker.unlink()  # the outage ends
    assert spool.force_flush(30_000)
    provider.shutdown()
    rep = verify_paths([path], Keyring.load(kdir), progress=False)
    assert rep.ok, rep.streams[0].problems
    assert rep.streams[0].events == 3000


def test_fail_closed_refuses_when_full(tmp_path: Path, kdir: Path) -> None:
    """A full spool in fail_closed mode blocks, then raises DeliveryError to the caller; the refusal is counted."""
    blocker = tmp_path / "dest"
    blocker.write_text("blocked")
    spool = SpoolProcessor(tmp_path / "spool", {"file": FileLogRecordExporter(path=blocker / "a.jsonl")},
                           max_bytes=64 << 10, mode="fail_closed", block_timeout=0.2, retry_initial=0.05)
    provider, signing = _pipeline(kdir, spool)
    log = provider.get_logger("t")
    with pytest.raises(DeliveryError, match="full"):
        for i in range(10_000):
            log.emit(event_name="authentication.login.succeeded", body="x" * 100 + str(i), attributes=ATTRS)
    assert spool.stats.refused == 1 and signing.refused == 1
    blocker.unlink()
    provider.shutdown()


def test_fail_open_drops_with_a_signed_gap_marker(tmp_path: Path, kdir: Path) -> None:
    """A full spool in fail_open mode drops and counts records, and a signed audit.gap marker declares them."""
    blocker = tmp_path / "dest"
    blocker.write_text("blocked")
    path = blocker / "a.jsonl"
    spool = SpoolProcessor(tmp_path / "spool", {"file": FileLogRecordExporter(path=path)},
                           max_bytes=64 << 10, mode="fail_open", retry_initial=0.05, retry_max=0.1)
    provider, _ = _pipeline(kdir, spool, every=50)
    log = provider.get_logger("t")
    for i in range(2000):
        log.emit(event_name="authentication.login.succeeded", body="x" * 100 + str(i), attributes=ATTRS)
    dropped = spool.stats.dropped
    assert dropped > 0
    blocker.unlink()
    assert spool.force_flush(30_000)
    provider.shutdown()
    rep = verify_paths([path], Keyring.load(kdir), progress=False)
    s = rep.streams[0]
    assert sum(b - a + 1 for a, b in s.dropped) == dropped
    assert not s.missing
    assert rep.ok, s.problems
    assert any("gap marker" in w for w in s.warnings)


def test_bad_arguments_are_refused_and_a_held_folder_gives_a_slot(tmp_path: Path) -> None:
    """Wrong modes, no exporters or impossible sizes give clear errors; a spool folder another live process
    holds is not shared: this process takes the first free worker slot inside it."""
    exp = {"f": FileLogRecordExporter(path=tmp_path / "a.jsonl")}
    with pytest.raises(ValueError, match="mode"):
        SpoolProcessor(tmp_path / "s1", exp, mode="sometimes")
    with pytest.raises(ValueError, match="exporters"):
        SpoolProcessor(tmp_path / "s2", {})
    with pytest.raises(ValueError, match="at most half of max_bytes"):
        SpoolProcessor(tmp_path / "s2", exp, max_bytes=1 << 20, segment_bytes=1 << 20)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from otel_audit.processors.spool import SpoolProcessor
            from otel_audit.exporters.file import FileLogRecordExporter
            s = SpoolProcessor({str(tmp_path / 's3')!r},
                               {{"f": FileLogRecordExporter(path={str(tmp_path / 'b.jsonl')!r})}})
            print("ready", flush=True)
            time.sleep(30)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        second = SpoolProcessor(tmp_path / "s3", exp)
        try:
            assert second.dir == tmp_path / "s3" / "worker-1"
        finally:
            second.shutdown()
    finally:
        holder.kill()
        holder.wait()


PRODUCER = """
import sys, os
from opentelemetry.sdk._logs import LoggerProvider
from otel_audit.processors.signing import SigningProcessor
from otel_audit.processors.spool import SpoolProcessor
from otel_audit.exporters.file import FileLogRecordExporter
keys_dir, state, spool_dir, archive, mode = sys.argv[1:6]
spool = SpoolProcessor(spool_dir, {"file": FileLogRecordExporter(path=archive)}, fsync_interval=0.01,
                       retry_initial=0.05, retry_max=0.2)
provider = LoggerProvider()
signing = SigningProcessor(keys_dir, downstream=spool, checkpoint_every=100, checkpoint_interval=0.5, state_dir=state)
provider.add_log_record_processor(signing)
log = provider.get_logger("crash")
print("running", flush=True)
i = 0
while mode == "forever" or i < int(mode):
    log.emit(event_name="authentication.login.succeeded", body=f"event {i}",
             attributes={"user.id": "u", "n": i})
    # the emit returned: the record is acknowledged. Say so only now.
    sys.stdout.write(f"{signing.stream_id} {signing.seq - 1}\\n")
    sys.stdout.flush()
    i += 1
provider.shutdown()
print("closed", flush=True)
"""


@pytest.mark.parametrize("run", range(3))
def test_kill_9_at_random_points_loses_no_acknowledged_record(tmp_path: Path, kdir: Path, run: int) -> None:
    """A producer killed with SIGKILL while emitting into the spool (destination down) loses no record
    whose emit had returned: after restart every acknowledged record reaches the archive, and it verifies."""
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER)
    blocker = tmp_path / "dest"
    blocker.write_text("destination down while the producer runs")
    archive = blocker / "audit.jsonl"
    args = [str(kdir), str(tmp_path / "state"), str(tmp_path / "spool"), str(archive)]
    proc = subprocess.Popen([sys.executable, str(script), *args, "forever"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "running"
    time.sleep(0.3 + 0.4 * run)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    acked = {(s, int(q)) for line in out.splitlines() if len(parts := line.split()) == 2 for s, q in [parts]}
    assert len(acked) > 100
    blocker.unlink()  # the destination is back; restart the producer: it replays the spool
    done = subprocess.run([sys.executable, str(script), *args, "5"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got: set[tuple[str, int]] = set()
    for _, rec in iter_records([archive]):
        a = {kv["key"]: kv["value"] for kv in rec["attributes"]}
        got.add((a["audit.stream.id"]["stringValue"], int(a["audit.stream.seq"]["intValue"])))
    assert acked <= got, f"{len(acked - got)} acknowledged record(s) lost"
    rep = verify_paths([archive], Keyring.load(kdir), progress=False)
    crashed = next(s for s in rep.streams if s.state == "crashed")
    assert not crashed.modified and not crashed.conflicting
    assert rep.ok, [s.problems for s in rep.streams]


class _Receiver:
    """A real OTLP/HTTP logs receiver on loopback that counts the event records it decodes."""

    def __init__(self) -> None:
        import http.server
        import threading

        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        owner = self
        self.events = 0
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                req = ExportLogsServiceRequest()
                req.ParseFromString(body)
                n = sum(1 for rl in req.resource_logs for sl in rl.scope_logs for r in sl.log_records
                        if r.event_name != "audit.checkpoint")
                with owner.lock:
                    owner.events += n
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/logs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_burst_sdk_batch_drops_but_spool_does_not(tmp_path: Path, kdir: Path) -> None:
    """100k records emitted as fast as one thread can, shipped over OTLP/HTTP to a real loopback receiver:
    the SDK's default batch processor drops part of the burst, the spool drops none."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    n = 100_000
    sdk_rx, ours_rx = _Receiver(), _Receiver()
    try:
        provider = LoggerProvider()
        provider.add_log_record_processor(SigningProcessor(
            kdir, downstream=BatchLogRecordProcessor(OTLPLogExporter(endpoint=sdk_rx.url)),
            checkpoint_every=1000, checkpoint_interval=3600))
        log = provider.get_logger("burst")
        for i in range(n):
            log.emit(event_name="authentication.login.succeeded", body="b", attributes={"user.id": "u", "n": i})
        provider.shutdown()
        spool = SpoolProcessor(tmp_path / "spool", {"otlp": OTLPLogExporter(endpoint=ours_rx.url)})
        provider, _ = _pipeline(kdir, spool, every=1000)
        log = provider.get_logger("burst")
        for i in range(n):
            log.emit(event_name="authentication.login.succeeded", body="b", attributes={"user.id": "u", "n": i})
        assert provider.force_flush(120_000), "the spool delivers the whole burst once the receiver keeps up"
        provider.shutdown()
    finally:
        sdk_rx.close()
        ours_rx.close()
    print(f"burst of {n}: SDK batch delivered {sdk_rx.events} (dropped {n - sdk_rx.events}); "
          f"spool delivered {ours_rx.events} (dropped {spool.stats.dropped})")
    assert ours_rx.events == n and spool.stats.dropped == 0
    assert sdk_rx.events < n, "the SDK batch processor is expected to drop part of a burst this size"


def test_spool_reports_depth_delivered_retries_and_drops_as_otel_metrics(tmp_path: Path, kdir: Path) -> None:
    """The spool's depth, delivered, retries, dropped and refused counts are OTel metrics a reader collects."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    blocker = tmp_path / "dest"
    blocker.write_text("down for a while")
    spool = SpoolProcessor(tmp_path / "spool", {"file": FileLogRecordExporter(path=blocker / "a.jsonl")},
                           retry_initial=0.05, retry_max=0.1, meter_provider=meters)
    provider, _ = _pipeline(kdir, spool)
    log = provider.get_logger("t")
    for i in range(300):
        log.emit(event_name="authentication.login.succeeded", body=f"login {i}", attributes=ATTRS)
    time.sleep(0.3)

    def figures() -> dict[str, float]:
        out: dict[str, float] = {}
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out[m.name] = sum(p.value for p in m.data.data_points)
        return out

    during = figures()
    assert during["otel_audit.spool.depth"] > 0
    assert during["otel_audit.spool.retries"] >= 1
    assert during["otel_audit.spool.delivered"] == 0
    blocker.unlink()
    assert spool.force_flush(30_000)
    after = figures()
    assert after["otel_audit.spool.depth"] == 0
    assert after["otel_audit.spool.delivered"] >= 300
    assert after["otel_audit.spool.dropped"] == 0 and after["otel_audit.spool.refused"] == 0
    provider.shutdown()
