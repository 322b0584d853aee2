"""Every exporter is an `opentelemetry_logs_exporter` entry point configured from env vars alone,
shown working under `opentelemetry-instrument` with OTEL_LOGS_EXPORTER (a real child process
sending to the Splunk HEC stand-in over loopback). That path is the SDK's plain pipeline, unsigned,
and warns so at start; the signed one is OTEL_PYTHON_CONFIGURATOR=otel_audit (tests/test_instrument.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from importlib.metadata import entry_points
from pathlib import Path

import orjson
from standins.splunk import DEFAULT_TOKEN, SplunkHecStandIn

from otel_audit.exporters import (
    DatadogLogExporter,
    ElasticLogExporter,
    FileLogRecordExporter,
    SplunkHecLogExporter,
    WebhookLogExporter,
)


def test_every_exporter_is_an_entry_point() -> None:
    """The installed distribution registers each exporter under the name OTEL_LOGS_EXPORTER takes."""
    eps = {ep.name: ep for ep in entry_points(group="opentelemetry_logs_exporter")}
    expected = {
        "otel_audit_file": FileLogRecordExporter,
        "splunk_hec": SplunkHecLogExporter,
        "datadog": DatadogLogExporter,
        "elasticsearch": ElasticLogExporter,
        "webhook": WebhookLogExporter,
    }
    for name, cls in expected.items():
        assert name in eps, f"entry point {name} missing"
        assert eps[name].load() is cls


def test_opentelemetry_instrument_ships_logs_to_splunk_with_env_only_config(tmp_path: Path) -> None:
    """`opentelemetry-instrument` with OTEL_LOGS_EXPORTER=splunk_hec and only env vars delivers the app's logs."""
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent("""
        import logging
        log = logging.getLogger("gateway")
        log.setLevel(logging.INFO)
        for i in range(5):
            log.warning("audit: user %s denied", f"u{i}")
    """))
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    assert instrument.exists(), "opentelemetry-instrument is installed with the test extras"
    with SplunkHecStandIn() as hec:
        env = {
            **os.environ,
            "OTEL_LOGS_EXPORTER": "splunk_hec",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
            "OTEL_SERVICE_NAME": "llm-gateway",
            "OTEL_AUDIT_SPLUNK_HEC_ENDPOINT": hec.url,
            "OTEL_AUDIT_SPLUNK_HEC_TOKEN": DEFAULT_TOKEN,
            "OTEL_AUDIT_SPLUNK_HEC_INDEX": "audit",
        }
        res = subprocess.run([str(instrument), sys.executable, str(app)], env=env, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stderr

        def app_records() -> list[object]:
            return [s for s in hec.accepted if "denied" in orjson.dumps(s.__dict__, default=str).decode()]

        deadline = time.monotonic() + 10
        while len(app_records()) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        stored = app_records()
    # the SDK's own configurator built the exporter: unsigned, and it says so once at start (otel_audit.instrument);
    # the instrumentation's own start-up warnings (two configurators installed) may be shipped too, so count the app's
    assert res.stderr.count("NOT redacted and NOT signed") == 1, res.stderr
    assert "OTEL_PYTHON_CONFIGURATOR=otel_audit" in res.stderr
    assert len(stored) == 5, res.stderr
    texts = orjson.dumps([s.__dict__ for s in stored], default=str).decode()
    assert "u3 denied" in texts or "u%s" in texts
    assert DEFAULT_TOKEN not in res.stderr + res.stdout
