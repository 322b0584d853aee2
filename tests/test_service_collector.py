"""Producer -> the stock OpenTelemetry Collector -> the audit service, as deployed.

The producer is this library's signing pipeline with the SDK's OTLP/HTTP (protobuf) exporter; the collector
(built from the official modules) forwards with its otlphttp or otlp (gRPC) exporter and a persistent
sending queue; the service verifies on ingest. Then `otel-audit verify --store` re-proves the store."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from collector import Collector, free_port
from conftest import mixed_record
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from service_support import CLI, Backend, ServiceProcess, write_config

from otel_audit import keys
from otel_audit.processors.signing import SigningProcessor

FORWARD = """
extensions:
  health_check:
  file_storage:
    directory: ${env:QUEUE_DIR}
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${env:OTLP_HTTP}
processors:
  batch:
    timeout: 200ms
    send_batch_size: 100
exporters:
  otlphttp/service:
    endpoint: http://${env:SERVICE_HTTP}
    compression: gzip
    retry_on_failure:
      enabled: true
      initial_interval: 100ms
      max_interval: 1s
      max_elapsed_time: 0
    sending_queue:
      enabled: true
      storage: file_storage
  otlp/service:
    endpoint: ${env:SERVICE_GRPC}
    tls:
      insecure: true
    retry_on_failure:
      enabled: true
      initial_interval: 100ms
      max_interval: 1s
      max_elapsed_time: 0
    sending_queue:
      enabled: true
      storage: file_storage
service:
  extensions: [health_check, file_storage]
  pipelines:
    logs:
      receivers: [otlp]
      processors: [batch]
      exporters: [EXPORTER]
"""


def produce(endpoint: str, keys_dir: Path, n: int, *, service: str = "gateway-1",
            pause_every: int = 0) -> tuple[str, int]:
    exporter = OTLPLogExporter(endpoint=f"http://{endpoint}/v1/logs", timeout=30)
    batch = BatchLogRecordProcessor(exporter, max_queue_size=100_000, max_export_batch_size=64,
                                    schedule_delay_millis=50)
    resource = Resource.create({"service.name": service})
    provider = LoggerProvider(resource=resource)
    sp = SigningProcessor(keys_dir, downstream=batch, checkpoint_every=50, checkpoint_interval=3600.0,
                          resource=resource)
    provider.add_log_record_processor(sp)
    logger = provider.get_logger("otel_audit.tests.service")
    for i in range(n):
        logger.emit(**mixed_record(i))
        if pause_every and i % pause_every == pause_every - 1:
            time.sleep(0.05)
    provider.shutdown()
    return sp.stream_id, sp.seq


def wait_complete(svc: ServiceProcess, streams: dict[str, int], timeout: float = 90) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            got = svc.get("/v1/streams").json()["streams"]
        except Exception:  # noqa: BLE001 - the service restarting
            got = []
        by = {s["id"]: s for s in got}
        if all(sid in by and by[sid]["proven"] == n and by[sid]["state"] == "closed" for sid, n in streams.items()):
            return got
        time.sleep(0.3)
    raise AssertionError(f"streams not complete in {timeout}s: want {streams}, got {got}; "
                         f"{svc.log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def svc_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("svc-collector-keys")
    keys.generate(d, "gateway")
    return d


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend.make(request.param, tmp_path, request)


def _setup(tmp_path: Path, svc_keys: Path, exporter: str, store: Backend) -> tuple[ServiceProcess, Collector]:
    http_port, grpc_port = free_port(), free_port()
    cfg = write_config(tmp_path, svc_keys, grpc={"endpoint": f"127.0.0.1:{grpc_port}"}, store=store.url)
    cfg.write_text(cfg.read_text().replace("127.0.0.1:0", f"127.0.0.1:{http_port}"))
    svc = ServiceProcess(cfg)
    (tmp_path / "queue").mkdir()
    col = Collector(FORWARD.replace("EXPORTER", exporter), endpoints=("OTLP_HTTP",), workdir=tmp_path / "collector",
                    env={"SERVICE_HTTP": f"127.0.0.1:{http_port}", "SERVICE_GRPC": f"127.0.0.1:{grpc_port}",
                         "QUEUE_DIR": str(tmp_path / "queue")})
    return svc, col


@pytest.mark.parametrize("exporter", ["otlphttp/service", "otlp/service"])
def test_signed_records_through_the_collector_are_proven_in_the_store(tmp_path: Path, svc_keys: Path,
                                                                      exporter: str, store: Backend) -> None:
    svc, col = _setup(tmp_path, svc_keys, exporter, store)
    with svc, col:
        a = produce(col.endpoint("OTLP_HTTP"), svc_keys, 400, service="gateway-1")
        b = produce(col.endpoint("OTLP_HTTP"), svc_keys, 150, service="gateway-2")
        streams = wait_complete(svc, {a[0]: a[1], b[0]: b[1]})
        assert {s["service"] for s in streams} == {"gateway-1", "gateway-2"}
        assert svc.get("/v1/findings").json()["findings"] == []
        assert len(svc.events({"order": "ingest"})) == a[1] + b[1]
        assert len(svc.events({"service": "gateway-2"})) == b[1]
    r = subprocess.run([CLI, "verify", "--keys", str(svc_keys), "--store", store.verify_url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"all {a[1] + b[1]} record(s) proven in 2 stream(s)" in r.stdout


def test_service_killed_mid_ingest_loses_nothing_the_collector_queued(tmp_path: Path, svc_keys: Path,
                                                                     store: Backend) -> None:
    svc, col = _setup(tmp_path, svc_keys, "otlphttp/service", store)
    with col:
        svc.start()
        out: dict[str, tuple[str, int]] = {}
        t = threading.Thread(target=lambda: out.update(p=produce(col.endpoint("OTLP_HTTP"), svc_keys, 1500,
                                                                 pause_every=100)))
        t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not svc.get("/healthz").json()["records"]:
            time.sleep(0.05)
        svc.kill()
        time.sleep(1.5)  # the collector keeps retrying, its queue on disk
        svc.start()
        t.join(120)
        sid, n = out["p"]
        (s,) = wait_complete(svc, {sid: n}, timeout=120)
        assert s["records"] == n and s["failed"] == 0
        svc.stop()
    r = subprocess.run([CLI, "verify", "--keys", str(svc_keys), "--store", store.verify_url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
