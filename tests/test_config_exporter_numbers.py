"""Every exporter's own numbers are range-checked: `.inf`, `.nan`, negative, zero, huge, boolean and text
values are a config error naming the file, the key and the accepted range, never a traceback or an
"internal error". Through the real CLI (`python -m otel_audit.cli check-config FILE` in a child
process), as tests/test_config_hardening.py does for the processors' numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import child_env

TIMEOUT = 60
TOKEN = "5a0c4b7e-2f1d-4c3b-9e8a-7d6f5e4c3b2a"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DD_KEY = "0123456789abcdef0123456789abcdef"
BASE = {
    "file": "path: {archive}",
    "otlp": "endpoint: 'localhost:4317', tls: {{insecure: true}}",
    "splunk_hec": f"endpoint: 'https://splunk.example:8088', token: {TOKEN}",
    "datadog": f"api: {{{{key: {DD_KEY}}}}}",
    "elasticsearch": "endpoint: 'http://localhost:9200'",
    "webhook": f"endpoint: 'https://hooks.example.com/audit', secrets: [{SECRET}]",
}


def nest(key: str, value: str) -> str:
    """`a.b.c` and a YAML value as a flow mapping fragment: `a: {b: {c: value}}`."""
    parts = key.split(".")
    text = value
    for p in reversed(parts[1:]):
        text = f"{{{p}: {text}}}"
    return f"{parts[0]}: {text}"


def write_config(tmp_path: Path, keys_dir: Path, exporter: str, key: str, value: str) -> Path:
    settings = BASE[exporter].format(archive=json.dumps(str(tmp_path / "a.jsonl")))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"processors:\n  signing: {{keys_dir: {json.dumps(str(keys_dir))}}}\n"
        f"exporters:\n  {exporter}: {{{settings}, {nest(key, value)}}}\n"
        f"service:\n  pipelines:\n    logs: {{processors: [signing], exporters: [{exporter}]}}\n",
        encoding="utf-8",
    )
    return cfg


def check_config(cfg: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in child_env().items() if not k.startswith("OTEL_AUDIT_")}
    return subprocess.run([sys.executable, "-m", "otel_audit.cli", "check-config", str(cfg)], capture_output=True,
                          text=True, timeout=TIMEOUT, env=env, check=False)


# (exporter, key, YAML value, what the message says of the accepted range)
CASES = [
    ("file", "rotation.max_megabytes", ".inf", "above 0 and at most 1099511627776"),
    ("file", "rotation.max_megabytes", "0", "above 0 and at most 1099511627776"),
    ("file", "rotation.max_megabytes", "-1", "above 0 and at most 1099511627776"),
    ("file", "rotation.max_megabytes", "1.0e+300", "above 0 and at most 1099511627776"),
    ("file", "rotation.max_megabytes", "true", "above 0 and at most 1099511627776"),
    ("file", "rotation.max_days", "-1", "from 0 (keep backups of any age) to 36500"),
    ("file", "rotation.max_days", ".nan", "from 0 (keep backups of any age) to 36500"),
    ("file", "rotation.max_days", "1.0e+300", "from 0 (keep backups of any age) to 36500"),
    ("file", "rotation.max_backups", "-1", "from 0 (keep every backup) to 100000000"),
    ("file", "rotation.max_backups", "1.5", "from 0 (keep every backup) to 100000000"),
    ("file", "rotation.max_backups", "100000000000000000000000", "from 0 (keep every backup) to 100000000"),
    ("file", "rotation.max_backups", "'many'", "from 0 (keep every backup) to 100000000"),
    ("file", "fsync_interval", ".inf", "zero to 100 years"),
    ("file", "fsync_interval", "-1", "at most 100 years"),
    ("file", "sending_queue.num_consumers", ".inf", "from 1 to 10000"),
    ("otlp", "timeout", ".nan", "zero to 100 years"),
    ("otlp", "sending_queue.num_consumers", "0", "from 1 to 10000"),
    ("otlp", "sending_queue.queue_size", "1.0e+300", "from 1 to 100000000"),
    ("otlp", "retry_on_failure.randomization_factor", ".nan", "from 0 to 1"),
    ("splunk_hec", "max_event_size", "0", "from 1 to 838860800"),
    ("splunk_hec", "max_event_size", "true", "from 1 to 838860800"),
    ("splunk_hec", "max_event_size", "100000000000000000000000", "from 1 to 838860800"),
    ("splunk_hec", "max_content_length_logs", "-1", "from 0 to 838860800"),
    ("splunk_hec", "max_content_length_logs", ".inf", "from 0 to 838860800"),
    ("splunk_hec", "ack_timeout", ".nan", "zero to 100 years"),
    ("splunk_hec", "retry_on_failure.multiplier", "1.0e+300", "from 0 to 1000"),
    ("webhook", "max_batch_size", "0", "at least 1 and at most 1000000"),
    ("webhook", "max_batch_size", "1000000000000", "at least 1 and at most 1000000"),
    ("webhook", "max_batch_size", "true", "at least 1 and at most 1000000"),
    ("webhook", "max_body_bytes", "100", "at least 1024 and at most 1073741824"),
    ("webhook", "max_body_bytes", ".inf", "at least 1024 and at most 1073741824"),
    ("webhook", "retry_on_failure.randomization_factor", "1.5", "from 0 to 1"),
    ("webhook", "sending_queue.num_consumers", "'four'", "from 1 to 10000"),
    ("datadog", "logs.compression_level", "10", "from 0 to 9"),
    ("datadog", "logs.compression_level", ".nan", "from 0 to 9"),
    ("datadog", "host_metadata.reporter_period", "1m", "5 minutes or more"),
    ("datadog", "host_metadata.reporter_period", ".inf", "zero to 100 years"),
    ("datadog", "batch.max_size", "-5", "from 1 to 100000000"),
    ("elasticsearch", "num_workers", "0", "from 1 to 10000"),
    ("elasticsearch", "num_workers", "true", "from 1 to 10000"),
    ("elasticsearch", "flush.bytes", "-1", "from 0 to 1073741824"),
    ("elasticsearch", "flush.interval", ".inf", "zero to 100 years"),
    ("elasticsearch", "retry.max_retries", "1000000000000000000000", "from 0 to 100000000"),
    ("elasticsearch", "retry.randomization_factor", "-0.1", None),  # not a key of the contrib `retry` block
]


@pytest.mark.parametrize(("exporter", "key", "value", "accepted"), CASES,
                         ids=[f"{e}.{k}={v}" for e, k, v, _ in CASES])
def test_an_exporter_number_out_of_range_names_file_key_and_range(
        tmp_path: Path, shared_keys: Path, exporter: str, key: str, value: str, accepted: str | None) -> None:
    """check-config exits 2 with one line: the file, exporters.<id>.<key>, the accepted range; no secret."""
    cfg = write_config(tmp_path, shared_keys, exporter, key, value)
    proc = check_config(cfg)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert "Traceback" not in proc.stderr and "internal error" not in line, line
    assert f"{cfg}: exporters.{exporter}.{key}: " in line, line
    if accepted is not None:
        assert accepted in line, line
    else:
        assert "unknown key" in line, line
    for secret in (TOKEN, SECRET, DD_KEY):
        assert secret not in line


# the largest and smallest values each range accepts
LIMITS = [
    ("file", "rotation: {max_megabytes: 1099511627776, max_days: 36500, max_backups: 100000000}"),
    ("file", "rotation: {max_megabytes: 0.001, max_days: 0, max_backups: 0}"),
    ("otlp", "sending_queue: {num_consumers: 10000, queue_size: 100000000}, "
             "retry_on_failure: {randomization_factor: 1, multiplier: 1000}"),
    ("otlp", "retry_on_failure: {randomization_factor: 0, multiplier: 0}"),
    ("splunk_hec", "max_event_size: 838860800, max_content_length_logs: 0"),
    ("webhook", "max_batch_size: 1000000, max_body_bytes: 1073741824"),
    ("webhook", "max_batch_size: 1, max_body_bytes: 1024"),
    ("datadog", "host_metadata: {reporter_period: 5m}, logs: {compression_level: 9}"),
    ("elasticsearch", "num_workers: 10000, flush: {bytes: 0, interval: 30s}, retry: {max_retries: 100000000}"),
]


@pytest.mark.parametrize(("exporter", "settings"), LIMITS, ids=[f"{e}:{s}" for e, s in LIMITS])
def test_the_limits_themselves_are_accepted(tmp_path: Path, shared_keys: Path, exporter: str, settings: str) -> None:
    """The bounds named in the messages are inclusive: a config at each of them passes check-config."""
    base = BASE[exporter].format(archive=json.dumps(str(tmp_path / "a.jsonl")))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"processors:\n  signing: {{keys_dir: {json.dumps(str(shared_keys))}}}\n"
        f"exporters:\n  {exporter}: {{{base}, {settings}}}\n"
        f"service:\n  pipelines:\n    logs: {{processors: [signing], exporters: [{exporter}]}}\n",
        encoding="utf-8",
    )
    proc = check_config(cfg)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
